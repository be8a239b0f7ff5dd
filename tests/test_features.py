import librosa
import numpy as np
import pytest
import scipy.fft

from conftest import SR, sine
from ser_tasks.config import AudioConfig, FeatureConfig
from ser_tasks.signal.features import (
    centred_frames,
    extract,
    f0_contour,
    feature_shapes,
    hann_window,
    log_mel,
    mel_basis,
    n_frames,
    power_spectrogram,
    yin,
)


def test_all_features_share_one_frame_grid():
    audio, cfg = AudioConfig(), FeatureConfig()
    y = sine(440, audio.duration)
    feats = extract(y, SR, cfg)
    shapes = feature_shapes(audio, cfg)
    assert {k: v.shape for k, v in feats.items()} == shapes
    assert n_frames(audio, cfg) == 301 and all(v.dtype == np.float32 for v in feats.values())


@pytest.mark.parametrize("freq", [110.0, 220.0, 440.0])
def test_f0_contour_follows_a_tone_on_the_shared_frame_grid(freq):
    audio, cfg = AudioConfig(), FeatureConfig(f0=True)
    feats = extract(sine(freq, audio.duration), SR, cfg)
    assert {k: v.shape for k, v in feats.items()} == feature_shapes(audio, cfg)
    assert feats["f0"].shape == (n_frames(audio, cfg),) and feats["f0"].dtype == np.float32
    assert np.median(feats["f0"][5:-5]) == pytest.approx(np.log2(freq), abs=0.02)  # octaves: within 1.4 %
    assert "f0" not in extract(sine(freq, 0.5), SR, FeatureConfig(f0=False))  # only when asked for


def test_f0_contour_tracks_a_pitch_change_in_time():
    y = np.concatenate([sine(150, 1.0), sine(300, 1.0)])
    f0 = f0_contour(y, SR, FeatureConfig())
    assert np.median(f0[10:90]) == pytest.approx(np.log2(150), abs=0.02)
    assert np.median(f0[110:190]) == pytest.approx(np.log2(300), abs=0.02)  # one octave up


