"""Frame-level features on one frame grid.

Log-mel spectrogram, MFCC from that log-mel, zero-crossing rate and RMS energy; with
``features.f0``, also an F0 contour (YIN).

All use ``center=True`` framing with the same hop, so each has ``1 + n_samples // hop_length``
frames and frame ``t`` of one feature lines up with frame ``t`` of the others.

Each matches its librosa function (``melspectrogram`` + ``power_to_db``, ``zero_crossing_rate``,
``rms``), computed with less work per clip, the step every row of a corpus pays for: the mel
filterbank is built once per configuration, not once per clip, and ZCR and RMS come from running
sums over the padded signal (one pass) instead of a copy of every overlapping frame (3.2 passes at
the default 512-sample frame and 160-sample hop). The power spectrogram (:func:`power_spectrogram`)
equals ``librosa.stft``'s squared magnitude and YIN (:func:`yin`) equals ``librosa.yin``, bit for
bit, both with frames laid out as rows and all-zero frames (the store's padding) answered without
their FFTs; at the defaults the two share one framing (:func:`centred_frames`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import librosa
import numpy as np

from ser_tasks.config import AudioConfig, FeatureConfig
from ser_tasks.signal import kernels

FEATURES = ("log_mel", "mfcc", "zcr", "rms")
#: The F0 contour's search range in Hz: below any adult voice's F0, and above a raised female voice's.
F0_FMIN, F0_FMAX = 65.0, 600.0


def feature_names(cfg: FeatureConfig) -> tuple[str, ...]:
    """The features a store of ``cfg`` holds: :data:`FEATURES`, then ``f0`` and ``encoder`` when set."""
    return (*FEATURES, *(("f0",) if cfg.f0 else ()), *(("encoder",) if cfg.encoder else ()))


def n_frames(audio: AudioConfig, cfg: FeatureConfig) -> int:
    """Frames per clip: ``1 + n_samples // hop_length`` (centred framing)."""
    return 1 + audio.n_samples // cfg.hop_length


def feature_shapes(audio: AudioConfig, cfg: FeatureConfig) -> dict[str, tuple[int, ...]]:
    """Per-row shape of each feature.

    Log-mel ``(n_mels, T)``, MFCC ``(n_mfcc, T)``, ZCR, RMS [and F0] ``(T,)``; [encoder
    ``(layers + 1, 2 * d_model)``, :attr:`ser_tasks.signal.encoder.Architecture.stats_shape`].

    Raises:
        InputError: an encoder that cannot be resolved (:func:`ser_tasks.signal.encoder.architecture`).
    """
    t = n_frames(audio, cfg)
    shapes = {"log_mel": (cfg.n_mels, t), "mfcc": (cfg.n_mfcc, t), "zcr": (t,), "rms": (t,)}
    if cfg.f0:
        shapes["f0"] = (t,)
    if cfg.encoder:
        from ser_tasks.signal.encoder import architecture  # Keras is imported only by stores and models that use one

        shapes["encoder"] = architecture(cfg.encoder).stats_shape
    return shapes


def log_mel(y: np.ndarray, sr: int, cfg: FeatureConfig, framed: Framed | None = None) -> np.ndarray:
    """Log-mel power spectrogram in dB (re 1.0, floored ``top_db`` below the clip's peak).

    ``librosa.power_to_db(mel_basis @ power_spectrogram(y))``, the values of
    ``librosa.feature.melspectrogram`` with a cached filterbank (:func:`mel_basis`).

    Args:
        y: ``(samples,)`` float waveform.
        sr: its sample rate in Hz.
        cfg: feature settings (``n_fft``, ``win_length``, ``hop_length`` in samples; ``n_mels``,
            ``fmin``/``fmax`` in Hz, ``top_db`` in dB).
        framed: ``centred_frames(y, cfg.n_fft, cfg.hop_length)`` when the caller has it (YIN's
            frames are the same at the defaults), else computed here.

    Returns:
        ``(n_mels, T)`` float32, dB, ``T = 1 + samples // hop_length`` (even ``n_fft``).
    """
    spec = power_spectrogram(y, cfg, framed)
    mel = mel_basis(sr, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax) @ spec
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=cfg.top_db).astype(np.float32)


