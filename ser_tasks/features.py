"""Frame-level features on one frame grid.

Log-mel spectrogram, MFCC from that log-mel, zero-crossing rate and RMS energy; with
``features.f0``, also an F0 contour (YIN).

All use ``center=True`` framing with the same hop, so each has ``1 + n_samples // hop_length``
frames and frame ``t`` of one feature lines up with frame ``t`` of the others.

Each matches its librosa function (``melspectrogram`` + ``power_to_db``, ``zero_crossing_rate``,
``rms``), computed with less work per clip, the step every row of a corpus pays for: the mel
filterbank is built once per configuration, not once per clip, and ZCR and RMS come from running
sums over the padded signal (one pass) instead of a copy of every overlapping frame (3.2 passes at
the default 512-sample frame and 160-sample hop).
"""

from __future__ import annotations

import functools

import librosa
import numpy as np

from .config import AudioConfig, FeatureConfig

FEATURES = ("log_mel", "mfcc", "zcr", "rms")
#: The F0 contour's search range in Hz: below any adult voice's F0, and above a raised female voice's.
F0_FMIN, F0_FMAX = 65.0, 600.0


def feature_names(cfg: FeatureConfig) -> tuple[str, ...]:
    """The features a store of ``cfg`` holds: :data:`FEATURES`, then ``f0`` when ``cfg.f0``."""
    return (*FEATURES, "f0") if cfg.f0 else FEATURES


def n_frames(audio: AudioConfig, cfg: FeatureConfig) -> int:
    """Frames per clip: ``1 + n_samples // hop_length`` (centred framing)."""
    return 1 + audio.n_samples // cfg.hop_length


def feature_shapes(audio: AudioConfig, cfg: FeatureConfig) -> dict[str, tuple[int, ...]]:
    """Per-row shape of each feature: log-mel ``(n_mels, T)``, MFCC ``(n_mfcc, T)``, ZCR, RMS [and F0] ``(T,)``."""
    t = n_frames(audio, cfg)
    shapes = {"log_mel": (cfg.n_mels, t), "mfcc": (cfg.n_mfcc, t), "zcr": (t,), "rms": (t,)}
    return {**shapes, "f0": (t,)} if cfg.f0 else shapes


def log_mel(y: np.ndarray, sr: int, cfg: FeatureConfig) -> np.ndarray:
    """Log-mel power spectrogram in dB (re 1.0, floored ``top_db`` below the clip's peak).

    Returns:
        ``(n_mels, T)`` float32, dB.
    """
    spec = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                               window=hann_window(cfg.win_length), center=True)) ** 2
    mel = mel_basis(sr, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax) @ spec
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=cfg.top_db).astype(np.float32)


@functools.lru_cache(maxsize=16)
def hann_window(n: int) -> np.ndarray:
    """The periodic Hann window ``librosa.stft`` uses by default, bit-identical to ``scipy.signal.get_window``.

    Computed as SciPy 1.18's ``general_cosine`` computes it (``0.5 + 0.5 cos`` on ``n + 1`` points
    from -pi to pi, the last dropped), so features do not change, but without importing
    ``scipy.signal`` (and with it ``scipy.stats``), the larger part of a worker's start-up when
    no augmentation needs it. ``tests/test_features.py`` checks the equality.

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
    running = np.concatenate(([0.0], np.cumsum(padded * padded)))
    starts = _frame_starts(padded.size, cfg.n_fft, cfg.hop_length)
    # max(0, .): a difference of two large running sums can round just below zero
    power = np.maximum(running[starts + cfg.n_fft] - running[starts], 0.0) / cfg.n_fft
    return np.sqrt(power).astype(np.float32)


def f0_contour(y: np.ndarray, sr: int, cfg: FeatureConfig) -> np.ndarray:
    """Fundamental frequency per frame, in octaves (``log2`` of Hz), by YIN (de Cheveigné & Kawahara 2002).

    ``librosa.yin`` over :data:`F0_FMIN`-:data:`F0_FMAX` Hz on the features' hop with centred
    framing, so frame ``t`` lines up with the log-mel's. The YIN frame is the shortest power of two
    that holds two periods of ``F0_FMIN`` (512 samples at 16 kHz). YIN gives a value on every frame,
    voiced or not: the model reads it beside RMS energy (``tdnn_prosody``), which tells the two apart.
    ``librosa.pyin``, which marks unvoiced frames, costs about 300 times as much per clip. With
    ``cfg.f0_stride`` k > 1, YIN runs at a hop of k frames (its frame j is centred on frame j k)
    and the octaves are linearly interpolated onto every frame, the last ones held at the last value.

    Args:
        y: ``(samples,)`` waveform.
        sr: its sample rate in Hz.
        cfg: feature settings: ``hop_length`` is the hop in samples, ``f0_stride`` YIN's hop in frames.

    Returns:
        ``(T,)`` float32 octaves (``log2(F0 / 1 Hz)``, about 6.0-9.2), ``T = 1 + samples // hop_length``.
    """
    frame = 1 << int(np.ceil(np.log2(2 * (np.ceil(sr / F0_FMIN) + 2))))
    k = cfg.f0_stride
    f0 = librosa.yin(y, fmin=F0_FMIN, fmax=F0_FMAX, sr=sr, frame_length=frame, hop_length=k * cfg.hop_length,
                     center=True)
    octaves = np.log2(f0)
    if k > 1:
        octaves = np.interp(np.arange(1 + y.shape[-1] // cfg.hop_length), k * np.arange(octaves.size), octaves)
    return octaves.astype(np.float32)


def extract(y: np.ndarray, sr: int, cfg: FeatureConfig, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Features of one fixed-length clip, keyed by name (shapes as :func:`feature_shapes`).

    Args:
        y: ``(samples,)`` waveform at ``sr`` Hz.
        sr: sample rate in Hz.
        cfg: feature settings.
        names: the features to compute (a model's input needs only some: ``ser_tasks.data.arrays_for``);
            default: all of :func:`feature_names`, what a store row holds.
    """
    names = feature_names(cfg) if names is None else names
    out: dict[str, np.ndarray] = {}
    if "log_mel" in names or "mfcc" in names:
        lm = log_mel(y, sr, cfg)
        if "log_mel" in names:
            out["log_mel"] = lm
        if "mfcc" in names:
            out["mfcc"] = mfcc_from_log_mel(lm, cfg.n_mfcc)
    if "zcr" in names:
        out["zcr"] = zero_crossing_rate(y, cfg)
    if "rms" in names:
        out["rms"] = rms_energy(y, cfg)
    if "f0" in names:
        out["f0"] = f0_contour(y, sr, cfg)
    return out
