"""The model input kinds: what each is built from, how it is laid out, and along which axis it is normalised.

A model reads one input (``ser_tasks.config.MODEL_INPUTS`` names it); :mod:`ser_tasks.learn.data` builds it
from store arrays and :mod:`ser_tasks.learn.models` normalises and reads it. Both import these facts from
here, so neither imports the other.
"""

from __future__ import annotations

from ser_tasks.errors import InputError

#: Model inputs and how each is assembled from store arrays; shapes per row.
#: ``log_mel``: (n_mels, T, 1), normalised per mel band.  ``zcr_rms``: (T, 2), ZCR and RMS as the
#: two channels of one frame sequence, normalised per channel.  ``mfcc``: (n_mfcc, T, 1).
#: ``frames``: (T, n_mels + n_mfcc + 2), every frame's feature vector (log-mel bands, MFCCs, ZCR,
#: RMS, in that order), normalised per channel.  ``log_mel_prosody``: (n_mels + 2, T, 1), the log-mel
#: bands, then the F0 contour (octaves) and RMS energy in dB as two more rows: pitch and energy
#: contours beside the spectrum (issue 17), normalised per row; the store needs ``features.f0``.
#: ``encoder_stats``: (layers + 1, 2 * d_model), a pretrained encoder's hidden states pooled over
#: the clip (:mod:`ser_tasks.signal.encoder`), normalised per channel; the store needs ``features.encoder``.
INPUTS = ("log_mel", "zcr_rms", "mfcc", "frames", "log_mel_prosody", "encoder_stats")
FRAME_ARRAYS = ("log_mel", "mfcc", "zcr", "rms")
PROSODY_ARRAYS = ("log_mel", "f0", "rms")
#: Inputs with no frame axis: per-speaker statistics are kept per element of the row (each encoder
#: state and channel its own), not pooled along a time axis.
PER_ELEMENT = ("encoder_stats",)
#: Inputs laid out as ``(bands, T, 1)``, which :class:`ser_tasks.learn.models.SpecAugment` can mask.
SPECTROGRAMS = ("log_mel", "mfcc", "log_mel_prosody")


def norm_axis(input_name: str) -> int:
    """Axis of the batched input ``(batch, ...)`` that keeps its own statistics.

    The mel band, MFCC or prosody row index (1) of ``(batch, bands, T, 1)``, or the channel (-1) of
    ``(batch, T, channels)``.
    """
    return 1 if input_name in SPECTROGRAMS else -1


def log_mel_rows(input_name: str, rows: int) -> int:
    """How many leading rows of a ``(rows, T, 1)`` input are log-mel bands.

    Every row of ``log_mel``; all but the last two (F0, energy) of ``log_mel_prosody``; 0 for any other input.
    """
    return {"log_mel": rows, "log_mel_prosody": rows - 2}.get(input_name, 0)


def arrays_for(input_name: str) -> tuple[str, ...]:
    """The stored features a model input is built from (:func:`assemble`'s keys).

    Raises:
        InputError: ``input_name`` is not one of :data:`INPUTS`.
    """
    if input_name == "zcr_rms":
        return ("zcr", "rms")
    if input_name == "frames":
        return FRAME_ARRAYS
    if input_name == "log_mel_prosody":
        return PROSODY_ARRAYS
    if input_name in ("log_mel", "mfcc"):
        return (input_name,)
    if input_name == "encoder_stats":
        return ("encoder",)
    raise InputError(f"unknown model input {input_name!r}; choose one of {', '.join(INPUTS)}")