@pytest.mark.parametrize("samples", [48_000, 47_999, 30_001])
def test_f0_on_every_fourth_frame_is_the_full_contour_there_and_interpolated_between(samples):
    y = np.concatenate([sine(150, 1.0), sine(300, 2.0)])[:samples]
    full, coarse = f0_contour(y, SR, FeatureConfig()), f0_contour(y, SR, FeatureConfig(f0_stride=4))
    assert coarse.shape == full.shape == (1 + samples // 160,) and coarse.dtype == np.float32
    np.testing.assert_array_equal(coarse[::4], full[::4])  # YIN's frames are the full contour's
    between = coarse[1:-4:4]  # a quarter of the way from one YIN frame to the next
    np.testing.assert_allclose(between, 0.75 * full[0:-5:4][:between.size] + 0.25 * full[4::4][:between.size],
                               rtol=1e-6)
    assert np.median(coarse[110:190]) == pytest.approx(np.log2(300), abs=0.02)
    last = 4 * ((full.size - 1) // 4)
    assert (coarse[last:] == full[last]).all()  # frames after YIN's last hold its value


def _voice_like(seconds: float, seed: int) -> np.ndarray:
    """A gliding harmonic tone with pauses and noise: troughs below and above YIN's threshold."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 80 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    y = sum(np.sin(h * phase) / h for h in (1, 2, 3)) * (np.sin(2 * np.pi * 1.3 * t) > -0.3)
    return (0.2 * y + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("samples, hop, seed, padded", [(48_000, 160, 0, False), (47_999, 640, 1, False),
                                                        (30_001, 160, 2, False), (700, 160, 3, False),
                                                        (48_000, 160, 4, True), (47_999, 640, 5, True)])
def test_yin_is_librosas_yin_bit_for_bit(samples, hop, seed, padded):
    y = _voice_like(3.0, seed)[:samples]
    if padded:  # speech in the middle, exact zeros around it (as fix_length pads a short clip)
        y = np.pad(y[:samples // 2], (samples // 5, samples - samples // 2 - samples // 5))
        assert (y[:samples // 5] == 0).all() and y.shape == (samples,)
    expected = librosa.yin(y, fmin=65.0, fmax=600.0, sr=SR, frame_length=512, hop_length=hop, center=True)
    np.testing.assert_array_equal(yin(y, SR, 512, hop), expected)
    wide = y.astype(np.float64)  # the float64 path keeps librosa's float64 difference function
    np.testing.assert_array_equal(yin(wide, SR, 512, hop), librosa.yin(wide, fmin=65.0, fmax=600.0, sr=SR,
                                                                       frame_length=512, hop_length=hop))
    silent = np.zeros(samples, np.float32)
    noise = 0.1 * np.random.default_rng(seed).standard_normal(samples).astype(np.float32)
    for z in (silent, noise):  # no trough below the threshold: the global minimum
        np.testing.assert_array_equal(yin(z, SR, 512, hop), librosa.yin(z, fmin=65.0, fmax=600.0, sr=SR,
                                                                        frame_length=512, hop_length=hop))


def test_yin_refuses_what_librosa_refuses():
    y = sine(150, 0.5)
    with pytest.raises(librosa.ParameterError):
        yin(y, SR, 512, 160, fmin=20.0)  # a 20 Hz period (800 samples) does not fit a 512-sample frame
    with pytest.raises(librosa.ParameterError):
        yin(y, SR, 512, 160, fmax=9000.0)  # above Nyquist
    with pytest.raises(librosa.ParameterError):
        yin(np.full(1000, np.nan, np.float32), SR, 512, 160)


def test_mfcc_is_the_dct_of_the_log_mel():
    cfg = FeatureConfig()
    feats = extract(sine(300, 1.0), SR, cfg)
    dct = scipy.fft.dct(feats["log_mel"], type=2, axis=0, norm="ortho")[: cfg.n_mfcc]
    np.testing.assert_allclose(feats["mfcc"], dct, rtol=1e-4, atol=1e-3)


def test_zcr_and_rms_of_a_sine():
    cfg = FeatureConfig()
    feats = extract(sine(1000, 1.0, amp=0.5), SR, cfg)
    inner = slice(5, -5)  # edge frames include the zero padding
    assert np.median(feats["zcr"][inner]) == pytest.approx(2 * 1000 / SR, rel=0.05)
    assert np.median(feats["rms"][inner]) == pytest.approx(0.5 / np.sqrt(2), rel=0.03)


def test_log_mel_peaks_in_the_band_of_the_tone():
    cfg = FeatureConfig()
    lm = log_mel(sine(1000, 1.0), SR, cfg)
    centres = librosa.mel_frequencies(n_mels=cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax)[1:-1]
    peak_band = int(np.argmax(lm[:, 50]))
    assert abs(centres[peak_band] - 1000) < 100
    assert lm.max() - lm.min() <= cfg.top_db + 1e-3  # floored top_db below the peak


def _speechlike(seed: int = 0) -> np.ndarray:
    """Noise bursts of varied level with exact silence, tiny values and both signs: the cases where
    a frame-sum shortcut could differ from librosa's per-frame computation."""
    rng = np.random.default_rng(seed)
    y = np.zeros(SR * 2, np.float32)
    y[3000:12000] = 0.3 * rng.standard_normal(9000)
    y[15000:20000] = 1e-4 * rng.standard_normal(5000)
    y[20000:20100] = 5e-11  # below the zero-crossing threshold
    y[20100:20200] = -5e-11
    y[22000:28000] = np.sin(np.arange(6000) * 0.3)
    return y


@pytest.mark.parametrize("cfg", [FeatureConfig(), FeatureConfig(n_fft=400, win_length=400, hop_length=123)])
def test_features_equal_librosa_reference(cfg):
    y = _speechlike()
    feats = extract(y, SR, cfg)
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=cfg.n_fft, hop_length=cfg.hop_length, center=True)[0]
    np.testing.assert_array_equal(feats["zcr"], zcr.astype(np.float32))
    rms = librosa.feature.rms(y=y, frame_length=cfg.n_fft, hop_length=cfg.hop_length, center=True)[0]
    np.testing.assert_allclose(feats["rms"], rms, rtol=1e-5, atol=1e-9)
    assert feats["rms"][-3:].tolist() == [0.0, 0.0, 0.0]  # silence stays exactly silent
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                         win_length=cfg.win_length, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
    ref = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=cfg.top_db)
    np.testing.assert_allclose(feats["log_mel"], ref, atol=1e-3)