class Framed(NamedTuple):
    """The frames of a zero-padded (``center=True``) signal that hold a nonzero sample.

    Attributes:
        live: ``(T,)`` bool, frame ``t`` holds a nonzero sample.
        frames: ``(T', frame_length)`` contiguous copy of those frames, the signal's dtype,
            ``T' = live.sum()``.
    """

    live: np.ndarray
    frames: np.ndarray


def centred_frames(y: np.ndarray, frame_length: int, hop_length: int) -> Framed:
    """Frame ``y`` as ``librosa.util.frame`` does after ``center=True`` zero padding, keeping nonzero frames.

    The store pads a trimmed clip with zeros to its fixed length (38 % of a RAVDESS clip's frames
    on average): an all-zero frame's spectrum is 0 and YIN's answer for it is known, so neither
    needs its FFTs. The log-mel and YIN share one call when their frames coincide (the defaults).

    Args:
        y: ``(samples,)`` waveform.
        frame_length: frame in samples; the signal is padded by ``frame_length // 2`` each side.
        hop_length: hop between frame starts, in samples.

    Returns:
        :class:`Framed`, ``T = 1 + (samples + 2 (frame_length // 2) - frame_length) // hop_length``.
    """
    padded = np.pad(y, frame_length // 2)
    starts = _frame_starts(padded.size, frame_length, hop_length)
    nonzero = np.concatenate(([0], np.cumsum(padded != 0)))
    live = nonzero[starts + frame_length] > nonzero[starts]
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length]
    return Framed(live, np.ascontiguousarray(frames if live.all() else frames[live]))


@functools.lru_cache(maxsize=16)
def fft_window(win_length: int, n_fft: int) -> np.ndarray:
    """The periodic Hann window of ``win_length`` samples centred in ``n_fft`` zeros, as ``librosa.stft`` pads it.

    Returns:
        ``(n_fft,)`` float64, read-only (shared between calls).
    """
    w = librosa.util.pad_center(hann_window(win_length), size=n_fft)
    w.setflags(write=False)
    return w


