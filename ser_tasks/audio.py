"""Decoding and length normalisation: file -> mono float32 waveform at a fixed rate and length.

Pipeline per clip: decode (soundfile, through fsspec) -> mix down to mono -> resample (soxr high
quality) -> trim leading/trailing silence -> pad or crop to a fixed length around the centre.
"""

from __future__ import annotations

import fsspec
import librosa
import numpy as np
import soundfile as sf

from .storage import fs_options


class AudioError(ValueError):
    """A clip could not be decoded or is unusable; the message names the file and the reason."""


def load_audio(path: str, sample_rate: int, storage_options: dict | None = None) -> np.ndarray:
    """Read one clip as mono float32 at ``sample_rate``.

    Args:
        path: local path or fsspec URL of a WAV/FLAC/OGG/MP3/AIFF file.
        sample_rate: target rate in Hz.
        storage_options: fsspec options for remote paths.

    Returns:
        ``(samples,)`` float32 in [-1, 1] (channels averaged).

    Raises:
        AudioError: unreadable, empty, or non-finite audio (message names ``path``).
    """
    try:
        with fsspec.open(path, "rb", **fs_options(path, storage_options)) as fh:
            data, rate = sf.read(fh, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
        raise AudioError(f"{path}: cannot decode audio ({exc})") from exc
    if data.size == 0:
        raise AudioError(f"{path}: no samples")
    y = data.mean(axis=1)
    if not np.isfinite(y).all():
        raise AudioError(f"{path}: non-finite samples")
    if rate != sample_rate:
        y = librosa.resample(y, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    return np.ascontiguousarray(y, dtype=np.float32)


def trim_silence(y: np.ndarray, top_db: float | None, frame_length: int = 512, hop_length: int = 128) -> np.ndarray:
    """Drop leading and trailing frames quieter than ``top_db`` dB below the peak.

    Args:
        y: ``(samples,)`` waveform.
        top_db: threshold in dB below the clip's maximum frame RMS; ``None`` returns ``y``.
        frame_length, hop_length: analysis frame and hop in samples.

    Returns:
        ``(samples',)`` float32; all of ``y`` if it is silent throughout.
    """
    if top_db is None or not np.any(y):
        return y
    trimmed, _ = librosa.effects.trim(y, top_db=top_db, frame_length=frame_length, hop_length=hop_length)
    return trimmed if trimmed.size else y


def fix_length(y: np.ndarray, n_samples: int) -> np.ndarray:
    """Zero-pad on both sides, or crop around the centre, to exactly ``n_samples``.

    Returns:
        ``(n_samples,)`` float32.
    """
    n = y.shape[0]
    if n == n_samples:
        return y.astype(np.float32, copy=False)
    if n > n_samples:
        start = (n - n_samples) // 2
        return np.ascontiguousarray(y[start:start + n_samples], dtype=np.float32)
    left = (n_samples - n) // 2
    return np.pad(y, (left, n_samples - n - left)).astype(np.float32, copy=False)
