"""Training input from the Zarr store: streamed (at most two row chunks in memory) or held in RAM.

A :class:`ZarrSequence` (a ``keras.utils.PyDataset``, so it needs no ``tf.data`` and runs under
any Keras backend) serves mini-batches of one model input for a set of store rows. It is three
parts: a :class:`RowReader` (reads and caches chunks, normalises per speaker or corpus, holds the
rows in RAM when they fit), an :class:`EpochSampler` (which rows an epoch serves, in which order:
chunk order and rows within chunks shuffled, so reads stay chunk-sequential while batches stay
mixed) and an optional :class:`Mixup` (a batch transform). :func:`iter_chunks` reads given rows
chunk by chunk (the normalisation statistics, :func:`ser_tasks.learn.training.fit_normalizer`, are
computed from it). When the decoded input of its rows fits under ``memory_limit_mib``, the reader
reads them once and every epoch is served from RAM instead; under TensorFlow, :func:`resident_tf_dataset`
turns such a sequence into in-graph batches, the same ones in the same order, three times faster.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Literal

import keras
import numpy as np

from ser_tasks.errors import InputError
from ser_tasks.store.zarr_store import StoreView
from ser_tasks.zoo import (  # noqa: F401 - FRAME_ARRAYS, INPUTS, RMS_FLOOR, log_mel_rows re-exported
    FRAME_ARRAYS,
    INPUTS,
    PER_ELEMENT,
    RMS_FLOOR,
    arrays_for,
    input_spec,
    log_mel_rows,
    norm_axis,
)

#: Smallest variance per-speaker normalisation divides by the root of (a constant row gives 0, not NaN).
VAR_FLOOR = 1e-6




def assemble(input_name: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Stack raw store arrays of ``n`` rows into model input ``(n, ...)`` float32 (``InputSpec.stack``).

    Raises:
        InputError: ``input_name`` is not a model input kind of :data:`ser_tasks.zoo.INPUT_SPECS`.
    """
    return input_spec(input_name).stack(arrays)


def input_shape(view: StoreView, input_name: str) -> tuple[int, ...]:
    """Per-row model input shape of a store group (:attr:`ser_tasks.zoo.InputSpec.shape`).

    Raises:
        InputError: an unknown input kind, or a store extracted without an array the input reads
            (``f0`` without ``features.f0``, ``encoder`` without ``features.encoder``; the message names the store).
    """
    spec = input_spec(input_name)
    return spec.shape({name: tuple(view.features(name).shape[1:]) for name in spec.arrays})


def read_chunk(view: StoreView, input_name: str, c: int) -> np.ndarray:
    """Model input of every row of store chunk ``c``: ``(chunk rows, ...)`` float32."""
    sl = slice(c * view.chunk_rows, (c + 1) * view.chunk_rows)
    return assemble(input_name, {n: view.features(n)[sl] for n in arrays_for(input_name)})


