"""Waveform augmentation for training clips.

Noise at an SNR, pitch shift, time stretch, speed perturbation, time shift and gain, with parameters
drawn reproducibly per (seed, clip id, variant) and recorded.

The transforms are those of the seed notebooks (REFERENCE.md: noise, pitch shift, stretch, shift,
volume) with their parameters made explicit: noise is scaled to a signal-to-noise ratio in dB
instead of a fraction of the peak, and the shift fills with zeros instead of wrapping around.
Speed perturbation (tempo and pitch together, by resampling) is Kaldi's, from Ko et al., "Audio
augmentation for speech recognition", Interspeech 2015. Drawing and recording the parameters follows
audiomentations' ``randomize_parameters`` design.
"""

from __future__ import annotations

import functools
import hashlib
import math
import warnings
from dataclasses import asdict, dataclass

import librosa
import numpy as np

from ser_tasks.config import AugmentConfig
from ser_tasks.errors import InputError
from ser_tasks.signal import features, kernels
from ser_tasks.signal.audio import resample

#: Column order of the store's ``augment`` array.
PARAM_NAMES = ("noise_snr_db", "pitch_semitones", "stretch_rate", "shift_seconds", "gain_db", "speed_rate")


@dataclass(frozen=True)
class AugmentParams:
    """One variant's drawn parameters; ``nan`` means the transform is not applied.

    Attributes:
        noise_snr_db: SNR of added white Gaussian noise, dB.
        pitch_semitones: pitch shift, semitones (12 = one octave).
        stretch_rate: time-stretch rate (> 1 faster/shorter), dimensionless.
        shift_seconds: time shift, seconds (> 0 delays the signal).
        gain_db: gain, dB.
        speed_rate: speed-perturbation rate (> 1 faster/shorter and higher), dimensionless.
    """

    noise_snr_db: float = math.nan
    pitch_semitones: float = math.nan
    stretch_rate: float = math.nan
    shift_seconds: float = math.nan
    gain_db: float = math.nan
    speed_rate: float = math.nan

    def as_array(self) -> np.ndarray:
        """``(6,)`` float32 in :data:`PARAM_NAMES` order."""
        return np.array([getattr(self, n) for n in PARAM_NAMES], dtype=np.float32)

    @classmethod
    def from_array(cls, values: np.ndarray) -> AugmentParams:
        """Inverse of :meth:`as_array`."""
        return cls(**{n: float(v) for n, v in zip(PARAM_NAMES, values, strict=True)})

    def as_dict(self) -> dict[str, float]:
        """Parameters as a plain dict."""
        return asdict(self)


NO_AUGMENTATION = AugmentParams()


def variant_rng(seed: int, clip_id: str, variant: int, stream: int = 0) -> np.random.Generator:
    """Generator seeded by (seed, clip id, variant, stream); stable across processes and runs.

    The clip id is hashed with SHA-256, not Python's salted ``hash``.
    """
    digest = int.from_bytes(hashlib.sha256(clip_id.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, digest, variant, stream])


def draw_params(cfg: AugmentConfig, clip_id: str, variant: int) -> AugmentParams:
    """Draw one variant's parameters (variant 0 is the original clip: nothing applied).

    Raises:
        InputError: ``variant`` is negative.
    """
    if variant < 0:
        raise InputError(f"variant must be >= 0, got {variant}")
    if variant == 0:
        return NO_AUGMENTATION
    rng = variant_rng(cfg.seed, clip_id, variant)
    out = {}
    for name, prob, rng_range in (
        ("noise_snr_db", cfg.noise_prob, cfg.snr_db),
        ("pitch_semitones", cfg.pitch_prob, cfg.pitch_semitones),
        ("stretch_rate", cfg.stretch_prob, cfg.stretch_rate),
        ("shift_seconds", cfg.shift_prob, cfg.shift_seconds),
        ("gain_db", cfg.gain_prob, cfg.gain_db),
        ("speed_rate", cfg.speed_prob, cfg.speed_rate),  # last: the draws above keep their values
    ):
        # Always draw both numbers so that one probability never changes another transform's value.
        apply, value = rng.random() < prob, rng.uniform(*rng_range)
        out[name] = float(value) if apply else math.nan
    return AugmentParams(**out)


# librosa 1.0's phase vocoder passes its own deprecated arguments (FutureWarning) and its numba
# phasor warns on a cast on every call (RuntimeWarning); the output is checked by _finite. Narrow
# process-wide filters, installed once: warnings.catch_warnings is not thread-safe, and a Dask worker
# warms up in a background thread while its main thread runs (ser_tasks.runtime.worker_setup).
warnings.filterwarnings("ignore", r"The `\w+` parameter is deprecated", FutureWarning, r"librosa\.")
warnings.filterwarnings("ignore", "invalid value encountered in cast", RuntimeWarning, r"numba\.")


