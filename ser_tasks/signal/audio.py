"""Decoding and length normalisation: file -> mono float32 waveform at a fixed rate and length.

Pipeline per clip: decode (16-bit FLAC with miniaudio's dr_flac, anything else with soundfile;
through fsspec for remote files) -> mix down to mono -> resample (soxr high quality) -> trim
leading/trailing silence and refuse clips that carry no speech (:func:`speech`) -> pad or crop to a
fixed length around the centre. Extraction and the registered model
(:mod:`ser_tasks.serve.predict`) both call these functions, so a clip is prepared one way only.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass

import fsspec
import librosa
import miniaudio
import numpy as np
import soundfile as sf
import soxr

from ser_tasks.config import AudioConfig
from ser_tasks.errors import AudioError
from ser_tasks.remote import fs_options, is_remote


@dataclass(frozen=True)
class DecodeLimits:
    """How much of one input a decoder may take; ``None`` is no limit.

    Checked from the file's header before any sample is decoded, and again while decoding (a
    header may lie), so a file over a limit costs a header read, not a whole decode.

    Attributes:
        max_seconds: longest decoded duration, seconds (at the file's own rate).
        max_bytes: largest encoded file, bytes.
        max_channels: most channels (speech is mono or stereo; more is a device's raw capture).
        refuse_truncated: refuse a file shorter than its header says (libsndfile's own diagnosis,
            "data : N (should be M)"), instead of decoding what is there; a streaming placeholder
            size (0 or 0xFFFFFFFF) is not a claim.
    """

    max_seconds: float | None = None
    max_bytes: int | None = None
    max_channels: int | None = None
    refuse_truncated: bool = False

    def check_bytes(self, size: int, name: str) -> None:
        """Raise :class:`AudioError` when an encoded input of ``size`` bytes is over :attr:`max_bytes`."""
        if self.max_bytes is not None and size > self.max_bytes:
            raise AudioError(f"{name}: {size} bytes, over the limit of {self.max_bytes}")

    def check_header(self, frames: int, rate: int, channels: int, name: str) -> int | None:
        """Check what a header claims; return the most frames to decode (``None``: all).

        Raises:
            AudioError: more channels or a longer duration than allowed.
        """
        if self.max_channels is not None and channels > self.max_channels:
            raise AudioError(f"{name}: {channels} channels, over the limit of {self.max_channels}")
        if self.max_seconds is None:
            return None
        limit = int(np.ceil(self.max_seconds * rate))
        if frames > limit:
            raise AudioError(f"{name}: longer than the limit of {self.max_seconds:g} s")
        return limit


#: No limits: files a user chose (extraction, training).
UNLIMITED = DecodeLimits()


def load_audio(path: str, sample_rate: int, storage_options: dict | None = None,
               limits: DecodeLimits = UNLIMITED) -> np.ndarray:
    """Read one clip as mono float32 at ``sample_rate``.

    Args:
        path: local path or fsspec URL of a WAV/FLAC/OGG/MP3/AIFF file.
        sample_rate: target rate in Hz.
        storage_options: fsspec options for remote paths.
        limits: size, duration and channel limits (the file's size is checked before it is read).

    Returns:
        ``(samples,)`` float32 in [-1, 1] (channels averaged).

    Raises:
        AudioError: missing, unreadable, empty, non-finite, or over a limit (message names ``path``).
    """
    try:
        if not is_remote(path):  # libsndfile reads the file itself: no Python callback per block
            local = path.removeprefix("file://")
            if limits.max_bytes is not None:
                limits.check_bytes(os.path.getsize(local), path)
            # read_flac16 opens it first: missing or unreadable is an OSError with its reason, as fsspec gives
            return _decode(local, path, sample_rate, limits)
        with fsspec.open(path, "rb", **fs_options(path, storage_options)) as fh:
            if limits.max_bytes is not None:
                limits.check_bytes(fh.size if getattr(fh, "size", None) is not None else 0, path)
                data = fh.read(limits.max_bytes + 1)
                limits.check_bytes(len(data), path)
            else:
                data = fh.read()  # one request for the whole object, not one per block libsndfile asks for
        return _decode(io.BytesIO(data), path, sample_rate, limits)
    except OSError as exc:  # missing file, permissions, network
        raise AudioError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def decode_audio(data: bytes, sample_rate: int, name: str = "audio", limits: DecodeLimits = UNLIMITED) -> np.ndarray:
    """Decode an encoded file held in memory (anything soundfile reads) as :func:`load_audio` does.

    Args:
        data: the file's bytes (WAV, FLAC, OGG, MP3, ...).
        sample_rate: target rate in Hz.
        name: what error messages call the input (a path or a row number).
        limits: size, duration and channel limits.

    Returns:
        ``(samples,)`` float32 in [-1, 1] (channels averaged).

    Raises:
        AudioError: undecodable, empty, non-finite, or over a limit (message names ``name``).
    """
    limits.check_bytes(len(data), name)
    return _decode(io.BytesIO(data), name, sample_rate, limits)


#: The first four bytes of a FLAC stream.
FLAC_MARKER = b"fLaC"


def read_flac16(src: str | io.BytesIO, limits: DecodeLimits = UNLIMITED,
                name: str = "audio") -> tuple[np.ndarray, int] | None:
    """Decode a 16-bit FLAC stream with miniaudio (dr_flac), exactly as ``soundfile.read`` gives it.

    FLAC is lossless, so both decoders give the same integer samples; libsndfile's float32 read
    scales them by ``1 / 32768``, exact in float32, as this does. dr_flac decodes faster, and FLAC
    decoding was the largest single cost of a RAVDESS row (docs/decisions.md, D20;
    ``benchmarks/decode_speed.py``).

    Args:
        src: a local path, or the whole file in memory.
        limits: checked against the stream's header before decoding.
        name: what error messages call the input.

    Returns:
        ``((frames, channels) float32 in [-1, 1), sample rate in Hz)``; ``None`` when ``src`` is not
        FLAC, holds other than 16-bit samples, or does not decode to the frame count its header
        gives (dr_flac drops a frame whose checksum fails): :func:`soundfile.read` then reads it,
        or names what is wrong.

    Raises:
        OSError: a local path that cannot be opened (missing, no permission).
        AudioError: the header claims more channels or a longer duration than ``limits`` allow.
    """
    if isinstance(src, str):
        with open(src, "rb") as fh:
            if fh.read(4) != FLAC_MARKER:
                return None
            raw = FLAC_MARKER + fh.read()
    else:
        raw = src.getvalue()
        if raw[:4] != FLAC_MARKER:
            return None
    try:
        info = miniaudio.flac_get_info(raw)
        if info.sample_width != 2 or info.num_frames <= 0:
            return None
        limits.check_header(info.num_frames, info.sample_rate, info.nchannels, name)
        samples = np.frombuffer(miniaudio.flac_read_s16(raw).samples, dtype=np.int16)
    except miniaudio.MiniaudioError:
        return None
    if samples.size != info.num_frames * info.nchannels:
        return None
    return samples.reshape(-1, info.nchannels) * np.float32(1 / 32768), info.sample_rate


def _read_soundfile(src: str | io.BytesIO, name: str, limits: DecodeLimits) -> tuple[np.ndarray, int]:
    """``soundfile.read`` of ``src``, stopping one frame past the duration limit (a header may lie)."""
    with sf.SoundFile(src) as fh:
        if limits.refuse_truncated:
            claim = re.search(r"^data\s*: (\d+) \(should be (\d+)\)", fh.extra_info, re.M)
            if claim and int(claim[1]) > int(claim[2]) and int(claim[1]) not in (0, 0xFFFFFFFF):
                raise AudioError(f"{name}: truncated (its header promises more audio than it holds)")
        limit = limits.check_header(fh.frames, fh.samplerate, fh.channels, name)
        data = fh.read(frames=-1 if limit is None else limit + 1, dtype="float32", always_2d=True)
        if limit is not None and data.shape[0] > limit:
            raise AudioError(f"{name}: longer than the limit of {limits.max_seconds:g} s")
        return data, fh.samplerate


def _decode(src: str | io.BytesIO, name: str, sample_rate: int, limits: DecodeLimits = UNLIMITED) -> np.ndarray:
    try:
        data, rate = read_flac16(src, limits, name) or _read_soundfile(src, name, limits)
    except AudioError:
        raise
    except sf.LibsndfileError as exc:
        # its str() names the file object ("Error opening <...LocalFileOpener at 0x..>"); keep the reason
        raise AudioError(f"{name}: cannot decode audio ({exc.error_string.rstrip('.')})") from exc
    except (RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{name}: cannot decode audio ({exc})") from exc
    if data.size == 0:
        raise AudioError(f"{name}: no samples")
    y = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)  # a mean over one channel is that channel
    if not np.isfinite(y).all():
        raise AudioError(f"{name}: non-finite samples")
    if rate != sample_rate:
        y = resample(y, rate, sample_rate)
    return np.ascontiguousarray(y, dtype=np.float32)


def resample(y: np.ndarray, orig_sr: float, target_sr: float) -> np.ndarray:
    """Resample with soxr's HQ filter, as ``librosa.resample(y, res_type="soxr_hq")`` does, bit for bit.

    librosa calls ``soxr.resample`` through ``np.apply_along_axis`` after validating the signal,
    then cuts or zero-pads the result to ``ceil(samples * target_sr / orig_sr)``; this does the
    same for a 1-D signal without the validation (the caller checked it) or the per-axis loop.
    ``tests/test_audio.py`` checks the equality.

    Args:
        y: ``(samples,)`` float32 or float64 waveform at ``orig_sr`` Hz.
        orig_sr: its sample rate, Hz.
        target_sr: the rate wanted, Hz.

    Returns:
        ``(ceil(samples * target_sr / orig_sr),)`` of ``y``'s dtype.
    """
    n = int(np.ceil(y.shape[0] * (float(target_sr) / orig_sr)))
    out = soxr.resample(y, orig_sr, target_sr, quality="soxr_hq")
    out = out[:n] if out.shape[0] >= n else np.pad(out, (0, n - out.shape[0]))
    return np.asarray(out, dtype=y.dtype)


def silence_bounds(y: np.ndarray, top_db: float | None, frame_length: int = 512,
                   hop_length: int = 128) -> tuple[int, int]:
    """Sample range ``[start, stop)`` left after dropping quiet leading and trailing frames.

    Frames quieter than ``top_db`` dB below the peak are dropped (``librosa.effects.trim``).

    Args:
        y: ``(samples,)`` waveform.
        top_db: threshold in dB below the clip's maximum frame RMS; ``None`` keeps everything.
        frame_length: analysis frame in samples.
        hop_length: analysis hop in samples.

    Returns:
        ``(start, stop)`` in samples; ``(0, len(y))`` when ``top_db`` is ``None`` or ``y`` is silent.
    """
    if top_db is None or not np.any(y):
        return 0, int(y.size)
    _, (start, stop) = librosa.effects.trim(y, top_db=top_db, frame_length=frame_length, hop_length=hop_length)
    return (int(start), int(stop)) if stop > start else (0, int(y.size))


def trim_silence(y: np.ndarray, top_db: float | None, frame_length: int = 512, hop_length: int = 128) -> np.ndarray:
    """Drop leading and trailing frames quieter than ``top_db`` dB below the peak (:func:`silence_bounds`).

    Returns:
        ``(samples',)`` float32; ``y`` itself when nothing is cut (silent throughout, or ``top_db``
        is ``None``).
    """
    start, stop = silence_bounds(y, top_db, frame_length, hop_length)
    return y if (start, stop) == (0, y.size) else y[start:stop]


def speech_bounds(y: np.ndarray, cfg: AudioConfig, name: str) -> tuple[int, int]:
    """Where the speech of a decoded clip lies, refusing clips that carry none.

    A clip whose peak is below ``cfg.silence_floor_dbfs`` (dB re full scale) is silent; one whose
    trimmed length (whole length when ``cfg.trim_top_db`` is ``None``) is under
    ``cfg.min_speech_seconds`` is too short. Either would otherwise enter training, or be given an
    emotion, as a constant -100 dB spectrogram.

    Args:
        y: ``(samples,)`` float32 at ``cfg.sample_rate``.
        cfg: the audio settings (trim threshold, silence floor, minimum length).
        name: what the error names (a path or a row).

    Returns:
        ``(start, stop)`` in samples of ``y``, silence trimmed (:func:`silence_bounds`).

    Raises:
        AudioError: silent, or too short (message names ``name`` and the measured value).
    """
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    peak_db = 20 * np.log10(peak) if peak > 0 else -np.inf
    if peak_db < cfg.silence_floor_dbfs:
        raise AudioError(f"{name}: silent (peak {peak_db:.1f} dBFS, below the {cfg.silence_floor_dbfs:g} dBFS floor)")
    start, stop = silence_bounds(y, cfg.trim_top_db)
    seconds = (stop - start) / cfg.sample_rate
    if seconds < cfg.min_speech_seconds:
        raise AudioError(f"{name}: {seconds:.3f} s of sound, under the {cfg.min_speech_seconds:g} s minimum "
                         "(audio.min_speech_seconds)")
    return start, stop


def speech(y: np.ndarray, cfg: AudioConfig, name: str) -> np.ndarray:
    """The clip with its silence trimmed, refused when it carries no speech (:func:`speech_bounds`).

    Returns:
        ``(samples',)`` float32, not yet of fixed length.

    Raises:
        AudioError: silent, or too short.
    """
    start, stop = speech_bounds(y, cfg, name)
    return y[start:stop]


def speech_span(n: int, n_samples: int) -> tuple[int, int]:
    """Where a clip of ``n`` samples lies in its :func:`fix_length` output: ``(start, stop)`` samples.

    A shorter clip sits in the middle of the padding; a longer one is cropped, so it fills all of it.
    """
    if n >= n_samples:
        return 0, n_samples
    left = (n_samples - n) // 2
    return left, left + n


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
    left, stop = speech_span(n, n_samples)  # the one rule for where the clip sits in its padding
    return np.pad(y, (left, n_samples - stop)).astype(np.float32, copy=False)