def _by_chunk(indices: np.ndarray, chunk: int) -> OrderedDict[int, np.ndarray]:
    out: OrderedDict[int, np.ndarray] = OrderedDict()
    for c in np.unique(indices // chunk):
        out[int(c)] = indices[indices // chunk == c]
    return out


def iter_chunks(view: StoreView, indices: np.ndarray, input_name: str,
                speaker_norm: SpeakerNorm | None = None) -> Iterator[np.ndarray]:
    """Model input of the given rows, read one store chunk at a time.

    Chunks come in ascending order, and the rows of a chunk in their order in ``indices``.

    Args:
        view: the store group's read view.
        indices: store row indices, ``(n,)`` int.
        input_name: one of :data:`INPUTS`.
        speaker_norm: when given, each row is normalised by its speaker's statistics.

    Yields:
        ``(rows of one chunk, ...)`` float32, as :func:`assemble` builds it.
    """
    arrays_for(input_name)  # an unknown input fails before any read
    chunk = view.chunk_rows
    for c, rows in _by_chunk(indices, chunk).items():
        x = read_chunk(view, input_name, c)[rows - c * chunk]
        yield x if speaker_norm is None else speaker_norm.apply(x, rows)


def normalise_groups(x: np.ndarray, groups: np.ndarray, input_name: str) -> np.ndarray:
    """Each group's rows minus the group's mean, over its standard deviation, per input row or channel.

    What :class:`SpeakerNorm` does with a speaker's stored clips, done on inputs in memory: the
    clips of one voice given together at prediction time (:func:`ser_tasks.serve.predict.predict_frame`).

    Args:
        x: model input ``(n, ...)`` float, as :func:`assemble` builds it.
        groups: ``(n,)`` group key of every row (a speaker).
        input_name: one of :data:`INPUTS` (the statistics run along its :func:`ser_tasks.zoo.norm_axis`).

    Returns:
        ``(n, ...)`` float32; each group's statistics are over all frames of all its rows (variance
        at least :data:`VAR_FLOOR`).
    """
    axis, groups = norm_axis(input_name), np.asarray(groups)
    if input_name in PER_ELEMENT:  # one "frame" per row, every element its own channel
        return normalise_groups(x.reshape(x.shape[0], 1, -1), groups, "frames").reshape(x.shape)
    out = np.empty(x.shape, dtype=np.float32)
    for key in dict.fromkeys(groups.tolist()):
        sel = groups == key
        part = np.moveaxis(x[sel].astype(np.float64), axis, -1)
        flat = part.reshape(-1, part.shape[-1])
        mean, sd = flat.mean(0), np.sqrt(np.maximum(flat.var(0), VAR_FLOOR))
        out[sel] = np.moveaxis((part - mean) / sd, -1, axis)
    return out


class SpeakerNorm:
    """Per-speaker normalisation of a model input: each speaker's rows minus that speaker's mean, over its sd.

    Speaker-level mean and variance normalisation of the features, the speaker normalisation of SER
    (e.g. Busso, Mariooryad, Metallinou & Narayanan, "Iterative feature normalization scheme for
    automatic emotion detection from speech", IEEE Trans. Affective Computing 2013), applied to the
    frames of the model input: per log-mel band, F0 and energy row (or channel), over every frame
    of the speaker's original clips. It removes what a voice keeps across emotions (timbre, mean
    pitch, level, the room) and leaves how each clip departs from it. No label is read: a held-out
    speaker's statistics come from that speaker's own clips, as they would from a user's
    recordings of one voice. Rows with no speaker (an empty ``speaker`` column) use their clip's
    own statistics. Augmented copies use their speaker's statistics from the originals.

    With ``by="corpus"`` the groups are corpora instead (``train.corpus_norm``: corpus
    normalisation, Schuller et al., IEEE Trans. Affective Computing 2010): the corpus is the part
    of a clip id before its ``/``.

    Args:
        view: the store group's read view (``speaker``, ``clip_id``, ``variant`` and status are read).
        input_name: one of :data:`INPUTS`.
        by: ``"speaker"`` or ``"corpus"``: what a group is.

    Raises:
        ValueError: ``by`` is neither.

    Attributes:
        codes: ``(rows,)`` int, each store row's group (-1: no completed original, left as it is).
        mean, sd: ``(groups, C)`` float32 (``C`` the bands or channels of the input; every element
            of a row for :data:`PER_ELEMENT` inputs).
        axis: the input axis the statistics run along (of an ``(n, ...)`` batch).

    Memory: reads the originals one chunk at a time and keeps ``(groups, C)`` sums.
    """

    def __init__(self, view: StoreView, input_name: str, by: Literal["speaker", "corpus"] = "speaker"):
        """Read every completed original row once and keep each speaker's (or, ``by="corpus"``, corpus's) statistics."""
        clip_id = np.asarray(view.column("clip_id")).astype(str)
        if by == "corpus":  # clip ids are "<corpus>/<clip>" (ser_tasks.corpus.manifest)
            key = np.char.partition(clip_id, "/")[:, 0]
        elif by == "speaker":
            speaker = np.asarray(view.column("speaker")).astype(str)
            key = np.where(speaker != "", speaker, "clip:" + clip_id)
        else:
            raise ValueError(f"group statistics by 'speaker' or 'corpus', not {by!r}")
        self.by = by
        names, codes = np.unique(key, return_inverse=True)
        originals = np.flatnonzero(view.done() & (view.column("variant") == 0))
        self.axis = norm_axis(input_name)
        self.input_name = input_name
        total = sq = None
        count = np.zeros(names.size)
        for rows, x in zip(_by_chunk(originals, view.chunk_rows).values(),
                           iter_chunks(view, originals, input_name), strict=True):
            x = np.moveaxis(x.astype(np.float64), self.axis, -1)
            if input_name in PER_ELEMENT:
                x = x.reshape(x.shape[0], 1, -1)
            frames = x.reshape(x.shape[0], -1, x.shape[-1])
            if total is None:
                total, sq = np.zeros((names.size, x.shape[-1])), np.zeros((names.size, x.shape[-1]))
            np.add.at(total, codes[rows], frames.sum(1))
            np.add.at(sq, codes[rows], (frames**2).sum(1))
            np.add.at(count, codes[rows], frames.shape[1])
        has = count > 0
        self.codes = np.where(has[codes], codes, -1)
        if total is None:
            self.mean = self.sd = np.zeros((names.size, 0), np.float32)
            return
        mean = total / np.maximum(count, 1)[:, None]
        var = sq / np.maximum(count, 1)[:, None] - mean**2
        self.mean = mean.astype(np.float32)
        self.sd = np.sqrt(np.maximum(var, VAR_FLOOR)).astype(np.float32)

    def apply(self, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``x`` (the input of store rows ``rows``, ``(n, ...)`` float32) normalised per speaker, float32."""
        codes = self.codes[rows]
        keep = codes >= 0
        if not keep.any():
            return x
        if self.input_name in PER_ELEMENT:
            flat = x.reshape(x.shape[0], -1)
            out = flat.astype(np.float32, copy=True)
            out[keep] = (flat[keep] - self.mean[codes[keep]]) / self.sd[codes[keep]]
            return out.reshape(x.shape)
        shape = [1] * x.ndim
        shape[0], shape[self.axis] = -1, self.mean.shape[1]
        out = x.astype(np.float32, copy=True)
        out[keep] = (x[keep] - self.mean[codes[keep]].reshape(shape)) / self.sd[codes[keep]].reshape(shape)
        return out


class RowReader:
    """The model input of a set of store rows: read chunk by chunk, normalised per group, held in RAM when it fits.

    The training feed's reader (:class:`ZarrSequence` composes it with an :class:`EpochSampler` and,
    optionally, :class:`Mixup`).

    Args:
        view: the store group's read view.
        indices: ``(n,)`` int store rows it may be asked for.
        input_name: one of :data:`INPUTS`.
        memory_limit_mib: when the decoded input of ``indices`` (``n x prod(input_shape) x 4`` bytes)
            fits under this many MiB, it is read once here, chunk by chunk, and served from RAM;
            otherwise (and at 0) rows are streamed through a cache of two decoded chunks. Why: with
            ``train.epoch_rows: one_per_clip`` an epoch needs one row in ``1 + variants`` of every
            chunk, so streaming decodes the whole store each epoch, which cost as much as the
            ``tdnn`` step itself (docs/decisions.md, D14).
        speaker_norm: when given, every row is normalised by its group's statistics (:class:`SpeakerNorm`).

    Attributes:
        indices: ``(n,)`` the rows, sorted.
        resident: ``(n, *input_shape)`` float32, the rows in :attr:`indices` order when held in RAM, else ``None``.

    Raises:
        InputError: no rows, or an unknown ``input_name``.

    Memory: streamed, at most two decoded row chunks (``batch_rows`` rows each); resident, the rows' decoded input.
    """

    def __init__(self, view: StoreView, indices: np.ndarray, input_name: str, memory_limit_mib: float = 0,
                 speaker_norm: SpeakerNorm | None = None):
        """Set up the reader (arguments in the class docstring); resident rows are read here."""
        if indices.size == 0:
            raise InputError("a row reader needs at least one row")
        arrays_for(input_name)  # an unknown input fails here, not in a prefetch thread
        self.view, self.input_name, self.speaker_norm = view, input_name, speaker_norm
        self.chunk = view.chunk_rows
        self.indices = np.sort(indices)
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.resident: np.ndarray | None = None
        if memory_limit_mib > 0 and self.indices.size * 4 * math.prod(input_shape(view, input_name)) \
                <= memory_limit_mib * 2**20:
            self.resident = self._read_all()

    def _read_all(self) -> np.ndarray:
        """Decoded input of every row of :attr:`indices`, in that (sorted) order, read chunk by chunk."""
        out = np.empty((self.indices.size, *input_shape(self.view, self.input_name)), dtype=np.float32)
        at = 0
        for c, rows in _by_chunk(self.indices, self.chunk).items():
            out[at:at + rows.size] = self._chunk_input(c)[rows - c * self.chunk]
            at += rows.size
        self.cache.clear()
        return out

    def _chunk_input(self, c: int) -> np.ndarray:
        with self._lock:  # prefetch threads share the cache
            if c not in self.cache:
                x = read_chunk(self.view, self.input_name, c)
                if self.speaker_norm is not None:
                    x = self.speaker_norm.apply(x, np.arange(c * self.chunk, c * self.chunk + x.shape[0]))
                self.cache[c] = x
                while len(self.cache) > 2:
                    self.cache.popitem(last=False)
            return self.cache[c]

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """The input of store rows ``rows`` (any order, each in :attr:`indices`): ``(len(rows), ...)`` float32."""
        if self.resident is not None:
            return self.resident[np.searchsorted(self.indices, rows)]
        # Each chunk read once per call: mixup partners come from anywhere in the epoch, and a
        # row-by-row walk would miss the two-chunk cache about once per row.
        chunks = rows // self.chunk
        out = None
        for c in np.unique(chunks):
            sel = chunks == c
            part = self._chunk_input(int(c))[rows[sel] % self.chunk]
            if out is None:
                out = np.empty((rows.size, *part.shape[1:]), part.dtype)
            out[sel] = part
        return out


class EpochSampler:
    """Which store rows an epoch serves, and in which order.

    Args:
        indices: ``(n,)`` int store rows to draw from.
        chunk_rows: the store's chunk length: shuffling keeps reads chunk-sequential.
        shuffle: reshuffle chunk order and rows within chunks each epoch (seeded).
        seed: base seed; epoch ``e`` uses ``seed + e``.
        one_per_clip: ``(store rows,)`` clip id of every store row; when given, each epoch serves one
            row of each clip, drawn at random (seeded) from that clip's rows in ``indices`` (its
            original or an augmented copy), so an epoch costs one pass over the clips however many
            copies the store holds.
    """

    def __init__(self, indices: np.ndarray, chunk_rows: int, shuffle: bool = False, seed: int = 0,
                 one_per_clip: np.ndarray | None = None):
        """Set up the sampler (arguments in the class docstring)."""
        self.indices, self.chunk, self.shuffle, self.seed = np.sort(indices), chunk_rows, shuffle, seed
        self._clip_of = None
        if one_per_clip is not None:
            # Integer codes of the clips of ``indices`` (same order), for a cheap per-epoch draw.
            _, self._clip_of = np.unique(np.asarray(one_per_clip)[self.indices], return_inverse=True)

    def order(self, epoch: int) -> np.ndarray:
        """Store row indices ``(rows served per epoch,)`` int64 in epoch ``epoch``'s serving order.

        Epochs are numbered from 0; the order depends only on ``seed`` and ``epoch``.
        """
        rng = np.random.default_rng(self.seed + epoch)
        indices = self.indices
        if self._clip_of is not None:  # a random permutation, then each clip's first row in it
            perm = rng.permutation(indices.size)
            _, first = np.unique(self._clip_of[perm], return_index=True)
            indices = np.sort(indices[perm[first]])
        if not self.shuffle:
            return indices
        groups = _by_chunk(indices, self.chunk)
        keys = list(groups)
        rng.shuffle(keys)
        return np.concatenate([rng.permutation(groups[k]) for k in keys])


class Mixup:
    """Mixup of a batch (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018).

    Each served row is mixed with a partner row of the same epoch (a seeded permutation of the
    epoch's order): ``x = lam * x + (1 - lam) * x_partner`` with ``lam ~ Beta(alpha, alpha)`` per
    row, and so are its one-hot label and its weight.

    Args:
        alpha: the Beta distribution's parameter (> 0).
        seed: base seed; the partners of epoch ``e`` are drawn from ``(seed, e)``.
        n_classes: width of the one-hot labels.

    Raises:
        InputError: ``alpha`` not above 0.
    """

    def __init__(self, alpha: float, seed: int, n_classes: int):
        """Set up the transform (arguments in the class docstring)."""
        if not alpha > 0:
            raise InputError(f"mixup_alpha must be > 0 for mixup, got {alpha}")
        self.alpha, self.seed, self.n_classes = float(alpha), seed, n_classes

    def draw(self, epoch: int, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Partners of epoch ``epoch``: ``(partner rows (len(order),) int64, lam (len(order),) float32)``.

        Drawn on a stream of their own, so the serving order is the same with and without mixup.
        """
        rng = np.random.default_rng([self.seed, epoch, 1])
        return order[rng.permutation(order.size)], rng.beta(self.alpha, self.alpha, order.size).astype(np.float32)

    def soft_labels(self, labels: np.ndarray, partner_labels: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """Mixed one-hot labels ``(n, n_classes)`` float32: ``lam`` of each row's class, the rest its partner's."""
        eye = np.eye(self.n_classes, dtype=np.float32)
        return lam[:, None] * eye[labels] + (1 - lam[:, None]) * eye[partner_labels]


class ZarrSequence(keras.utils.PyDataset):
    """Mini-batches ``(x, y)`` of store rows: a :class:`RowReader`, an :class:`EpochSampler`, optionally :class:`Mixup`.

    Args:
        view: the store group's read view (labels come from it, read once).
        indices: store row indices to serve.
        input_name: one of :data:`INPUTS`.
        batch_size: rows per batch.
        shuffle, seed, one_per_clip: the :class:`EpochSampler`'s.
        class_weights: class index -> loss weight; when given, batches carry per-row sample
            weights (cheaper than Keras's ``class_weight``, which maps them inside the input pipeline).
        memory_limit_mib, speaker_norm: the :class:`RowReader`'s.
        mixup_alpha: when > 0, :class:`Mixup` with this alpha.
        n_classes: width of the one-hot labels under mixup (default: the largest label + 1).
        **kwargs: ``keras.utils.PyDataset`` options (``workers``, ``max_queue_size`` ...).

    ``x`` is float32 of shape ``(batch, *input_shape)``; ``y`` int32 class indices ``(batch,)``
    (under mixup, float32 soft labels ``(batch, n_classes)``, for a categorical cross-entropy);
    with ``class_weights``, a third item ``w`` float32 ``(batch,)``.
    Memory: the reader's, plus the batches queued by prefetch workers.

    Attributes:
        reader, sampler, mixup: the parts (``mixup`` ``None`` without it).

    Raises:
        InputError: no rows, an unknown ``input_name``, or a negative ``mixup_alpha``.
    """

    def __init__(self, view: StoreView, indices: np.ndarray, input_name: str, batch_size: int = 32,
                 shuffle: bool = False, seed: int = 0, class_weights: dict[int, float] | None = None,
                 one_per_clip: np.ndarray | None = None, memory_limit_mib: float = 0, mixup_alpha: float = 0.0,
                 n_classes: int | None = None, speaker_norm: SpeakerNorm | None = None, **kwargs):
        """Set up the sequence over ``indices`` (arguments in the class docstring); resident rows are read here."""
        super().__init__(**kwargs)
        if indices.size == 0:
            raise InputError("ZarrSequence needs at least one row")
        if mixup_alpha < 0:
            raise InputError(f"mixup_alpha must be >= 0, got {mixup_alpha}")
        self.input_name, self.batch_size, self.epoch = input_name, batch_size, 0
        self.labels_all = view.labels()
        self.n_classes = int(n_classes if n_classes is not None else self.labels_all.max() + 1)
        self.weights = None
        if class_weights is not None:
            table = np.zeros(int(self.labels_all.max()) + 1, dtype=np.float32)
            for c, w in class_weights.items():
                if c < table.size:
                    table[c] = w
            self.weights = table[self.labels_all]
        self.reader = RowReader(view, indices, input_name, memory_limit_mib, speaker_norm)
        self.sampler = EpochSampler(indices, view.chunk_rows, shuffle, seed, one_per_clip)
        self.mixup = Mixup(mixup_alpha, seed, self.n_classes) if mixup_alpha > 0 else None
        self._order = self.sampler.order(0)
        self._mix = self.mix_for(0, self._order)

    @property
    def indices(self) -> np.ndarray:
        """The rows served from, sorted."""
        return self.reader.indices

    @property
    def shuffle(self) -> bool:
        """Whether each epoch has its own order."""
        return self.sampler.shuffle

    @property
    def mixup_alpha(self) -> float:
        """Mixup's alpha (0 without mixup)."""
        return 0.0 if self.mixup is None else self.mixup.alpha

    @property
    def resident(self) -> bool:
        """Whether rows are served from RAM (read once) rather than streamed from the store."""
        return self.reader.resident is not None

    def order_for(self, epoch: int) -> np.ndarray:
        """Store row indices in epoch ``epoch``'s serving order (:meth:`EpochSampler.order`)."""
        return self.sampler.order(epoch)

    def mix_for(self, epoch: int, order: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Mixup partners and weights of epoch ``epoch`` (:meth:`Mixup.draw`); ``None`` without mixup."""
        return None if self.mixup is None else self.mixup.draw(epoch, order)

    @property
    def order(self) -> np.ndarray:
        """Store row indices in this epoch's serving order."""
        return self._order

    @property
    def labels(self) -> np.ndarray:
        """Class indices in serving order ``(len(order),)`` int32 (for evaluation)."""
        return self.labels_all[self._order]

    def __len__(self) -> int:
        """Batches per epoch: ``ceil(len(order) / batch_size)``, the last one possibly short."""
        return math.ceil(self._order.size / self.batch_size)

    def __getitem__(self, idx: int) -> tuple[np.ndarray, ...]:
        """Batch ``idx`` of this epoch's order: ``(x, y)``, or ``(x, y, w)`` with class weights."""
        part = slice(idx * self.batch_size, (idx + 1) * self.batch_size)
        rows = self._order[part]
        x, y = self.reader.rows(rows), self.labels_all[rows]
        w = None if self.weights is None else self.weights[rows]
        if self._mix is not None:
            partners, lam = self._mix[0][part], self._mix[1][part]
            lx = lam.reshape(-1, *[1] * (x.ndim - 1))
            x = lx * x + (1 - lx) * self.reader.rows(partners)
            y = self.mixup.soft_labels(self.labels_all[rows], self.labels_all[partners], lam)
            if w is not None:
                w = lam * w + (1 - lam) * self.weights[partners]
        return (x, y) if w is None else (x, y, w)

    def on_epoch_end(self) -> None:
        """Advance the epoch and reshuffle (when shuffling)."""
        self.epoch += 1
        if self.shuffle:
            self._order = self.order_for(self.epoch)
        self._mix = self.mix_for(self.epoch, self._order)


def resident_tf_dataset(seq: ZarrSequence, epochs: int):
    """A ``tf.data.Dataset`` of exactly the batches ``seq`` serves in its epochs ``0 .. epochs - 1``.

    For a resident sequence under the TensorFlow backend.


    Why: Keras feeds a ``PyDataset`` to TensorFlow through ``tf.data.Dataset.from_generator``, whose
    per-batch Python calls stall the training step far beyond the cost of producing the batches (an
    epoch about three times longer; docs/decisions.md, D14). Here the rows live in a CPU
    ``tf.Variable`` (a resource, so no 2 GB graph-constant limit) and each batch is a ``tf.gather``
    of its positions, with every epoch's order drawn up front by :meth:`ZarrSequence.order_for`.

    Pass it to ``model.fit`` with ``epochs`` and ``steps_per_epoch=len(seq)``: Keras then keeps one
    iterator across epochs, so epoch ``e`` gets order ``e``.

    Returns:
        Batches as ``seq[i]`` gives them: ``x`` float32 ``(batch, *input_shape)``, ``y`` int32
        ``(batch,)`` (mixed float32 ``(batch, n_classes)`` under mixup) and, with class weights, ``w``
        float32 ``(batch,)``.
        Memory: a second copy of the rows' decoded input (the variable), plus ``epochs x rows
        per epoch`` int32 positions (and as many partner positions and float32 weights under mixup).

    Raises:
        InputError: the sequence streams (is not resident), or ``epochs < 1``.
    """
    import tensorflow as tf  # only under the TensorFlow backend

    if seq.reader.resident is None:
        raise InputError("resident_tf_dataset needs a resident ZarrSequence (rows held in RAM)")
    if epochs < 1:
        raise InputError(f"epochs must be at least 1, got {epochs}")
    # Positions into the resident array: one row of them per epoch (every epoch serves as many rows).
    orders = [seq.order_for(e if seq.shuffle else 0) for e in range(epochs)]
    positions = np.stack([np.searchsorted(seq.indices, o) for o in orders]).astype(np.int32)
    with tf.device("/CPU:0"):
        x_all = tf.Variable(seq.reader.resident, trainable=False, name="resident_rows")
    y_all = tf.constant(seq.labels_all[seq.indices])
    w_all = None if seq.weights is None else tf.constant(seq.weights[seq.indices])

    if seq.mixup_alpha > 0:  # partners and lam drawn up front by mix_for, as the sequence draws them
        mixes = [seq.mix_for(e, o) for e, o in enumerate(orders)]
        partners = np.stack([np.searchsorted(seq.indices, m[0]) for m in mixes]).astype(np.int32)
        lams = np.stack([m[1] for m in mixes])
        eye = tf.eye(seq.n_classes, dtype=tf.float32)

        def batch(pos, other, lam):
            x, x2 = tf.gather(x_all, pos), tf.gather(x_all, other)
            lx = tf.reshape(lam, [-1] + [1] * (len(x_all.shape) - 1))
            x = lx * x + (1 - lx) * x2
            y = lam[:, None] * tf.gather(eye, tf.gather(y_all, pos)) \
                + (1 - lam[:, None]) * tf.gather(eye, tf.gather(y_all, other))
            if w_all is None:
                return x, y
            return x, y, lam * tf.gather(w_all, pos) + (1 - lam) * tf.gather(w_all, other)

        slices = (positions, partners, lams)
    else:
        def batch(pos):
            x, y = tf.gather(x_all, pos), tf.gather(y_all, pos)
            return (x, y) if w_all is None else (x, y, tf.gather(w_all, pos))

        slices = (positions,)

    return (tf.data.Dataset.from_tensor_slices(slices)
            .flat_map(lambda *p: tf.data.Dataset.from_tensor_slices(p).batch(seq.batch_size))
            .map(batch, num_parallel_calls=1)
            .prefetch(2))
