"""The model zoo: Keras 3 models chosen by name, each starting with its fitted ``Normalization``.

Written against ``keras`` (not ``tf.keras``) so the same code runs under TensorFlow (GPU when it
sees one), JAX or PyTorch backends.

- ``compact_cnn`` (ours): four VGG-style 3x3 conv blocks (Simonyan & Zisserman 2015) with
  batch norm, on the log-mel, the first strided; each frame's remaining bands and channels
  flattened, then mean and standard deviation over time ("statistics pooling", Snyder et al. 2018,
  x-vectors); about 0.23 M parameters, sized to train on two CPU cores.
- ``tdnn`` (default, ours; the model of ``ser evaluate``'s benchmark): a time-delay network (1D convolutions
  over time with the mel bands as channels, dilated as in Peddinti et al. 2015 and the x-vector
  front end of Snyder et al. 2018) on the log-mel averaged over 4 frames (40 ms), then statistics
  pooling; about 0.24 M parameters and about a quarter of ``compact_cnn``'s time per example.
- ``notebook_cnn2d``: the seed notebooks' 2D CNN on the log-mel (REFERENCE.md): Conv2D 256 5x5 ->
  Conv2D 128 5x5 -> MaxPool 5x5/2 -> [Conv2D 128 5x5 -> MaxPool 5x5/2] x 2 -> Dense 128 -> softmax.
- ``notebook_cnn1d``: the seed notebooks' 1D CNN on ZCR and RMS (REFERENCE.md): Conv1D 64/128/256
  (k3) each with MaxPool 2 -> Dense 256 -> Dropout 0.5 -> softmax. The notebooks concatenated the
  ZCR and RMS vectors end to end; here they are the two channels of one frame sequence, so each
  convolution sees aligned frames.
- ``notebook_deep_cnn1d``: the seed notebooks' deep 1D CNN with batch normalisation (REFERENCE.md):
  5 x [Conv1D 512/512/256/256/128 (k5, same, ReLU) -> BatchNorm -> MaxPool 2] -> Dense 512 ->
  BatchNorm -> softmax, here over time on every frame's feature vector (log-mel, MFCC, ZCR, RMS:
  the ``frames`` input) rather than on the notebooks' concatenated ZCR ‖ RMS ‖ MFCC; about 3.3 M
  parameters at 301 frames.
- ``utterance_mlp``: the seed notebooks' MLP on utterance features (REFERENCE.md: 300 hidden
  units, on features averaged over time): the mean and standard deviation over time of every
  frame feature (212 values at the defaults) -> Dense 300 ReLU -> Dropout 0.3 -> softmax. The
  notebooks' scikit-learn model regularised with an L2 penalty (alpha 0.01); dropout stands in.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from ser_tasks.errors import InputError
from ser_tasks.zoo import (  # noqa: F401 - MODEL_INPUTS, SPECTROGRAMS, WIDE_MODELS, norm_axis re-exported
    MODEL_INPUTS,
    SPECTROGRAMS,
    WIDE_MODELS,
    input_spec,
    log_mel_rows,
    model_spec,
    models_taking,
    norm_axis,
)


@dataclass
class Normalizer:
    """Per-band (or per-channel) mean and variance fitted on training rows.

    Attributes:
        input_name: the model input it applies to.
        mean, variance: ``(bands,)`` float64.
        rows: training rows it was fitted on.
        speaker_norm: fitted on rows normalised per speaker (``train.speaker_norm``), which the
            model's input must then be too.
        corpus_norm: fitted on rows normalised per corpus (``train.corpus_norm``), likewise.
    """

    input_name: str
    mean: np.ndarray
    variance: np.ndarray
    rows: int
    speaker_norm: bool = False
    corpus_norm: bool = False

    def to_dict(self) -> dict:
        """JSON-ready form (saved with the model as ``normalizer.json``)."""
        return {"input": self.input_name, "axis": norm_axis(self.input_name), "rows": self.rows,
                "speaker_norm": self.speaker_norm, "corpus_norm": self.corpus_norm,
                "mean": self.mean.tolist(), "variance": self.variance.tolist()}




def _normalization(normalizer: Normalizer) -> layers.Layer:
    return layers.Normalization(axis=norm_axis(normalizer.input_name),
                                mean=normalizer.mean.astype(np.float32),
                                variance=normalizer.variance.astype(np.float32), name="normalize")


@keras.saving.register_keras_serializable(package="ser")
class StatisticsPooling(layers.Layer):
    """Mean and standard deviation over time, concatenated: ``(batch, T, C)`` -> ``(batch, 2C)``.

    Snyder et al. 2018, "X-vectors: robust DNN embeddings for speaker recognition".
    """

    def call(self, x):
        """``(batch, T, C)`` -> ``(batch, 2C)``: mean then standard deviation per channel."""
        mean = keras.ops.mean(x, axis=1)
        std = keras.ops.sqrt(keras.ops.var(x, axis=1) + 1e-6)
        return keras.ops.concatenate([mean, std], axis=-1)


@keras.saving.register_keras_serializable(package="ser")
class AttentiveStatisticsPooling(layers.Layer):
    """Attention-weighted mean and standard deviation over time: ``(batch, T, C)`` -> ``(batch, 2C)``.

    Okabe et al. 2018, "Attentive statistics pooling for deep speaker embedding" (Interspeech):
    a score per frame ``e_t = v^T tanh(W h_t + b) + k`` (``W``: ``units`` x ``C``), weights
    ``a = softmax_t(e)``, then ``mu = sum_t a_t h_t`` and ``sigma = sqrt(sum_t a_t h_t^2 - mu^2)``.
    Frames that carry the emotion can outweigh silence and neutral stretches, which plain
    :class:`StatisticsPooling` (uniform weights) cannot do.

    Args:
        units: hidden size of the scoring layer (``W``).

    Raises:
        InputError: ``units`` below 1 (at construction); input that is not ``(batch, T, C)``
            with known ``C`` (at build).
    """

    def __init__(self, units: int = 128, **kwargs):
        """Make the two scoring layers (``units`` tanh, then one score per frame)."""
        super().__init__(**kwargs)
        if units < 1:
            raise InputError(f"attentive pooling needs units >= 1, got {units}")
        self.units = int(units)
        self.hidden = layers.Dense(self.units, activation="tanh", name="attention_hidden")
        self.score = layers.Dense(1, name="attention_score")

    def build(self, input_shape):
        """Build the scoring layers for ``(batch, T, C)`` input."""
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise InputError(f"attentive pooling needs (batch, T, C) input, got {input_shape}")
        self.hidden.build(input_shape)
        self.score.build((*input_shape[:-1], self.units))

    def call(self, x):
        """``(batch, T, C)`` -> ``(batch, 2C)``: weighted mean then weighted standard deviation."""
        ops = keras.ops
        weights = ops.softmax(self.score(self.hidden(x)), axis=1)  # (batch, T, 1), sums to 1 over T
        mean = ops.sum(weights * x, axis=1)
        var = ops.sum(weights * ops.square(x), axis=1) - ops.square(mean)
        return ops.concatenate([mean, ops.sqrt(ops.maximum(var, 0.0) + 1e-6)], axis=-1)

    def compute_output_shape(self, input_shape):
        """``(batch, 2C)``."""
        return (input_shape[0], 2 * input_shape[-1])

    def get_config(self) -> dict:
        """Constructor arguments, for saving and loading the model."""
        return {**super().get_config(), "units": self.units}


#: Pooling layers over time of ``tdnn`` / ``tdnn_prosody`` (``train.pooling``).
POOLINGS = {"stats": StatisticsPooling, "attentive": AttentiveStatisticsPooling}


@keras.saving.register_keras_serializable(package="ser")
class ClipMeanNorm(layers.Layer):
    """Per-clip mean normalisation of the log-mel bands: each band minus its mean over the clip's frames.

    The log-mel counterpart of cepstral mean normalisation (Atal 1974; Furui 1981): a clip's average
    spectral envelope holds the voice's timbre and the channel, which :class:`Normalization`'s
    training-set statistics leave in, while the contours the bands draw over time remain. Only
    the first ``bands`` rows are normalised; the rows after them (``log_mel_prosody``'s F0 and
    energy contours) keep the training-set scale, so pitch and level still reach the model.
    The store's zero padding (frames whose log-mel is the same floor in every band) is left out of
    the mean and set to 0 in the normalised bands, so a clip's length does not move its mean.

    Called on ``[raw, x]``: ``raw`` the model input and ``x`` the same after ``Normalization``,
    both ``(batch, rows, T, 1)`` float32; returns ``x``'s shape and dtype. Applied in training and
    prediction alike (``train.clip_norm``).

    Args:
        bands: leading rows that are log-mel bands (>= 1).

    Raises:
        InputError: ``bands`` below 1 (at construction).
    """

    def __init__(self, bands: int, **kwargs):
        """Store how many leading rows are log-mel bands (see the class docstring)."""
        super().__init__(**kwargs)
        if bands < 1:
            raise InputError(f"clip mean normalisation needs bands >= 1, got {bands}")
        self.bands = int(bands)

    def call(self, inputs):
        """``[raw, x]`` -> ``x`` with its first ``bands`` rows centred per clip over live frames."""
        raw, x = inputs
        raw_bands = raw[:, : self.bands, :, 0]
        # padding frames hold one floor value in every band; a spoken frame never does
        live = keras.ops.cast(keras.ops.max(raw_bands, axis=1) > keras.ops.min(raw_bands, axis=1), x.dtype)
        live = live[:, None, :, None]  # (batch, 1, T, 1)
        count = keras.ops.maximum(keras.ops.sum(live, axis=2, keepdims=True), 1.0)
        bands = x[:, : self.bands]
        mean = keras.ops.sum(bands * live, axis=2, keepdims=True) / count
        return keras.ops.concatenate([(bands - mean) * live, x[:, self.bands:]], axis=1)

    def compute_output_shape(self, input_shape):
        """The normalised input's shape, unchanged."""
        return input_shape[1]

    def get_config(self) -> dict:
        """Keras config (for saving)."""
        return {**super().get_config(), "bands": self.bands}