def _finite(y: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(y).all():
        raise InputError(f"{what} produced non-finite samples")
    return y.astype(np.float32, copy=False)


def add_noise(y: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise at ``snr_db`` dB relative to the mean power of ``y``.

    Returns ``y`` unchanged if it is silent (no power to set an SNR against).
    """
    power = float(np.mean(y.astype(np.float64) ** 2))
    if power == 0.0:
        return y
    noise = rng.standard_normal(y.shape[0]) * math.sqrt(power / 10 ** (snr_db / 10))
    return (y + noise).astype(np.float32)


#: The phase vocoder's STFT: librosa.effects.time_stretch's defaults (2,048-point Hann window, 512 hop).
VOCODER_N_FFT, VOCODER_HOP = 2048, 512


def phase_vocoder(spec: np.ndarray, rate: float) -> np.ndarray:
    """``librosa.phase_vocoder(spec.T, rate=rate).T``, bit for bit, on frames laid out as rows.

    librosa 1.0's vocoder (Ellis, "A phase vocoder in Matlab", 2002, as librosa implements it):
    output frame ``k`` reads input time ``t = k * rate``; its magnitude is ``|spec|`` interpolated
    linearly at ``t`` and its phase is the first frame's plus the accumulated phase differences of
    the frame pairs ``(floor(t), floor(t) + 1)``. The same operations in the same dtypes and order;
    what changes is the layout (each frame a contiguous row), the phase accumulation, summed by
    :func:`ser_tasks.signal.kernels.cumsum` across bins at once instead of by ``np.cumsum`` along each bin,
    and the phasor, built in one pass (:func:`ser_tasks.signal.kernels.phasor`). ``tests/test_augment.py``
    holds the stretch it serves to ``array_equal`` against ``librosa.effects.time_stretch``.

    Args:
        spec: ``(frames, bins)`` complex STFT, one frame per row.
        rate: tempo factor, > 0 (2 is twice as fast).

    Returns:
        ``(ceil(frames / rate), bins)`` complex, ``spec``'s dtype, C order.
    """
    import scipy.interpolate  # as librosa does: only augmentation needs it

    n_frames = spec.shape[0]
    t_out = np.arange(0.0, n_frames, rate)
    i0 = np.floor(t_out).astype(int)
    i1 = np.minimum(i0 + 1, n_frames - 1)
    ph = np.angle(spec)
    phase = np.empty((t_out.size, spec.shape[1]), dtype=ph.dtype)
    phase[0] = ph[i0[0]]
    phase[1:] = ph[i1[:-1]] - ph[i0[:-1]]  # librosa's differences, shifted one frame on
    phase = kernels.cumsum(phase, axis=0)
    mag = scipy.interpolate.interp1d(np.arange(n_frames), np.abs(spec), kind="linear", axis=0,
                                     fill_value="extrapolate", assume_sorted=True, copy=False)(t_out)
    if phase.dtype == np.float32 and mag.dtype == np.float64:  # a float32 clip's: all the pipeline computes
        return kernels.phasor(phase, mag)
    return librosa.util.phasor(phase, mag=mag)


def _vocoder_stretch(y: np.ndarray, rate: float) -> np.ndarray:
    """``librosa.effects.time_stretch(y, rate=rate)``, bit for bit, in less time.

    The same three steps (STFT, phase vocoder, inverse STFT cut to ``round(len(y) / rate)``), each
    librosa's values on frames laid out as rows: :func:`ser_tasks.signal.features.stft`,
    :func:`phase_vocoder` and :func:`istft`, with the Hann window built once instead of by
    ``scipy.signal`` three times a call (the STFT, the inverse and its window normalisation).
    ``tests/test_augment.py`` holds it to ``array_equal`` against librosa.

    Args:
        y: ``(samples,)`` float32 waveform (another float dtype is cast to float32 first).
        rate: tempo factor, > 0 (2 is twice as fast).

    Returns:
        ``(round(samples / rate),)`` float32.
    """
    y = np.asarray(y, dtype=np.float32)
    spec = features.stft(y, VOCODER_N_FFT, VOCODER_HOP).T  # (frames, bins), C order: no copy
    return istft(phase_vocoder(spec, rate), round(y.shape[-1] / rate))


def _summed_squares(n_frames: int) -> np.ndarray:
    """The vocoder's squared Hann window added at every hop of ``n_frames`` frames, as librosa adds it (float32)."""
    return kernels.overlap_add(np.ones((n_frames, VOCODER_N_FFT), dtype=np.float32),
                               features.hann_window(VOCODER_N_FFT) ** 2, VOCODER_HOP, 0,
                               VOCODER_N_FFT + VOCODER_HOP * (n_frames - 1))


@functools.cache
def _four_frames() -> np.ndarray:
    """:func:`_summed_squares` of 4 frames, read-only (shared between calls)."""
    wss = _summed_squares(4)
    wss.setflags(write=False)
    return wss


def _window_sumsquare(n_frames: int) -> np.ndarray:
    """``librosa.filters.window_sumsquare`` of the vocoder's Hann window over ``n_frames`` frames, float32.

    librosa adds the squared window once per frame on every inverse. With a hop of a quarter of the
    window, a sample past the first three hops and before the last three sums the same four window
    values in the same order, so the result is a head, one 512-sample period repeated and a tail,
    the same for every frame count from 4 on: built from one 4-frame sum, equal to librosa's
    (``tests/test_augment.py``), with nothing cached per frame count.

    Returns:
        ``(2048 + 512 (n_frames - 1),)`` float32.
    """
    if n_frames <= 4:
        return _summed_squares(n_frames)
    four, edge = _four_frames(), VOCODER_N_FFT - VOCODER_HOP  # edge: samples under fewer than 4 frames
    period = four[edge:edge + VOCODER_HOP]
    return np.concatenate((four[:edge], np.tile(period, n_frames - 3), four[edge + VOCODER_HOP:]))


def istft(spec: np.ndarray, length: int) -> np.ndarray:
    """``librosa.istft(spec.T, hop_length=512, window=hann(2048), length=length)`` as float32, bit for bit.

    The vocoder's inverse (Griffin & Lim 1984's weighted overlap-add, as librosa 1.0 implements it):
    each frame's inverse real FFT, windowed and overlap-added (:func:`ser_tasks.signal.kernels.overlap_add`,
    in librosa's float32 accumulation order), then divided by the summed squared window where that
    exceeds float32's ``tiny``. Frames are rows and transformed in one call instead of librosa's
    blocks of 31, and the squared-window sum is built from one precomputed 4-frame sum
    (:func:`_window_sumsquare`).
    ``tests/test_augment.py`` holds the stretch it serves to ``array_equal`` against librosa.

    Args:
        spec: ``(frames, 1025)`` complex64 STFT at 2,048 points and hop 512, one frame per row.
        length: output samples.

    Returns:
        ``(length,)`` float32.
    """
    import scipy.fft  # as features.stft: only computing needs it

    n_frames = min(spec.shape[0], math.ceil((length + 2 * (VOCODER_N_FFT // 2)) / VOCODER_HOP))
    frames = scipy.fft.irfft(spec[:n_frames], n=VOCODER_N_FFT, axis=-1)
    y = kernels.overlap_add(frames, features.hann_window(VOCODER_N_FFT), VOCODER_HOP, VOCODER_N_FFT // 2, length)
    wss = librosa.util.fix_length(_window_sumsquare(n_frames)[VOCODER_N_FFT // 2:], size=length)
    np.divide(y, wss, out=y, where=wss > np.finfo(np.float32).tiny)
    return y


def pitch_shift(y: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Shift pitch by ``semitones`` keeping the duration.

    ``librosa.effects.pitch_shift``, bit for bit: a phase-vocoder stretch by
    ``q = 2 ** (-semitones / 12)`` (:func:`_vocoder_stretch`), resampling from ``sr / q`` to ``sr``
    (soxr HQ), cut or padded to the input's length.

    Args:
        y: ``(samples,)`` float32 waveform at ``sr`` Hz.
        sr: sample rate, Hz.
        semitones: shift; positive is higher.

    Returns:
        ``(samples,)`` float32.

    Raises:
        InputError: the result has non-finite samples.
    """
    return _finite(_stretch_and_shift(y, sr, 1.0, semitones), "pitch shift")


def time_stretch(y: np.ndarray, rate: float) -> np.ndarray:
    """Change tempo by ``rate`` keeping the pitch (``librosa.effects.time_stretch``'s values, :func:`_vocoder_stretch`).

    Returns:
        ``(round(samples / rate),)`` float32.

    Raises:
        InputError: ``rate`` is not positive, or the result has non-finite samples.
    """
    if not rate > 0:
        raise InputError(f"stretch rate must be positive, got {rate}")
    return _finite(_vocoder_stretch(y, rate), "time stretch")


def time_shift(y: np.ndarray, samples: int) -> np.ndarray:
    """Delay (``samples`` > 0) or advance (< 0) by whole samples, zero-filling; same length."""
    if samples == 0:
        return y
    out = np.zeros_like(y)
    if abs(samples) >= y.shape[0]:
        return out
    if samples > 0:
        out[samples:] = y[:-samples]
    else:
        out[:samples] = y[-samples:]
    return out


def apply_gain(y: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale amplitude by ``gain_db`` dB (factor ``10 ** (gain_db / 20)``)."""
    return (y * 10 ** (gain_db / 20)).astype(np.float32)


def stretch_and_pitch_shift(y: np.ndarray, sr: int, rate: float, semitones: float) -> np.ndarray:
    """:func:`time_stretch` by ``rate`` then :func:`pitch_shift` by ``semitones``, in one phase-vocoder pass.

    librosa's pitch shift is itself a stretch by ``q = 2 ** (-semitones / 12)`` followed by
    resampling from ``sr / q`` to ``sr``, so the two stretches fold into one by ``rate * q``. Half the
    STFT work of calling both, and one vocoder's phase smearing instead of two.

    Returns:
        ``(round(len(y) / rate),)`` float32, the length :func:`time_stretch` alone gives.

    Raises:
        InputError: the result has non-finite samples.
    """
    return _finite(_stretch_and_shift(y, sr, rate, semitones), "stretch and pitch shift")


def _stretch_and_shift(y: np.ndarray, sr: int, rate: float, semitones: float) -> np.ndarray:
    """One vocoder stretch by ``rate * q`` (``q = 2 ** (-semitones / 12)``), resampled from ``sr / q`` to ``sr``.

    ``rate = 1`` is ``librosa.effects.pitch_shift`` bit for bit. Returns ``(round(len(y) / rate),)``,
    not yet checked for finite samples.
    """
    q = 2.0 ** (-semitones / 12)
    shifted = resample(_vocoder_stretch(y, rate * q), sr / q, sr)
    return librosa.util.fix_length(shifted, size=round(y.shape[0] / rate))


def speed_perturb(y: np.ndarray, sr: int, rate: float) -> np.ndarray:
    """Play ``y`` ``rate`` times as fast: tempo and pitch both scale by ``rate``, as tape would.

    Kaldi's speed perturbation (Ko et al., Interspeech 2015): the clip is taken to be sampled at
    ``sr * rate`` Hz and resampled to ``sr`` (soxr HQ, :func:`ser_tasks.signal.audio.resample`). One
    resampling and no phase vocoder, so it costs a small fraction of :func:`time_stretch`.

    Args:
        y: ``(samples,)`` float32 waveform at ``sr`` Hz.
        sr: sample rate, Hz.
        rate: speed factor, > 0 (1.1 is 10 % faster and about 1.65 semitones higher).

    Returns:
        ``(ceil(samples / rate),)`` float32.

    Raises:
        InputError: ``rate`` is not positive, or the output is not finite.
    """
    if not rate > 0:
        raise InputError(f"speed rate must be positive, got {rate}")
    return _finite(resample(y, sr * rate, sr), "speed perturbation")


def augment_before_length(y: np.ndarray, sr: int, p: AugmentParams) -> np.ndarray:
    """The length-changing transforms, applied to the trimmed clip before padding: speed, stretch, pitch.

    Stretch and pitch at once by :func:`stretch_and_pitch_shift` when both are drawn.
    """
    if not math.isnan(p.speed_rate):
        y = speed_perturb(y, sr, p.speed_rate)
    stretch, pitch = not math.isnan(p.stretch_rate), not math.isnan(p.pitch_semitones)
    if stretch and pitch:
        return stretch_and_pitch_shift(y, sr, p.stretch_rate, p.pitch_semitones)
    if stretch:
        return time_stretch(y, p.stretch_rate)
    if pitch:
        return pitch_shift(y, sr, p.pitch_semitones)
    return y


def augment_after_length(y: np.ndarray, sr: int, p: AugmentParams, rng: np.random.Generator) -> np.ndarray:
    """The fixed-length transforms: shift, gain, then noise (last, so the SNR holds as drawn)."""
    if not math.isnan(p.shift_seconds):
        y = time_shift(y, int(round(p.shift_seconds * sr)))
    if not math.isnan(p.gain_db):
        y = apply_gain(y, p.gain_db)
    if not math.isnan(p.noise_snr_db):
        y = add_noise(y, p.noise_snr_db, rng)
    return y
