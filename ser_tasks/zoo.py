"""The model zoo's catalogue, without Keras: every model input kind and every model, one entry each.

In the spirit of lhotse's registry of feature extractors, a kind of model input is an
:class:`InputSpec` (the store arrays it reads, how a row is stacked from them, its shape, its layout
and so its normalisation axis, the store setting it needs) and a model is a :class:`ModelSpec` (the
input it reads, the ``train.*`` options it takes, its body). Adding an input kind is one entry of
:data:`INPUT_SPECS`; adding a model is its body function and one entry of :data:`MODEL_SPECS`.

The configuration validates against this catalogue (:mod:`ser_tasks.config`), the training feed
stacks rows with it (:func:`ser_tasks.learn.data.assemble`) and the model builder reads it
(:func:`ser_tasks.learn.models.build_model`); only building a model imports Keras.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ser_tasks.errors import InputError

#: RMS below this (-100 dB re full scale) counts as silence in the energy row.
RMS_FLOOR = 1e-5

Arrays = Mapping[str, np.ndarray]
Shapes = Mapping[str, tuple[int, ...]]


@dataclass(frozen=True)
class InputSpec:
    """One kind of model input: how a row is built from the store's arrays.

    Attributes:
        name: the input's name (``log_mel``), also the Keras input layer's name.
        arrays: the store arrays it is built from, in stacking order.
        stack: ``stack(arrays) -> (n, ...)`` float32, from ``n`` rows of each of :attr:`arrays`.
        shape: ``shape(shapes) -> tuple``: the per-row input shape from the arrays' per-row shapes.
        layout: ``spectrogram``: ``(bands, T, 1)``, normalised per band (row) and maskable by
            SpecAugment; ``sequence``: ``(T, channels)``, normalised per channel; ``vector``: no
            frame axis (``(states, features)``), every element its own statistics.
        needs: the ``features.*`` switch a store must have been extracted with (``f0``,
            ``encoder``), or ``None``.
        log_mel_bands: ``log_mel_bands(rows)``: how many leading rows of a ``(rows, T, 1)`` input are
            log-mel bands (what :class:`ser_tasks.learn.models.ClipMeanNorm` centres).
        description: the layout in words, for the docs.
    """

    name: str
    arrays: tuple[str, ...]
    stack: Callable[[Arrays], np.ndarray]
    shape: Callable[[Shapes], tuple[int, ...]]
    layout: Literal["spectrogram", "sequence", "vector"]
    needs: str | None = None
    log_mel_bands: Callable[[int], int] = lambda rows: 0
    description: str = ""

    @property
    def norm_axis(self) -> int:
        """Axis of the batched input ``(batch, ...)`` with its own statistics: the band (1) or the channel (-1)."""
        return 1 if self.layout == "spectrogram" else -1


def _frames(a: Arrays) -> np.ndarray:
    # (n, bands, T) spectrograms and (n, T) curves -> (n, T, channels)
    parts = [a[k].transpose(0, 2, 1) if a[k].ndim == 3 else a[k][..., np.newaxis] for k in FRAME_ARRAYS]
    return np.concatenate(parts, axis=-1).astype(np.float32)


def _prosody(a: Arrays) -> np.ndarray:
    # (n, n_mels, T) + two (n, T) rows -> (n, n_mels + 2, T, 1): F0 in octaves, energy in dB
    energy_db = 20.0 * np.log10(np.maximum(a["rms"], RMS_FLOOR))
    rows = np.concatenate([a["log_mel"], a["f0"][:, np.newaxis], energy_db[:, np.newaxis]], axis=1)
    return rows[..., np.newaxis].astype(np.float32)


#: The frame-level arrays of ``frames``, in channel order.
FRAME_ARRAYS = ("log_mel", "mfcc", "zcr", "rms")
#: The arrays of ``log_mel_prosody``, in row order.
PROSODY_ARRAYS = ("log_mel", "f0", "rms")

#: Every model input kind, by name.
INPUT_SPECS: dict[str, InputSpec] = {s.name: s for s in (
    InputSpec("log_mel", ("log_mel",), lambda a: a["log_mel"][..., np.newaxis].astype(np.float32),
              lambda s: (*s["log_mel"], 1), "spectrogram", log_mel_bands=lambda rows: rows,
              description="(n_mels, T, 1): the log-mel spectrogram"),
    InputSpec("zcr_rms", ("zcr", "rms"), lambda a: np.stack([a["zcr"], a["rms"]], axis=-1).astype(np.float32),
              lambda s: (s["zcr"][0], 2), "sequence",
              description="(T, 2): ZCR and RMS as the two channels of one frame sequence"),
    InputSpec("mfcc", ("mfcc",), lambda a: a["mfcc"][..., np.newaxis].astype(np.float32),
              lambda s: (*s["mfcc"], 1), "spectrogram", description="(n_mfcc, T, 1): the MFCCs"),
    InputSpec("frames", FRAME_ARRAYS, _frames, lambda s: (s["zcr"][0], s["log_mel"][0] + s["mfcc"][0] + 2),
              "sequence", description="(T, n_mels + n_mfcc + 2): every frame's log-mel bands, MFCCs, ZCR and RMS"),
    InputSpec("log_mel_prosody", PROSODY_ARRAYS, _prosody, lambda s: (s["log_mel"][0] + 2, s["log_mel"][1], 1),
              "spectrogram", needs="f0", log_mel_bands=lambda rows: rows - 2,
              description="(n_mels + 2, T, 1): the log-mel bands, then F0 (octaves) and RMS energy (dB) as two rows"),
    InputSpec("encoder_stats", ("encoder",), lambda a: a["encoder"].astype(np.float32),
              lambda s: tuple(s["encoder"]), "vector", needs="encoder",
              description="(layers + 1, 2 * d_model): a pretrained encoder's hidden states pooled over the clip"),
)}


def input_spec(name: str) -> InputSpec:
    """The spec of a model input kind.

    Raises:
        InputError: ``name`` is not one of :data:`INPUT_SPECS`.
    """
    try:
        return INPUT_SPECS[name]
    except KeyError:
        raise InputError(f"unknown model input {name!r}; choose one of {', '.join(INPUT_SPECS)}") from None


#: The ``train.*`` options of the time-convolution models: convolution width, dropout rate, pooling
#: over time, frame averaging, per-clip band centring.
TDNN_OPTIONS = frozenset({"width", "dropout", "pooling", "frame_pool", "clip_norm"})


@dataclass(frozen=True)
class ModelSpec:
    """One model of the zoo.

    Attributes:
        name: the model's name (``train.model``), also the Keras model's name.
        input: the :class:`InputSpec` name it reads.
        body: ``"module:function"``, the function that builds the network from the normalised input
            (``body(x, n_classes, **options) -> probabilities``), imported only when a model is built.
        options: the ``train.*`` settings it takes besides the common ones; any other model refuses them.
    """

    name: str
    input: str
    body: str
    options: frozenset[str] = frozenset()

    def build_body(self) -> Callable:
        """The body function (imports its module, and so Keras)."""
        module, _, function = self.body.partition(":")
        return getattr(importlib.import_module(module), function)


_M = "ser_tasks.learn.models:"
#: Every model, by name; :mod:`ser_tasks.learn.models` documents each body and its source.
MODEL_SPECS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("compact_cnn", "log_mel", _M + "compact_cnn"),
    ModelSpec("tdnn", "log_mel", _M + "tdnn", TDNN_OPTIONS),
    ModelSpec("notebook_cnn2d", "log_mel", _M + "notebook_cnn2d"),
    ModelSpec("notebook_cnn1d", "zcr_rms", _M + "notebook_cnn1d"),
    ModelSpec("notebook_deep_cnn1d", "frames", _M + "notebook_deep_cnn1d"),
    ModelSpec("utterance_mlp", "frames", _M + "utterance_mlp"),
    ModelSpec("tdnn_prosody", "log_mel_prosody", _M + "tdnn", TDNN_OPTIONS),
    ModelSpec("layer_weighted", "encoder_stats", _M + "layer_weighted"),
    ModelSpec("layer_concat", "encoder_stats", _M + "layer_concat"),
    ModelSpec("linear_probe", "encoder_stats", _M + "linear_probe"),
)}


def model_spec(name: str) -> ModelSpec:
    """The spec of a zoo model.

    Raises:
        InputError: ``name`` is not one of :data:`MODEL_SPECS`.
    """
    try:
        return MODEL_SPECS[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}; choose one of {', '.join(MODEL_SPECS)}") from None


def models_taking(option: str) -> tuple[str, ...]:
    """The models that take a ``train.*`` option, in zoo order."""
    return tuple(n for n, s in MODEL_SPECS.items() if option in s.options)


#: Model name -> the input it reads.
MODEL_INPUTS = {n: s.input for n, s in MODEL_SPECS.items()}
#: Models whose store must be extracted with ``features.f0`` / ``features.encoder``.
F0_MODELS = tuple(n for n, s in MODEL_SPECS.items() if INPUT_SPECS[s.input].needs == "f0")
ENCODER_MODELS = tuple(n for n, s in MODEL_SPECS.items() if INPUT_SPECS[s.input].needs == "encoder")
#: Models that take the time-convolution options (``train.width`` and the rest of :data:`TDNN_OPTIONS`).
WIDE_MODELS = models_taking("width")
#: Input kinds: all, those laid out as maskable spectrograms, those with no frame axis.
INPUTS = tuple(INPUT_SPECS)
SPECTROGRAMS = tuple(n for n, s in INPUT_SPECS.items() if s.layout == "spectrogram")
PER_ELEMENT = tuple(n for n, s in INPUT_SPECS.items() if s.layout == "vector")


def norm_axis(input_name: str) -> int:
    """Axis of the batched input that keeps its own statistics (:attr:`InputSpec.norm_axis`)."""
    return input_spec(input_name).norm_axis


def log_mel_rows(input_name: str, rows: int) -> int:
    """How many leading rows of a ``(rows, T, 1)`` input are log-mel bands (0 for inputs without them)."""
    return input_spec(input_name).log_mel_bands(rows)


def arrays_for(input_name: str) -> tuple[str, ...]:
    """The stored features a model input is built from.

    Raises:
        InputError: ``input_name`` is not one of :data:`INPUT_SPECS`.
    """
    return input_spec(input_name).arrays