@keras.saving.register_keras_serializable(package="ser")
class SpecAugment(layers.Layer):
    """Frequency and time masking of a normalised spectrogram, in training only (no time warping).

    Park et al. 2019, "SpecAugment: a simple data augmentation method for automatic speech recognition".

    On ``(batch, bands, T, 1)`` float32 input each example gets ``freq_masks`` bands of
    ``0 .. freq_width`` adjacent mel bands (or MFCC coefficients) and ``time_masks`` spans of
    ``0 .. time_width`` frames set to zero, each width and start drawn uniformly; masks may
    overlap. Placed after the ``Normalization`` layer, zero is the training mean of each band.
    Outside training the input passes unchanged, so a saved model predicts as without it.

    Args:
        freq_masks, time_masks: masks per example (0: none of that kind).
        freq_width: widest frequency mask, in bands.
        time_width: widest time mask, in frames (10 ms each at the default hop).
        seed: seed of the layer's own random stream.

    Raises:
        InputError: a negative count or width (at construction); input that is not
            ``(batch, bands, T, 1)`` (at build).
    """

    def __init__(self, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2, time_width: int = 25,
                 seed: int | None = None, **kwargs):
        """Check and store the mask counts and widths (see the class docstring); make the seed generator."""
        super().__init__(**kwargs)
        if min(freq_masks, freq_width, time_masks, time_width) < 0:
            raise InputError("SpecAugment mask counts and widths must be non-negative")
        self.freq_masks, self.freq_width = int(freq_masks), int(freq_width)
        self.time_masks, self.time_width = int(time_masks), int(time_width)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        """Check the input is ``(batch, bands, T, 1)`` with known bands and frames; record their sizes."""
        if len(input_shape) != 4 or input_shape[-1] != 1 or None in input_shape[1:3]:
            raise InputError(f"SpecAugment needs (batch, bands, T, 1) input, got {input_shape}")
        self.bands, self.frames = int(input_shape[1]), int(input_shape[2])

    def _keep(self, batch, size: int, count: int, width: int):
        """``(batch, size)`` float32: 0 inside any of ``count`` random spans of ``0 .. width``, else 1."""
        ops = keras.ops
        keep = ops.ones((batch, size), dtype="float32")
        position = ops.arange(size, dtype="float32")[None, :]
        for _ in range(count):
            w = ops.floor(keras.random.uniform((batch, 1), 0.0, min(width, size) + 1.0, seed=self.seed_generator))
            start = ops.floor(keras.random.uniform((batch, 1), seed=self.seed_generator) * (size - w + 1.0))
            inside = ops.logical_and(position >= start, position < start + w)
            keep = keep * (1.0 - ops.cast(inside, "float32"))
        return keep

    def call(self, x, training=None):
        """``(batch, bands, T, 1)`` -> the same shape, masked when ``training``."""
        if not training or (self.freq_masks == 0 and self.time_masks == 0):
            return x
        batch = keras.ops.shape(x)[0]
        keep_f = self._keep(batch, self.bands, self.freq_masks, self.freq_width)  # (batch, bands)
        keep_t = self._keep(batch, self.frames, self.time_masks, self.time_width)  # (batch, T)
        return x * keras.ops.cast(keep_f[:, :, None, None] * keep_t[:, None, :, None], x.dtype)

    def compute_output_shape(self, input_shape):
        """Unchanged: ``(batch, bands, T, 1)``."""
        return input_shape

    def get_config(self) -> dict:
        """Constructor arguments, for saving and loading the model."""
        return {**super().get_config(), "freq_masks": self.freq_masks, "freq_width": self.freq_width,
                "time_masks": self.time_masks, "time_width": self.time_width, "seed": self.seed}


