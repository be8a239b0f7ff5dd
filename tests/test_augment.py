import math

import numpy as np
import pytest

from conftest import SR, dominant_freq, sine
from ser_tasks.config import AugmentConfig
from ser_tasks.errors import InputError
from ser_tasks.signal.augment import (
    NO_AUGMENTATION,
    PARAM_NAMES,
    AugmentParams,
    add_noise,
    apply_gain,
    augment_before_length,
    draw_params,
    pitch_shift,
    speed_perturb,
    stretch_and_pitch_shift,
    time_shift,
    time_stretch,
)


def test_pitch_shift_two_semitones_moves_frequency_by_the_right_ratio():
    y = sine(440, 1.0)
    up = pitch_shift(y, SR, 2.0)
    assert len(up) == len(y)
    assert dominant_freq(up[2000:-2000]) == pytest.approx(440 * 2 ** (2 / 12), rel=0.01)
    down = pitch_shift(y, SR, -3.0)
    assert dominant_freq(down[2000:-2000]) == pytest.approx(440 * 2 ** (-3 / 12), rel=0.01)


def test_time_stretch_changes_length_not_pitch():
    y = sine(300, 1.0)
    fast = time_stretch(y, 1.25)
    assert len(fast) == pytest.approx(len(y) / 1.25, rel=0.02)
    assert dominant_freq(fast[1000:-1000]) == pytest.approx(300, rel=0.01)


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    """A gliding harmonic tone with pauses and noise, exact zeros at both ends."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(140 + 60 * np.sin(2 * np.pi * 0.9 * t)) / SR
    y = (np.sin(phase) + 0.4 * np.sin(2 * phase)) * (np.sin(2 * np.pi * 1.7 * t) > -0.2)
    return np.pad(0.3 * y + 0.01 * rng.standard_normal(t.size), 2000).astype(np.float32)


@pytest.mark.parametrize("seconds, rate, semitones", [(1.7, 1.15, 2.0), (2.93, 0.83, -1.3), (0.31, 1.0, 0.4)])
def test_stretch_and_pitch_shift_are_librosas_bit_for_bit(seconds, rate, semitones):
    """The vocoder runs on features.stft's rows with a cached window: stored augmented rows must not change."""
    import librosa

    y = _speechlike(seconds, int(seconds * 100))
    np.testing.assert_array_equal(time_stretch(y, rate), librosa.effects.time_stretch(y, rate=rate))
    expected = librosa.effects.pitch_shift(y, sr=SR, n_steps=semitones)
    np.testing.assert_array_equal(pitch_shift(y, SR, semitones), expected)
    q = 2.0 ** (-semitones / 12)  # the one-pass stretch and shift as it was built on librosa's stretch
    before = librosa.util.fix_length(librosa.resample(librosa.effects.time_stretch(y, rate=rate * q), orig_sr=SR / q,
                                                      target_sr=SR, res_type="soxr_hq"), size=round(y.size / rate))
    np.testing.assert_array_equal(stretch_and_pitch_shift(y, SR, rate, semitones), before)


def test_time_stretch_rate_must_be_positive():
    with pytest.raises(InputError, match="stretch rate must be positive"):
        time_stretch(sine(300, 0.5), 0.0)


def test_stretch_and_pitch_in_one_pass_match_the_two_in_turn():
    y = sine(330, 1.0)
    both = stretch_and_pitch_shift(y, SR, 0.8, -2.0)
    in_turn = pitch_shift(time_stretch(y, 0.8), SR, -2.0)
    assert len(both) == len(in_turn) == round(len(y) / 0.8)
    assert dominant_freq(both[2000:-2000]) == pytest.approx(330 * 2 ** (-2 / 12), rel=0.01)
    assert dominant_freq(both[2000:-2000]) == pytest.approx(dominant_freq(in_turn[2000:-2000]), rel=0.005)
    # same envelope: the tone fills the same stretched span
    rms = lambda x: np.sqrt(np.mean(x[2000:-2000] ** 2))  # noqa: E731
    assert rms(both) == pytest.approx(rms(in_turn), rel=0.05)


@pytest.mark.parametrize("rate", [0.9, 1.1])
def test_speed_perturbation_scales_tempo_and_pitch_together(rate):
    y = sine(300, 1.0)
    fast = speed_perturb(y, SR, rate)
    assert fast.dtype == np.float32 and len(fast) == math.ceil(len(y) / rate)
    assert dominant_freq(fast[1000:-1000]) == pytest.approx(300 * rate, rel=0.01)
    # before the stretch: a speed-perturbed and stretched clip is 1/(speed*stretch) long
    both = augment_before_length(y, SR, AugmentParams(speed_rate=rate, stretch_rate=1.25))
    assert len(both) == pytest.approx(len(y) / (rate * 1.25), rel=0.02)


def test_speed_rate_must_be_positive():
    with pytest.raises(ValueError, match="speed rate must be positive"):
        speed_perturb(sine(300, 0.1), SR, 0.0)
    with pytest.raises(ValueError, match="speed_rate must be positive"):
        AugmentConfig(speed_rate=(0.0, 1.1))
    with pytest.raises(ValueError, match="speed_rate: low"):
        AugmentConfig(speed_rate=(1.1, 0.9))


