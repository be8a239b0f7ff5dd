"""Training and evaluation on a feature-store group, streaming from Zarr.

:func:`fit` trains a zoo model on the training rows (every augmented variant), selects the epoch
by validation UA (speakers never seen in training), and saves the best model with its
normalisation statistics. :func:`score_split` scores the saved model on the test speakers.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import keras
import numpy as np

from ser_tasks.config import TrainConfig
from ser_tasks.errors import InputError
from ser_tasks.learn import metrics
from ser_tasks.learn.data import SpeakerNorm, ZarrSequence, input_shape, iter_chunks, resident_tf_dataset
from ser_tasks.learn.models import (
    MODEL_INPUTS,
    Normalizer,
    SpecAugment,
    build_model,
    norm_axis,
)
from ser_tasks.store.zarr_store import StoreView


def accelerator() -> str:
    """``"GPU"`` when the Keras backend sees one (TensorFlow, JAX or PyTorch), else ``"CPU"``."""
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
        if backend == "jax":
            import jax

            return "GPU" if any(d.platform == "gpu" for d in jax.devices()) else "CPU"
        if backend == "torch":
            import torch

            return "GPU" if torch.cuda.is_available() else "CPU"
    except (ImportError, RuntimeError):
        pass
    return "CPU"


def gpu_hardware() -> bool:
    """Whether this machine has an NVIDIA GPU, whatever the Keras backend sees (the driver's device list)."""
    import os

    return os.path.isdir("/proc/driver/nvidia/gpus") and bool(os.listdir("/proc/driver/nvidia/gpus"))


def check_device(log=None) -> str:
    """:func:`accelerator`, warning when the machine has a GPU that the Keras backend does not see.

    Args:
        log: a logger (``logging.getLogger(__name__)`` when ``None``).

    Returns:
        ``"GPU"`` or ``"CPU"``.
    """
    import logging

    device = accelerator()
    if device == "CPU" and gpu_hardware():
        (log or logging.getLogger(__name__)).warning(
            "this machine has an NVIDIA GPU, but the Keras backend (%s) sees none: training runs on the CPU. "
            "Install the gpu extra and set KERAS_BACKEND=jax (docs/scaling-out.md, 'Training on a GPU')",
            keras.backend.backend())
    return device


def fit_normalizer(view: StoreView, indices: np.ndarray, input_name: str,
                   speaker_norm: SpeakerNorm | None = None) -> Normalizer:
    """Mean and variance per band over the given (training) rows, one chunk at a time.

    With ``speaker_norm`` the statistics are of the speaker- (or corpus-) normalised rows (the model's input then).

    Raises:
        InputError: no rows, or non-finite values in them.
    """
    if indices.size == 0:
        raise InputError("cannot fit normalisation statistics on zero training rows")
    axis = norm_axis(input_name)
    total = sq = None
    count = 0
    for x in iter_chunks(view, indices, input_name, speaker_norm):
        x = x.astype(np.float64)
        if not np.isfinite(x).all():
            raise InputError("non-finite features in the training rows")
        x = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
        total = x.sum(0) if total is None else total + x.sum(0)
        sq = (x**2).sum(0) if sq is None else sq + (x**2).sum(0)
        count += x.shape[0]
    mean = total / count
    variance = np.maximum(sq / count - mean**2, 1e-12)
    by = None if speaker_norm is None else speaker_norm.by
    return Normalizer(input_name, mean, variance, int(indices.size), by == "speaker", by == "corpus")


def training_loss(n_classes: int, smoothing: float, soft_labels: bool) -> keras.losses.Loss | str:
    """Cross-entropy for the labels the training sequence serves, with label smoothing.

    Label smoothing (Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
    CVPR 2016) trains on ``(1 - smoothing) * onehot + smoothing / n_classes``. Keras smooths only
    the dense cross-entropy, so integer labels are one-hot encoded first.

    Args:
        n_classes: width of the softmax output.
        smoothing: in ``[0, 1)``; 0 is the plain cross-entropy.
        soft_labels: the sequence serves float32 ``(batch, n_classes)`` labels (mixup), not int
            ``(batch,)`` class indices.
    """
    # off: Keras' own losses by name, exactly what every model trained before this setting used
    if smoothing == 0:
        return "categorical_crossentropy" if soft_labels else "sparse_categorical_crossentropy"
    if soft_labels:
        return keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
    return SmoothedSparseCrossentropy(n_classes, smoothing)


@keras.saving.register_keras_serializable(package="ser")
class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Label-smoothed cross-entropy on int class indices ``(batch,)`` or ``(batch, 1)`` (see :func:`training_loss`)."""

    def __init__(self, n_classes: int, smoothing: float, name: str = "smoothed_sparse_crossentropy", **kwargs):
        """``n_classes``: width of the softmax output ``(batch, n_classes)``; ``smoothing`` in ``[0, 1)``."""
        super().__init__(name=name, **kwargs)
        self.n_classes, self.smoothing = int(n_classes), float(smoothing)

    def call(self, y_true, y_pred):
        """Per-example loss ``(batch,)`` float32."""
        onehot = keras.ops.one_hot(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32"), self.n_classes)
        return keras.losses.categorical_crossentropy(onehot, y_pred, label_smoothing=self.smoothing)

    def get_config(self) -> dict:
        """What :meth:`__init__` needs to rebuild the loss from a saved model."""
        return {**super().get_config(), "n_classes": self.n_classes, "smoothing": self.smoothing}


def class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Balanced weights ``n / (k * count_c)`` (scikit-learn's "balanced"); absent classes get 0."""
    counts = np.bincount(labels, minlength=n_classes)
    n, k = counts.sum(), int((counts > 0).sum())
    return {c: float(n / (k * counts[c])) if counts[c] else 0.0 for c in range(n_classes)}


def predict(model: keras.Model, seq: ZarrSequence) -> np.ndarray:
    """Class probabilities for every row of ``seq`` in its serving order, ``(n, k)`` float32."""
    return model.predict(seq, verbose=0)  # one trace for full batches (predict_on_batch retraces per shape)


class ValidationUA(keras.callbacks.Callback):
    """Adds ``val_ua`` and ``val_wa`` to each epoch's logs, before the callbacks that monitor them."""

    def __init__(self, seq: ZarrSequence, vocabulary: list[str]):
        """Score ``seq`` (the validation rows) after each epoch; ``vocabulary`` names the classes."""
        super().__init__()
        self.seq, self.vocabulary = seq, vocabulary

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Predict the validation rows and write ``val_ua``/``val_wa`` into ``logs``."""
        pred = predict(self.model, self.seq).argmax(axis=1)
        scores = metrics.scores(self.seq.labels, pred, self.vocabulary)
        if logs is not None:
            logs["val_ua"], logs["val_wa"] = scores["ua"], scores["wa"]


@dataclass
class FitResult:
    """What :func:`fit` leaves behind.

    Attributes:
        model_path: the best epoch's model (``.keras``), normalisation included.
        normalizer_path: ``normalizer.json`` (mean and variance fitted on training rows).
        history: per-epoch metrics (``loss``, ``accuracy``, ``val_loss``, ``val_ua`` ...).
        best_epoch: 1-based epoch that was kept, as Keras counts them (``Epoch 60/60``); with a
            cosine schedule, the last.
        rows: training, validation and test rows used.
        seconds: wall time of ``model.fit``.
        device: ``"GPU"`` or ``"CPU"``.
    """

    model_path: Path
    normalizer_path: Path
    history: dict[str, list[float]]
    best_epoch: int
    rows: dict[str, int]
    seconds: float
    device: str


def fit(view: StoreView, cfg: TrainConfig, out_dir: Path, extra_callbacks: list | None = None,
        verbose: int = 2) -> FitResult:
    """Train ``cfg.model`` on a store group's training speakers and save the best epoch.

    Training uses every variant of the training rows; validation and test count original clips
    only. The model is chosen by validation UA when the store has validation speakers, else by
    training loss (see :func:`train_rows`).

    Raises:
        InputError: unknown model, or no completed training rows.
    """
    idx = {s: view.rows(s, originals_only=s != "train") for s in ("train", "val", "test")}
    if idx["train"].size == 0:
        raise InputError(f"{view.name}: no completed training rows")
    result = train_rows(view, idx["train"], cfg, out_dir, idx["val"], extra_callbacks, verbose)
    result.rows["test"] = int(idx["test"].size)
    return result


def train_rows(view: StoreView, train_idx: np.ndarray, cfg: TrainConfig, out_dir: Path,
               val_idx: np.ndarray | None = None, extra_callbacks: list | None = None,
               verbose: int = 2) -> FitResult:
    """Train ``cfg.model`` on the given store rows and save the model to keep.

    Normalisation statistics are fitted on ``train_idx`` only. With ``cfg.schedule == "plateau"``
    the callbacks are validation UA, EarlyStopping, ReduceLROnPlateau and a best-epoch checkpoint,
    monitoring validation UA when ``val_idx`` has rows, else training loss. With ``"cosine"`` the
    learning rate decays to zero over ``cfg.epochs`` and the last epoch is kept (validation UA is
    still logged when there are validation rows, but selects nothing). ``extra_callbacks`` (e.g.
    :func:`ser_tasks.learn.tracking.epoch_logger`) run last. With ``cfg.ensemble`` > 1 the members train
    one after another and the saved model averages them (:func:`_train_ensemble`). Training rows
    that fit under ``cfg.memory_mib`` are read once and, under TensorFlow, fed as in-graph batches
    (:func:`ser_tasks.learn.data.resident_tf_dataset`, the same batches in the same order). The
    ``spec_*`` masks apply to models that read a spectrogram; others train without them.

    Args:
        view: the store group's read view.
        train_idx: store row indices to train on, ``(n,)`` int.
        cfg: the training settings (model, schedule, epochs, batch size, masks, seed ...).
        out_dir: where ``model.keras`` and ``normalizer.json`` are written (created when missing).
        val_idx: store row indices to validate on, ``(n,)`` int; ``None`` or empty for none.
        extra_callbacks: Keras callbacks run after the others.
        verbose: Keras ``fit`` verbosity (0 silent, 1 progress bar, 2 one line per epoch).

    Returns:
        A :class:`FitResult` whose ``rows`` has ``train`` and ``val`` (``test`` is 0: the caller
        knows its own).

    Raises:
        InputError: unknown model, or no training rows.
    """
    if cfg.model not in MODEL_INPUTS:
        raise InputError(f"unknown model {cfg.model!r}; choose one of {', '.join(MODEL_INPUTS)}")
    if train_idx.size == 0:
        raise InputError("no training rows")
    # the speakers' statistics are read from the store once, however many members train on them
    stats = (SpeakerNorm(view, MODEL_INPUTS[cfg.model], "corpus" if cfg.corpus_norm else "speaker")
             if cfg.speaker_norm or cfg.corpus_norm else None)
    if cfg.ensemble > 1:
        return _train_ensemble(view, train_idx, cfg, out_dir, val_idx, extra_callbacks, verbose, stats)
    return _train_one(view, train_idx, cfg, out_dir, val_idx, extra_callbacks, verbose, stats)


def _train_one(view: StoreView, train_idx: np.ndarray, cfg: TrainConfig, out_dir: Path,
               val_idx: np.ndarray | None, extra_callbacks: list | None, verbose: int,
               speakers: SpeakerNorm | None) -> FitResult:
    """:func:`train_rows` for one model; ``speakers``: the speakers' statistics, read when a setting needs them.

    ``train.speaker_norm`` (``train.corpus_norm``: the corpora's statistics) normalises every row by them.
    """
    val_idx = np.empty(0, dtype=np.int64) if val_idx is None else val_idx
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    vocab = view.vocabulary
    name = MODEL_INPUTS[cfg.model]
    normalizer = fit_normalizer(view, train_idx, name, speakers)
    normalizer_path = out_dir / "normalizer.json"
    normalizer_path.write_text(json.dumps(normalizer.to_dict()))

    weights = class_weights(view.labels()[train_idx], len(vocab)) if cfg.class_weights else None
    clips = view.column("clip_id") if cfg.epoch_rows == "one_per_clip" else None
    # Two prefetch threads hide reading and stacking behind the training step (measured: 16.6
    # instead of 21.8 ms per example on two cores).
    train_seq = ZarrSequence(view, train_idx, name, cfg.batch_size, shuffle=True, seed=cfg.seed,
                             class_weights=weights, one_per_clip=clips, memory_limit_mib=cfg.memory_mib,
                             mixup_alpha=cfg.mixup_alpha, n_classes=len(vocab), speaker_norm=speakers,
                             workers=2, max_queue_size=8)
    # SpecAugment: only a spectrogram model's section has it (SpectrogramTrainConfig), on by default
    masking = SpecAugment(cfg.spec_freq_masks, cfg.spec_freq_width, cfg.spec_time_masks, cfg.spec_time_width,
                          seed=cfg.seed, name="spec_augment") if cfg.spec_augment else None
    model = build_model(cfg.model, input_shape(view, name), len(vocab), normalizer, masking, **cfg.body_options())
    cosine = cfg.schedule == "cosine"
    rate = (keras.optimizers.schedules.CosineDecay(cfg.learning_rate, cfg.epochs * len(train_seq))
            if cosine else cfg.learning_rate)
    loss = training_loss(len(vocab), cfg.label_smoothing, soft_labels=cfg.mixup_alpha > 0)
    model.compile(optimizer=keras.optimizers.Adam(rate), loss=loss, metrics=["accuracy"])
    has_val = val_idx.size > 0
    monitor, mode = ("val_ua", "max") if has_val else ("loss", "min")
    model_path = out_dir / "model.keras"
    callbacks: list = ([ValidationUA(ZarrSequence(view, val_idx, name, 64, speaker_norm=speakers), vocab)]
                       if has_val else [])
    if not cosine:
        callbacks += [
            keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=cfg.early_stopping_patience,
                                          restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode=mode, factor=cfg.lr_factor,
                                              patience=cfg.lr_patience, min_lr=cfg.learning_rate / 100),
            keras.callbacks.ModelCheckpoint(model_path, monitor=monitor, mode=mode, save_best_only=True),
        ]
    callbacks += list(extra_callbacks or [])
    t0 = time.perf_counter()
    data, steps = train_seq, None
    if train_seq.resident and keras.backend.backend() == "tensorflow":
        data, steps = resident_tf_dataset(train_seq, cfg.epochs), len(train_seq)
    # shuffle=False: the sequence shuffles itself, and Keras would otherwise reorder a PyDataset's
    # batches (not a tf.data one's), so the two feeds would differ.
    hist = model.fit(data, epochs=cfg.epochs, steps_per_epoch=steps, shuffle=False, callbacks=callbacks,
                     verbose=verbose)
    seconds = time.perf_counter() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    if cosine:
        best = len(history.get("loss", [0])) - 1
        model.save(model_path)
    else:
        scores = history.get(monitor, [0.0])
        best = int(np.argmax(scores) if mode == "max" else np.argmin(scores))
        if not model_path.exists():  # e.g. every epoch's monitor was NaN: keep the last weights
            model.save(model_path)
    return FitResult(model_path, normalizer_path, history, best + 1,
                     {"train": int(train_idx.size), "val": int(val_idx.size), "test": 0}, seconds, check_device())


class _Prefixed(keras.callbacks.Callback):
    """Hands another callback each epoch's logs with every name prefixed (an ensemble member's metrics)."""

    def __init__(self, inner: keras.callbacks.Callback, prefix: str):
        """Forward to ``inner`` with ``prefix`` before every metric name."""
        super().__init__()
        self.inner, self.prefix = inner, prefix

    def set_model(self, model: keras.Model) -> None:
        """Give ``inner`` the model too."""
        super().set_model(model)
        self.inner.set_model(model)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """``inner.on_epoch_end`` with the prefixed names."""
        self.inner.on_epoch_end(epoch, {self.prefix + k: v for k, v in (logs or {}).items()})


def _train_ensemble(view: StoreView, train_idx: np.ndarray, cfg: TrainConfig, out_dir: Path,
                    val_idx: np.ndarray | None, extra_callbacks: list | None, verbose: int,
                    stats: SpeakerNorm | None) -> FitResult:
    """:func:`train_rows` for ``cfg.ensemble`` > 1: train the members, save the model averaging them.

    Member ``i`` trains with seed ``cfg.seed + i`` in ``out_dir/member<i>``; the saved model feeds
    the input to every member and averages their softmax outputs (an equal-weight probability
    ensemble, e.g. Lakshminarayanan et al. 2017 "deep ensembles"). It carries the zoo model's name,
    so scoring and serving treat it as that model. The history is member 0's under its own names
    and member ``i``'s as ``member<i>_<name>``, as ``extra_callbacks`` see them; ``seconds`` is the
    members' sum.

    Raises:
        InputError: as :func:`train_rows`.
    """
    fits = []
    for i in range(cfg.ensemble):
        member = cfg.model_copy(update={"seed": cfg.seed + i, "ensemble": 1})
        if verbose:  # Keras's "Epoch 1/N" restarts with each member; say which one it is
            print(f"ensemble member {i + 1} of {cfg.ensemble} (seed {member.seed})", flush=True)
        callbacks = [cb if i == 0 else _Prefixed(cb, f"member{i}_") for cb in extra_callbacks or []]
        fits.append(_train_one(view, train_idx, member, out_dir / f"member{i}", val_idx, callbacks, verbose,
                               stats))
    members = [keras.models.load_model(f.model_path, compile=False) for f in fits]
    for i, m in enumerate(members):
        m.name = f"{cfg.model}_member{i}"  # layer names in one model must differ
    inputs = keras.Input(shape=members[0].inputs[0].shape[1:], name=members[0].inputs[0].name)
    outputs = keras.layers.Average(name="emotion")([m(inputs) for m in members])
    model_path, normalizer_path = out_dir / "model.keras", out_dir / "normalizer.json"
    keras.Model(inputs, outputs, name=cfg.model).save(model_path)
    # every member fitted the same statistics on the same rows
    normalizer_path.write_text(fits[0].normalizer_path.read_text())
    history = dict(fits[0].history)
    for i, f in enumerate(fits[1:], start=1):
        history.update({f"member{i}_{k}": v for k, v in f.history.items()})
    return FitResult(model_path, normalizer_path, history, fits[0].best_epoch, fits[0].rows,
                     sum(f.seconds for f in fits), fits[0].device)


def trained_per_speaker(model_path: Path) -> bool:
    """Whether the model saved at ``model_path`` was trained on speaker-normalised input.

    Read from the ``normalizer.json`` saved beside it (:func:`train_rows`); ``False`` without one.
    """
    return trained_groups(model_path) == "speaker"


def trained_groups(model_path: Path) -> Literal["speaker", "corpus"] | None:
    """What the model saved at ``model_path`` normalised its input by: ``"speaker"``, ``"corpus"`` or ``None``.

    Read from the ``normalizer.json`` saved beside it (:func:`train_rows`); ``None`` without one.
    """
    meta = Path(model_path).with_name("normalizer.json")
    if not meta.exists():
        return None
    data = json.loads(meta.read_text())
    return "speaker" if data.get("speaker_norm") else "corpus" if data.get("corpus_norm") else None


def score_rows(view: StoreView, model_path: Path, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true class indices of store rows under a saved zoo model.

    A model trained with ``train.speaker_norm`` (``train.corpus_norm``; :func:`trained_groups`) scores
    rows normalised by their speakers' (corpora's) statistics (:class:`ser_tasks.learn.data.SpeakerNorm`; no
    labels read), as it trained.

    Returns:
        ``(y_true, y_pred)``, each ``(len(rows),)`` int, in the order of sorted ``rows``.

    Raises:
        InputError: no rows, or the model is not a zoo model.
    """
    # Not compiled: scoring only predicts, and a model trained under PyTorch names its optimizer
    # by a module of Keras's torch backend, which would import torch beside TensorFlow (a crash).
    model = keras.models.load_model(model_path, compile=False)
    if model.name not in MODEL_INPUTS:
        raise InputError(f"{model_path}: model {model.name!r} is not one of the zoo's ({', '.join(MODEL_INPUTS)})")
    if rows.size == 0:
        raise InputError("no rows to score")
    name = MODEL_INPUTS[model.name]
    groups = trained_groups(model_path)
    speakers = SpeakerNorm(view, name, groups) if groups else None
    seq = ZarrSequence(view, rows, name, 64, speaker_norm=speakers)
    return seq.labels, predict(model, seq).argmax(axis=1)


def score_split(view: StoreView, model_path: Path, out_dir: Path, split: str = "test") -> dict:
    """Score a saved model on one split's original clips (default: test speakers); draw the confusion matrix.

    Args:
        view: the store group's read view.
        model_path: a zoo model saved by :func:`train_rows` (``.keras``).
        out_dir: where ``confusion_matrix.png`` is written.
        split: ``"train"``, ``"val"`` or ``"test"``; training rows include their augmented copies.

    Returns:
        :func:`ser_tasks.learn.metrics.scores` output plus ``vocabulary``, ``confusion_png`` and, when the
        split holds several corpora, ``per_corpus``: corpus -> its own scores (UA and macro-F1 over
        the classes that corpus has, :func:`ser_tasks.learn.metrics.scores` with ``present_only``).

    Raises:
        InputError: the split has no completed rows, or the model is not a zoo model.
    """
    idx = view.rows(split, originals_only=split != "train")
    if idx.size == 0:
        raise InputError(f"{view.name}: no completed rows in split {split!r}")
    y_true, pred = score_rows(view, model_path, idx)
    return split_scores(view, idx, y_true, pred, out_dir, split)


def split_scores(view: StoreView, idx: np.ndarray, y_true: np.ndarray, pred: np.ndarray, out_dir: Path,
                 split: str = "test") -> dict:
    """:func:`score_split`'s result from predictions already made (by a training job elsewhere).

    Args:
        view: the store group's read view.
        idx: the scored rows, ``(n,)`` int, sorted.
        y_true: their classes, ``(n,)`` int.
        pred: the predicted classes, ``(n,)`` int.
        out_dir: where ``confusion_matrix.png`` is written.
        split: the split's name, for the plot's title.
    """
    vocab = view.vocabulary
    y_true, pred = np.asarray(y_true), np.asarray(pred)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = metrics.scores(y_true, pred, vocab)
    result["vocabulary"] = vocab
    corpus = view.corpus()[np.sort(idx)]  # score_rows returns rows in sorted order
    if len(set(corpus)) > 1:
        result["per_corpus"] = {c: {k: v for k, v in metrics.scores(y_true[corpus == c], pred[corpus == c], vocab,
                                                                    present_only=True).items() if k != "report"}
                                for c in sorted(set(corpus))}
    result["confusion_png"] = str(metrics.plot_confusion(
        np.array(result["confusion"]), vocab, out_dir / "confusion_matrix.png",
        title=f"{split} speakers: UA {result['ua']:.3f}, WA {result['wa']:.3f}, "
              f"macro-F1 {result['macro_f1']:.3f}"))
    return result