@pytest.mark.parametrize("n", [2, 3, 400, 401, 512, 2048])
def test_hann_window_is_bit_identical_to_scipys(n):
    """The log-mel's window is computed without scipy.signal; stored features must not change."""
    import scipy.signal

    np.testing.assert_array_equal(hann_window(n), scipy.signal.get_window("hann", n, fftbins=True))
    assert hann_window(n).dtype == np.float64


def _librosa_power(y, cfg):
    """The log-mel's power spectrogram as librosa computes it (the code before power_spectrogram)."""
    return np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                               window=hann_window(cfg.win_length), center=True)) ** 2


@pytest.mark.parametrize("cfg", [FeatureConfig(), FeatureConfig(n_fft=400, win_length=300, hop_length=123),
                                 FeatureConfig(n_fft=511, win_length=400, hop_length=160)])
@pytest.mark.parametrize("kind", ["speechlike", "zero_padded", "silent", "float64", "short"])
def test_power_spectrogram_is_librosas_stft_bit_for_bit(cfg, kind):
    """Stored log-mels must not change: equal values, dtype and memory order (the mel product sums in it)."""
    y = {"speechlike": _speechlike(1), "silent": np.zeros(SR, np.float32), "short": _speechlike(2)[3000:3700],
         "float64": _speechlike(3).astype(np.float64),
         "zero_padded": np.pad(_voice_like(1.0, 4), (SR // 2, SR // 3))}[kind]
    got, expected = power_spectrogram(y, cfg), _librosa_power(y, cfg)
    assert got.dtype == expected.dtype == (np.float64 if kind == "float64" else np.float32)
    np.testing.assert_array_equal(got, expected)
    assert got.flags.f_contiguous and expected.flags.f_contiguous
    before = librosa.power_to_db(mel_basis(SR, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax) @ expected, ref=1.0,
                                 amin=1e-10, top_db=cfg.top_db).astype(np.float32)
    np.testing.assert_array_equal(log_mel(y, SR, cfg), before)


def test_power_spectrogram_refuses_what_librosa_stft_refuses():
    y = _speechlike(0)
    y[100] = np.nan
    with pytest.raises(librosa.ParameterError, match="not finite"):
        power_spectrogram(y, FeatureConfig())
    with pytest.raises(librosa.ParameterError):
        power_spectrogram(np.arange(1000), FeatureConfig())  # integers, as librosa.stft refuses them


def test_centred_frames_keep_the_frames_with_a_nonzero_sample():
    y = np.zeros(2000, np.float32)
    y[700] = -0.5  # padded sample 956, in the frames starting 445..956: 480, 640, 800 at hop 160
    framed = centred_frames(y, 512, 160)
    assert framed.live.shape == (1 + 2000 // 160,) and np.flatnonzero(framed.live).tolist() == [3, 4, 5]
    assert framed.frames.shape == (3, 512) and framed.frames.flags.c_contiguous
    assert [int(np.flatnonzero(f)[0]) for f in framed.frames] == [956 - 480, 956 - 640, 956 - 800]


def test_extract_shares_one_framing_between_log_mel_and_yin(monkeypatch):
    """At the defaults the log-mel's frames are YIN's (512 samples, 160 hop): framed once per clip."""
    import ser_tasks.signal.features as features

    calls = []
    real = features.centred_frames
    monkeypatch.setattr(features, "centred_frames", lambda *a: calls.append(a[1:]) or real(*a))
    y = _voice_like(3.0, 5)
    extract(y, SR, FeatureConfig(f0=True, encoder=None))
    assert calls == [(512, 160)]
    calls.clear()
    extract(y, SR, FeatureConfig(f0=True, f0_stride=2, encoder=None))  # YIN at twice the hop: its own frames
    assert calls == [(512, 160), (512, 320)]