def stft(y: np.ndarray, n_fft: int, hop_length: int, win_length: int | None = None,
         framed: Framed | None = None) -> np.ndarray:
    """``librosa.stft(y, n_fft, hop_length, win_length)`` (periodic Hann, ``center=True``, zero padding), bit for bit.

    The same arithmetic in the same dtypes (window and frame multiplied in float64, SciPy's real
    FFT, the result cast to ``y``'s complex type), laid out with frames as rows, and all-zero
    frames (the store's padding), whose transform is exactly 0, skipped. The result has librosa's
    Fortran order, so what follows it (the mel product, the phase vocoder) runs in the same order
    too. ``tests/test_features.py`` holds it to ``array_equal`` against librosa.

    Args:
        y: ``(samples,)`` float32 or float64 waveform.
        n_fft: FFT size in samples.
        hop_length: hop between frames, in samples.
        win_length: Hann window in samples, centred in ``n_fft`` (``None``: ``n_fft``).
        framed: ``centred_frames(y, n_fft, hop_length)`` if the caller has it.

    Returns:
        ``(1 + n_fft // 2, T)`` complex64 for float32 input (complex128 for float64), Fortran order,
        ``T = 1 + samples // hop_length`` (even ``n_fft``).

    Raises:
        librosa.ParameterError: a non-finite or non-float waveform (librosa.stft's check).
    """
    librosa.util.valid_audio(y)
    framed = framed or centred_frames(y, n_fft, hop_length)
    out = np.zeros((framed.live.size, 1 + n_fft // 2), dtype=librosa.util.dtype_r2c(y.dtype))
    if framed.frames.shape[0]:
        import scipy.fft  # here, not at the top: the flow's process plans with this module and computes nothing

        spectra = scipy.fft.rfft(framed.frames * fft_window(win_length or n_fft, n_fft), axis=-1)
        if spectra.shape[0] == out.shape[0]:
            out[:] = spectra
        else:
            out[framed.live] = spectra
    return out.T


def power_spectrogram(y: np.ndarray, cfg: FeatureConfig, framed: Framed | None = None) -> np.ndarray:
    """``np.abs(librosa.stft(y, ...)) ** 2`` at the feature settings, bit for bit (:func:`stft`).

    Args:
        y: ``(samples,)`` float32 or float64 waveform.
        cfg: feature settings: ``n_fft``, ``win_length`` and ``hop_length`` in samples.
        framed: ``centred_frames(y, cfg.n_fft, cfg.hop_length)`` if the caller has it.

    Returns:
        ``(1 + n_fft // 2, T)`` power, ``y``'s real dtype (float32 for float32 input), Fortran order.
    """
    return np.abs(stft(y, cfg.n_fft, cfg.hop_length, cfg.win_length, framed)) ** 2


@functools.lru_cache(maxsize=16)
def hann_window(n: int) -> np.ndarray:
    """The periodic Hann window ``librosa.stft`` uses by default, bit-identical to ``scipy.signal.get_window``.

    Computed as SciPy 1.18's ``general_cosine`` computes it (``0.5 + 0.5 cos`` on ``n + 1`` points
    from -pi to pi, the last dropped), so features do not change, but without importing
    ``scipy.signal`` (and with it ``scipy.stats``), which librosa would otherwise import for it, in
    the features and in the phase vocoder alike. ``tests/test_features.py`` checks the equality.

    Args:
        n: window length in samples (> 1).

    Returns:
        ``(n,)`` float64, read-only (shared between calls).
    """
    fac = np.linspace(-np.pi, np.pi, n + 1, dtype=np.float64)
    w = np.zeros(n + 1, dtype=np.float64)
    for k, a in enumerate((0.5, 0.5)):  # the same operations, in the same order, as SciPy's
        w += a * np.cos(k * fac)
    w = w[:-1]
    w.setflags(write=False)
    return w


@functools.lru_cache(maxsize=16)
def mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """The Slaney-normalised mel filterbank ``librosa.filters.mel`` builds, cached per configuration.

    Building it took a quarter of the log-mel's time per clip.

    Returns:
        ``(n_mels, 1 + n_fft // 2)`` float32, read-only (shared between calls).
    """
    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    basis.setflags(write=False)
    return basis


def mfcc_from_log_mel(log_mel_db: np.ndarray, n_mfcc: int) -> np.ndarray:
    """MFCC as the type-II orthonormal DCT of a log-mel spectrogram (no second mel analysis).

    Returns:
        ``(n_mfcc, T)`` float32.
    """
    return librosa.feature.mfcc(S=log_mel_db, n_mfcc=n_mfcc).astype(np.float32)


#: ``librosa.zero_crossings``' default: samples within this of zero count as positive.
ZC_THRESHOLD = 1e-10


def _frame_starts(n_padded: int, frame_length: int, hop_length: int) -> np.ndarray:
    """First sample of each whole frame of a padded signal (``librosa.util.frame``'s framing)."""
    return np.arange(0, n_padded - frame_length + 1, hop_length)


def zero_crossing_rate(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Fraction of sign changes per ``n_fft``-sample frame, as ``librosa.feature.zero_crossing_rate``.

    As librosa's with ``center=True`` (edge padding; the ``n_fft - 1`` sample pairs inside a frame
    counted, over ``n_fft``; samples within :data:`ZC_THRESHOLD` of zero positive). Equal to librosa's,
    exactly.

    Args:
        y: ``(samples,)`` waveform.
        cfg: feature settings: ``n_fft`` is the frame length and ``hop_length`` the hop, in samples.

    Returns:
        ``(T,)`` float32 in [0, 1], ``T = 1 + samples // hop_length``.
    """
    half = cfg.n_fft // 2
    negative = np.pad(y, half, mode="edge") < -ZC_THRESHOLD
    # changes[j]: a crossing between padded samples j and j + 1; a frame holds n_fft - 1 such pairs
    running = np.concatenate(([0], np.cumsum(negative[1:] != negative[:-1], dtype=np.int64)))
    starts = _frame_starts(negative.size, cfg.n_fft, cfg.hop_length)
    return ((running[starts + cfg.n_fft - 1] - running[starts]) / cfg.n_fft).astype(np.float32)


def rms_energy(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Root-mean-square amplitude per ``n_fft``-sample frame, as ``librosa.feature.rms``.

    As librosa's with ``center=True`` (zero padding), from a float64 running sum of squares (librosa
    sums each frame in float32; the two agree to about 1e-6 relative).

    Args:
        y: ``(samples,)`` waveform.
        cfg: feature settings: ``n_fft`` is the frame length and ``hop_length`` the hop, in samples.

    Returns:
        ``(T,)`` float32, ``T = 1 + samples // hop_length``.
    """
    padded = np.pad(y.astype(np.float64), cfg.n_fft // 2)
    running = np.concatenate(([0.0], kernels.cumsum(padded * padded)))
    starts = _frame_starts(padded.size, cfg.n_fft, cfg.hop_length)
    # max(0, .): a difference of two large running sums can round just below zero
    power = np.maximum(running[starts + cfg.n_fft] - running[starts], 0.0) / cfg.n_fft
    return np.sqrt(power).astype(np.float32)


def yin(y: np.ndarray, sr: int, frame_length: int, hop_length: int, fmin: float = F0_FMIN,
        fmax: float = F0_FMAX, trough_threshold: float = 0.1, framed: Framed | None = None) -> np.ndarray:
    """F0 per centred frame by YIN (de Cheveigné & Kawahara 2002): ``librosa.yin``, bit for bit, in less time.

    The same arithmetic as ``librosa.yin(y, fmin=fmin, fmax=fmax, sr=sr, frame_length=frame_length,
    hop_length=hop_length, center=True)`` (librosa 1.0; zero padding), in the same dtypes and order,
    so the result is equal, not close (``tests/test_features.py`` holds it to ``array_equal``). What
    changes is the layout and the work, not the values: frames are rows, so the autocorrelation's
    FFTs run along contiguous memory; the difference function, its normalisation and the period
    choice run one frame at a time in a compiled loop (:func:`ser_tasks.signal.kernels.yin_lags`), with the
    parabolic refinement at the chosen lag of each frame instead of at all
    ``max_period - min_period + 1`` lags; and all-zero frames (the store's zero padding) get
    librosa's answer for them, ``sr / min_period``, without the arithmetic.
    librosa's quirks are kept on purpose: the energy term of lag 1 is 0 (librosa zeroes the first
    cumulative energy before it subtracts it), the difference function's mean is divided in float64.

    Args:
        y: ``(samples,)`` float waveform, finite.
        sr: its sample rate in Hz.
        frame_length: YIN's frame in samples; must hold more than one period of ``fmin`` (two, ideally).
        hop_length: hop between frame centres, in samples.
        fmin: lowest F0 searched, in Hz.
        fmax: highest F0 searched, in Hz.
        trough_threshold: the first lag whose normalised difference is a local minimum below this
            is the period; without one, the global minimum.
        framed: ``centred_frames(y, frame_length, hop_length)`` if the caller has it (the log-mel's,
            at the defaults).

    Returns:
        ``(1 + samples // hop_length,)`` float64 F0 in Hz.

    Raises:
        librosa.ParameterError: a non-finite or non-float waveform (librosa's check), or a range
            outside ``0 < fmin < fmax <= sr / 2`` or longer than the frame (librosa.yin's conditions).
    """
    librosa.util.valid_audio(y)
    if not 0 < fmin < fmax <= sr / 2 or sr / fmin >= frame_length - 1:  # librosa.yin's own conditions
        raise librosa.ParameterError(f"YIN needs 0 < fmin < fmax <= sr / 2 and a frame longer than one period "
                                     f"of fmin: fmin={fmin}, fmax={fmax}, sr={sr}, frame_length={frame_length}")
    min_period = int(np.floor(sr / fmax))
    max_period = min(int(np.ceil(sr / fmin)), frame_length - 1)
    # An all-zero frame (the store's padding: about 38 % of a trimmed RAVDESS clip's frames) has
    # difference 0 at every lag, no trough, so lag 0 and no shift: F0 = sr / min_period exactly.
    live, frames = framed or centred_frames(y, frame_length, hop_length)  # (T,), (T', frame) rows
    f0 = np.full(live.size, sr / min_period)
    if not frames.shape[0]:
        return f0
    import scipy.fft  # see stft

    n_pad = scipy.fft.next_fast_len(2 * frame_length - 1, real=True)
    acf = scipy.fft.irfft(librosa.util.abs2(scipy.fft.rfft(frames, n=n_pad, axis=-1)), n=n_pad, axis=-1)
    lag, shift = kernels.yin_lags(frames, acf, min_period, max_period, trough_threshold)
    f0[live] = sr / (min_period + lag + shift)
    return f0


def f0_frame_length(sr: int) -> int:
    """YIN's frame in samples: the shortest power of two that holds two periods of :data:`F0_FMIN` (512 at 16 kHz)."""
    return 1 << int(np.ceil(np.log2(2 * (np.ceil(sr / F0_FMIN) + 2))))


def f0_contour(y: np.ndarray, sr: int, cfg: FeatureConfig, framed: Framed | None = None) -> np.ndarray:
    """Fundamental frequency per frame, in octaves (``log2`` of Hz), by YIN (de Cheveigné & Kawahara 2002).

    :func:`yin` (``librosa.yin``'s values, in less time) over :data:`F0_FMIN`-:data:`F0_FMAX` Hz on the
    features' hop with centred framing, so frame ``t`` lines up with the log-mel's. The YIN frame is the
    shortest power of two that holds two periods of ``F0_FMIN`` (512 samples at 16 kHz). YIN gives a
    value on every frame, voiced or not: the model reads it beside RMS energy (``tdnn_prosody``), which
    tells the two apart. ``librosa.pyin``, which marks unvoiced frames, costs about 300 times as much
    per clip. With ``cfg.f0_stride`` k > 1, YIN runs at a hop of k frames (its frame j is centred on
    frame j k) and the octaves are linearly interpolated onto every frame, the last ones held at the
    last value.

    Args:
        y: ``(samples,)`` waveform.
        sr: its sample rate in Hz.
        cfg: feature settings: ``hop_length`` is the hop in samples, ``f0_stride`` YIN's hop in frames.
        framed: ``centred_frames(y, f0_frame_length(sr), cfg.f0_stride * cfg.hop_length)`` if the
            caller has it.

    Returns:
        ``(T,)`` float32 octaves (``log2(F0 / 1 Hz)``, about 6.0-9.2), ``T = 1 + samples // hop_length``.
    """
    k = cfg.f0_stride
    f0 = yin(y, sr, f0_frame_length(sr), k * cfg.hop_length, framed=framed)
    octaves = np.log2(f0)
    if k > 1:
        octaves = np.interp(np.arange(1 + y.shape[-1] // cfg.hop_length), k * np.arange(octaves.size), octaves)
    return octaves.astype(np.float32)


def loudness(y: np.ndarray, dbfs: float | None) -> np.ndarray:
    """``y`` scaled to an RMS of ``dbfs`` dB re full scale (``None``, or a silent ``y``: as it is), float32."""
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0
    if dbfs is None or rms == 0.0:
        return y
    return (y * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def extract(y: np.ndarray, sr: int, cfg: FeatureConfig, names: tuple[str, ...] | None = None,
            speech: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Features of one fixed-length clip, keyed by name (shapes as :func:`feature_shapes`).

    Args:
        y: ``(samples,)`` waveform at ``sr`` Hz.
        sr: sample rate in Hz.
        cfg: feature settings.
        names: the features to compute (a model's input needs only some: ``ser_tasks.learn.data.arrays_for``);
            default: all of :func:`feature_names`, what a store row holds.
        speech: ``(start, stop)`` samples of ``y`` that hold the clip (the rest is the padding to
            ``audio.duration``); the encoder embeds that span only. Default: all of ``y``.

    Raises:
        InputError: the encoder cannot be loaded, or the speech span is under 20 ms.
    """
    names = feature_names(cfg) if names is None else names
    out: dict[str, np.ndarray] = {}
    framed: dict[tuple[int, int], Framed] = {}  # (frame, hop) -> frames, shared by the log-mel and YIN

    def frames_of(frame_length: int, hop_length: int) -> Framed:
        key = (frame_length, hop_length)
        if key not in framed:
            framed[key] = centred_frames(y, frame_length, hop_length)
        return framed[key]

    if "log_mel" in names or "mfcc" in names:
        lm = log_mel(y, sr, cfg, frames_of(cfg.n_fft, cfg.hop_length))
        if "log_mel" in names:
            out["log_mel"] = lm
        if "mfcc" in names:
            out["mfcc"] = mfcc_from_log_mel(lm, cfg.n_mfcc)
    if "zcr" in names:
        out["zcr"] = zero_crossing_rate(y, cfg)
    if "rms" in names:
        out["rms"] = rms_energy(y, cfg)
    if "f0" in names:
        out["f0"] = f0_contour(y, sr, cfg, frames_of(f0_frame_length(sr), cfg.f0_stride * cfg.hop_length))
    if "encoder" in names:
        from ser_tasks.signal.encoder import shared

        start, stop = speech or (0, y.shape[-1])
        out["encoder"] = shared(cfg.encoder).embed(loudness(y[start:stop], cfg.encoder_loudness_dbfs), sr)
    return out