def test_noise_is_added_at_the_requested_snr():
    y = sine(300, 2.0)
    noisy = add_noise(y, 10.0, np.random.default_rng(0))
    noise = noisy - y
    snr = 10 * np.log10(np.mean(y**2) / np.mean(noise**2))
    assert snr == pytest.approx(10.0, abs=0.2)
    assert add_noise(np.zeros(100, np.float32), 10, np.random.default_rng(0)).tolist() == [0.0] * 100


def test_time_shift_zero_fills_instead_of_wrapping():
    y = np.arange(1, 6, dtype=np.float32)
    assert time_shift(y, 2).tolist() == [0, 0, 1, 2, 3]
    assert time_shift(y, -2).tolist() == [3, 4, 5, 0, 0]
    assert time_shift(y, 9).tolist() == [0] * 5


def test_gain_in_db():
    y = sine(200, 0.1)
    assert np.abs(apply_gain(y, 6.0)).max() / np.abs(y).max() == pytest.approx(10 ** (6 / 20), rel=1e-4)


def test_parameters_are_reproducible_per_clip_and_variant():
    cfg = AugmentConfig(noise_prob=1, pitch_prob=1, stretch_prob=1, shift_prob=1, gain_prob=1, speed_prob=1)
    a = draw_params(cfg, "ravdess/x", 1)
    assert a == draw_params(cfg, "ravdess/x", 1)
    assert a != draw_params(cfg, "ravdess/x", 2) and a != draw_params(cfg, "ravdess/y", 1)
    assert draw_params(cfg, "ravdess/x", 0) == NO_AUGMENTATION
    lo, hi = cfg.pitch_semitones
    assert lo <= a.pitch_semitones <= hi and cfg.snr_db[0] <= a.noise_snr_db <= cfg.snr_db[1]
    assert AugmentParams.from_array(a.as_array()) == pytest.approx(a) or \
        np.allclose(AugmentParams.from_array(a.as_array()).as_array(), a.as_array())


@pytest.mark.parametrize("param, prob", [("pitch_semitones", "pitch_prob"), ("speed_rate", "speed_prob")])
def test_probability_zero_disables_a_transform_without_changing_the_others(param, prob):
    on = AugmentConfig(noise_prob=1, pitch_prob=1, stretch_prob=1, shift_prob=1, gain_prob=1, speed_prob=1)
    off = on.model_copy(update={prob: 0.0})
    a, b = draw_params(on, "c", 1), draw_params(off, "c", 1)
    assert math.isnan(getattr(b, param)) and not math.isnan(getattr(a, param))
    assert on.speed_rate[0] <= a.speed_rate <= on.speed_rate[1]
    for name in PARAM_NAMES:
        if name != param:
            assert getattr(a, name) == getattr(b, name)


def test_negative_variant_raises():
    with pytest.raises(ValueError):
        draw_params(AugmentConfig(), "c", -1)


def test_vocoder_warnings_are_filtered_in_any_thread():
    """librosa's own deprecation and numba's cast warnings are silenced by process-wide filters,
    not a catch_warnings block (not thread-safe: workers warm up in a background thread). Run in
    a fresh interpreter with every other warning an error."""
    import subprocess
    import sys

    code = ("import threading, numpy as np\n"
            "from ser_tasks.signal.augment import pitch_shift, time_stretch, stretch_and_pitch_shift\n"
            "y = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)\n"
            "t = threading.Thread(target=lambda: (pitch_shift(y, 16000, 1.0), time_stretch(y, 1.1),\n"
            "                                     stretch_and_pitch_shift(y, 16000, 1.1, -1.0)))\n"
            "t.start(); t.join()\n")
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "Warning" not in out.stderr, out.stderr


@pytest.mark.parametrize("frames, length", [(40, 40 * 512), (40, 15_000), (40, 1_000), (3, 700), (60, 40_000)])
def test_istft_is_librosas_bit_for_bit(frames, length):
    """Every frame count and length, including ones that drop frames and ones shorter than the head block."""
    import librosa

    from ser_tasks.signal.augment import istft
    from ser_tasks.signal.features import hann_window

    rng = np.random.default_rng(frames + length)
    spec = (rng.standard_normal((frames, 1025)) + 1j * rng.standard_normal((frames, 1025))).astype(np.complex64)
    expected = librosa.istft(spec.T, hop_length=512, window=hann_window(2048), dtype=np.float32, length=length)
    np.testing.assert_array_equal(istft(spec, length), expected)


def test_the_squared_window_sum_is_librosas_at_every_frame_count():
    """Built from a head, one repeated hop and a tail; librosa sums every frame's window."""
    import librosa

    from ser_tasks.signal.augment import _window_sumsquare
    from ser_tasks.signal.features import hann_window

    for n_frames in [*range(1, 12), 97, 1000]:
        expected = librosa.filters.window_sumsquare(window=hann_window(2048), n_frames=n_frames, hop_length=512,
                                                    n_fft=2048, dtype=np.float32)
        got = _window_sumsquare(n_frames)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