def compact_cnn(x, n_classes: int):
    """Body of ``compact_cnn`` on ``(batch, n_mels, T, 1)``; returns class probabilities.

    The first block convolves with stride 2 instead of pooling after a full-resolution
    convolution: same receptive field growth, about half the training time per example on CPU.
    After the blocks each frame keeps its remaining frequency bands (flattened with the channels)
    rather than averaging them: that model under-fitted less, and so did dropping spatial dropout
    (docs/decisions.md, D21).
    """
    for i, filters in enumerate((16, 32, 64, 128)):
        x = layers.Conv2D(filters, 3, strides=2 if i == 0 else 1, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        if i > 0:
            x = layers.MaxPooling2D(2, padding="same")(x)
    _, bands, _, channels = x.shape
    x = layers.Permute((2, 1, 3))(x)  # (batch, T', F', C)
    x = layers.Reshape((-1, bands * channels), name="frames")(x)  # (batch, T', F'*C)
    x = StatisticsPooling(name="stats_pool")(x)  # (batch, 2 F'*C)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    return layers.Dense(n_classes, activation="softmax", name="emotion")(x)


def tdnn(x, n_classes: int, width: int = 128, pool: int = 4, dropout: float = 0.3, pooling: str = "stats"):
    """Body of ``tdnn`` on ``(batch, n_mels, T, 1)``; returns class probabilities.

    Frames are averaged ``pool`` at a time first (4 at the 10 ms hop: 40 ms): emotion lives in prosody
    and spectral envelope that change more slowly, and a quarter of the frames buys four times
    the epochs in the same time, which raised actor-disjoint UA on RAVDESS by about 20 points
    (docs/decisions.md, D21). Layers: Conv1D ``width``
    k5 -> ``width`` k3 d2 -> ``width`` k3 d3 -> ``2 width`` k1, each with batch norm and ReLU;
    mean and standard deviation over time (``pooling``: a key of :data:`POOLINGS`, uniform or
    attention weights); Dropout ``dropout``; Dense 128; Dropout ``dropout``; softmax.

    ``tdnn_prosody`` is the same body on ``log_mel_prosody``: two more input rows (F0 and energy
    contours) become two more channels of the first convolution.
    """
    x = layers.Reshape((x.shape[1], x.shape[2]))(x)  # (batch, n_mels, T)
    x = layers.Permute((2, 1))(x)  # (batch, T, n_mels): bands become channels
    x = layers.AveragePooling1D(pool, padding="same")(x)  # (batch, ceil(T / pool), n_mels)
    for filters, kernel, dilation in ((width, 5, 1), (width, 3, 2), (width, 3, 3), (2 * width, 1, 1)):
        x = layers.Conv1D(filters, kernel, dilation_rate=dilation, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = POOLINGS[pooling](name="stats_pool")(x)  # (batch, 4 width)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return layers.Dense(n_classes, activation="softmax", name="emotion")(x)


def notebook_cnn2d(x, n_classes: int):
    """Body of the seed notebooks' 2D CNN (REFERENCE.md, about 6.6 M parameters at 128 x 151)."""
    x = layers.Conv2D(256, 5, padding="same", activation="relu")(x)
    x = layers.Conv2D(128, 5, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(5, strides=2, padding="same")(x)
    for _ in range(2):
        x = layers.Conv2D(128, 5, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(5, strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    return layers.Dense(n_classes, activation="softmax", name="emotion")(x)


def notebook_cnn1d(x, n_classes: int):
    """Body of the seed notebooks' 1D CNN on ZCR+RMS (REFERENCE.md)."""
    for filters in (64, 128, 256):
        x = layers.Conv1D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling1D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    return layers.Dense(n_classes, activation="softmax", name="emotion")(x)


def notebook_deep_cnn1d(x, n_classes: int):
    """Body of the seed notebooks' deep 1D CNN with batch normalisation (REFERENCE.md), on ``(batch, T, C)`` frames."""
    for filters in (512, 512, 256, 256, 128):
        x = layers.Conv1D(filters, 5, padding="same", activation="relu")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling1D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512)(x)
    x = layers.BatchNormalization()(x)
    return layers.Dense(n_classes, activation="softmax", name="emotion")(x)


def utterance_mlp(x, n_classes: int):
    """The seed notebooks' MLP on utterance features (REFERENCE.md): statistics over time -> Dense 300 -> softmax.

    ``(batch, T, C)`` frames -> ``(batch, 2C)`` mean and standard deviation over time
    (:class:`StatisticsPooling`) -> Dense 300 ReLU -> Dropout 0.3 -> ``(batch, n_classes)``.
    """
    x = StatisticsPooling(name="stats_pool")(x)
    x = layers.Dense(300, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    return layers.Dense(n_classes, activation="softmax", name="emotion")(x)


@keras.saving.register_keras_serializable(package="ser")
class LayerWeightedSum(layers.Layer):
    """Learned softmax weights over an encoder's hidden states: ``(batch, states, C)`` -> ``(batch, C)``.

    SUPERB's weighted sum of layers (Yang et al., "SUPERB: Speech processing Universal PERformance
    Benchmark", Interspeech 2021; s3prl's ``Featurizer``), as EmoBox's probes use it (Ma et al.
    2024): each state is first layer-normalised over its channels without parameters (s3prl's
    ``normalize``), so no layer dominates by scale, then ``sum_l softmax(w)_l h_l`` with ``w``
    starting at zero (equal weights).

    Attributes:
        weights: the ``(states,)`` logits; :meth:`layer_weights` gives their softmax.
    """

    def build(self, input_shape):
        """One logit per state, for ``(batch, states, C)`` input."""
        if len(input_shape) != 3 or input_shape[1] is None:
            raise InputError(f"layer weighting needs (batch, states, C) input, got {input_shape}")
        self.logits = self.add_weight(shape=(input_shape[1],), initializer="zeros", name="layer_logits")

    @staticmethod
    def normalise(x):
        """Each state over its channels to zero mean and unit variance, no parameters: same shape as ``x``."""
        ops = keras.ops
        mean = ops.mean(x, axis=-1, keepdims=True)
        return (x - mean) / ops.sqrt(ops.var(x, axis=-1, keepdims=True) + 1e-5)

    def call(self, x):
        """``(batch, states, C)`` -> ``(batch, C)``."""
        w = keras.ops.softmax(self.logits)
        return keras.ops.sum(self.normalise(x) * w[None, :, None], axis=1)

    def layer_weights(self) -> np.ndarray:
        """The softmax weights, ``(states,)`` float32 summing to 1."""
        return np.asarray(keras.ops.softmax(self.logits))

    def compute_output_shape(self, input_shape):
        """``(batch, C)``."""
        return (input_shape[0], input_shape[2])


def layer_weighted(x, n_classes: int, width: int = 256, dropout: float = 0.3):
    """Encoder probe: weighted layers -> MLP -> softmax (SUPERB / EmoBox downstream head).

    ``(batch, states, 2 d)`` pooled encoder states (:data:`ser_tasks.learn.data.INPUTS` ``encoder_stats``)
    -> :class:`LayerWeightedSum` -> Dropout -> Dense ``width`` ReLU -> Dropout -> ``(batch, n_classes)``.
    """
    x = LayerWeightedSum(name="layer_weights")(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(width, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return layers.Dense(n_classes, activation="softmax", name="emotion")(x)


def layer_concat(x, n_classes: int, width: int = 256, dropout: float = 0.3):
    """Encoder probe on every state at once: normalised states concatenated -> MLP -> softmax.

    ``(batch, states, 2 d)`` -> each state layer-normalised over its channels (no parameters, as
    :class:`LayerWeightedSum` does) -> flattened ``(batch, states * 2 d)`` -> Dropout -> Dense
    ``width`` ReLU -> Dropout -> ``(batch, n_classes)``. The concatenation the linear probes of
    issue 42 read (all layers beat any single one there), with a hidden layer.
    """
    x = LayerWeightedSum.normalise(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(width, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return layers.Dense(n_classes, activation="softmax", name="emotion")(x)


def linear_probe(x, n_classes: int, dropout: float = 0.5):
    """A linear probe on every state at once: normalised states concatenated -> Dropout -> softmax.

    ``(batch, states, 2 d)`` -> each state layer-normalised over its channels (as
    :class:`LayerWeightedSum` does) -> flattened -> Dropout ``dropout`` -> Dense ``n_classes``
    softmax: the logistic regression on all layers' statistics that issue 42's probes measured,
    with dropout on its inputs as the regulariser.
    """
    x = LayerWeightedSum.normalise(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout)(x)
    return layers.Dense(n_classes, activation="softmax", name="emotion")(x)


#: :func:`build_model`'s options: the ``train.*`` setting each is, what it takes (for the error),
#: and which values are valid. A model takes those its spec lists (:attr:`ser_tasks.zoo.ModelSpec.options`).
_OPTIONS = {"width": ("width", "take a width (>= 1)", lambda v: v >= 1),
            "dropout": ("dropout", "take a dropout rate", lambda v: True),  # its range has its own message
            "pooling": ("pooling", f"take one of {', '.join(POOLINGS)}", lambda v: v in POOLINGS),
            "pool": ("frame_pool", "average frames (pool >= 1)", lambda v: v >= 1)}


def build_model(name: str, input_shape: tuple[int, ...], n_classes: int, normalizer: Normalizer,
                spec_augment: SpecAugment | None = None, width: int | None = None,
                dropout: float | None = None, pooling: str | None = None, pool: int | None = None,
                clip_norm: bool = False) -> keras.Model:
    """Build a zoo model: input -> fitted ``Normalization`` -> [``ClipMeanNorm``] -> [``SpecAugment``] -> body.

    The body ends in a softmax over the classes.

    Args:
        name: a key of :data:`ser_tasks.zoo.MODEL_SPECS`.
        input_shape: per-row input shape, e.g. ``(64, 301, 1)`` for log-mel.
        n_classes: output classes (the store's vocabulary size).
        normalizer: statistics fitted on training rows, for this model's input.
        spec_augment: masking applied in training after normalisation (spectrogram inputs only).
        width: convolution channels of a model in :data:`WIDE_MODELS` (``tdnn``: 128 when
            ``None``); ``None`` for every other model.
        dropout: rate of the two dropout layers of a model in :data:`WIDE_MODELS` (0.3 when
            ``None``), in ``[0, 1)``; ``None`` for every other model.
        pooling: pooling over time of a model in :data:`WIDE_MODELS`, a key of :data:`POOLINGS`
            (``"stats"`` when ``None``); ``None`` for every other model.
        pool: input frames a model in :data:`WIDE_MODELS` averages into one before its first
            convolution (4 when ``None``: 40 ms at the 10 ms hop), >= 1; ``None`` for every other model.
        clip_norm: centre the log-mel bands per clip (:class:`ClipMeanNorm`) after normalisation;
            a model in :data:`WIDE_MODELS` only (``tdnn_prosody``'s F0 and energy rows are left as
            they are).

    Returns:
        An uncompiled ``keras.Model`` whose output is ``(batch, n_classes)`` float32 probabilities.

    Raises:
        InputError: unknown name, a normalizer fitted for another input, ``spec_augment`` on a
            model whose input is not a spectrogram (``log_mel``, ``mfcc``), or ``width`` for a
            model without one or below 1, or ``dropout`` for a model without it or outside ``[0, 1)``,
            or ``pooling`` for a model without it or not a key of :data:`POOLINGS`, or ``pool`` for
            a model without it or below 1, or ``clip_norm`` for a model not in :data:`WIDE_MODELS`.
    """
    spec = model_spec(name)  # raises for an unknown name
    if normalizer.input_name != spec.input:
        raise InputError(f"{name} reads {spec.input}, normalizer is for {normalizer.input_name}")
    if spec_augment is not None and input_spec(spec.input).layout != "spectrogram":
        raise InputError(f"SpecAugment masks spectrograms; {name} reads {spec.input}")
    options = {k: v for k, v in (("width", width), ("dropout", dropout), ("pooling", pooling), ("pool", pool))
               if v is not None}
    for key, value in options.items():
        setting, takes, valid = _OPTIONS[key]
        if setting not in spec.options or not valid(value):
            raise InputError(f"{key} {value!r}: only {', '.join(models_taking(setting))} {takes}, not {name}")
    if dropout is not None and not 0 <= dropout < 1:
        raise InputError(f"dropout {dropout}: a dropout rate in [0, 1) is needed")
    if clip_norm and "clip_norm" not in spec.options:
        raise InputError(f"clip_norm: only {', '.join(models_taking('clip_norm'))} centre their log-mel bands "
                         f"per clip, not {name}")
    inputs = keras.Input(shape=input_shape, name=spec.input)
    x = _normalization(normalizer)(inputs)
    if clip_norm:
        x = ClipMeanNorm(log_mel_rows(spec.input, input_shape[0]), name="clip_mean_norm")([inputs, x])
    if spec_augment is not None:
        x = spec_augment(x)
    body = spec.build_body()(x, n_classes, **options)
    return keras.Model(inputs, body, name=name)
