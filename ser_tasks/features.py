"""Frame-level features on one frame grid: log-mel spectrogram, MFCC from that log-mel, zero-crossing
rate and RMS energy.

All use ``center=True`` framing with the same hop, so each has ``1 + n_samples // hop_length``
frames and frame ``t`` of one feature lines up with frame ``t`` of the others.
"""

from __future__ import annotations

import librosa
import numpy as np

from .config import AudioConfig, FeatureConfig

FEATURES = ("log_mel", "mfcc", "zcr", "rms")


def n_frames(audio: AudioConfig, cfg: FeatureConfig) -> int:
    """Frames per clip: ``1 + n_samples // hop_length`` (centred framing)."""
    return 1 + audio.n_samples // cfg.hop_length


def feature_shapes(audio: AudioConfig, cfg: FeatureConfig) -> dict[str, tuple[int, ...]]:
    """Per-row shape of each feature: log-mel ``(n_mels, T)``, MFCC ``(n_mfcc, T)``, ZCR and RMS ``(T,)``."""
    t = n_frames(audio, cfg)
    return {"log_mel": (cfg.n_mels, t), "mfcc": (cfg.n_mfcc, t), "zcr": (t,), "rms": (t,)}


def log_mel(y: np.ndarray, sr: int, cfg: FeatureConfig) -> np.ndarray:
    """Log-mel power spectrogram in dB (re 1.0, floored ``top_db`` below the clip's peak).

    Returns:
        ``(n_mels, T)`` float32, dB.
    """
    mel = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
        center=True, power=2.0, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
    )
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=cfg.top_db).astype(np.float32)


def mfcc_from_log_mel(log_mel_db: np.ndarray, n_mfcc: int) -> np.ndarray:
    """MFCC as the type-II orthonormal DCT of a log-mel spectrogram (no second mel analysis).

    Returns:
        ``(n_mfcc, T)`` float32.
    """
    return librosa.feature.mfcc(S=log_mel_db, n_mfcc=n_mfcc).astype(np.float32)


def zero_crossing_rate(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Fraction of sign changes per ``n_fft``-sample frame. Returns ``(T,)`` float32 in [0, 1]."""
    return librosa.feature.zero_crossing_rate(y, frame_length=cfg.n_fft, hop_length=cfg.hop_length,
                                              center=True)[0].astype(np.float32)


def rms_energy(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Root-mean-square amplitude per ``n_fft``-sample frame. Returns ``(T,)`` float32."""
    return librosa.feature.rms(y=y, frame_length=cfg.n_fft, hop_length=cfg.hop_length, center=True)[0]


def extract(y: np.ndarray, sr: int, cfg: FeatureConfig) -> dict[str, np.ndarray]:
    """All features of one fixed-length clip, keyed by :data:`FEATURES` (shapes as
    :func:`feature_shapes`)."""
    lm = log_mel(y, sr, cfg)
    return {"log_mel": lm, "mfcc": mfcc_from_log_mel(lm, cfg.n_mfcc),
            "zcr": zero_crossing_rate(y, cfg), "rms": rms_energy(y, cfg).astype(np.float32)}
