"""The Zarr feature store: one group per extraction config, rows planned up front, whole-chunk writes.

Layout of a store (local path or fsspec URL, e.g. ``s3://bucket/features.zarr``)::

    <store>/extract-<fingerprint[:12]>/     one group per extraction config
        log_mel  (rows, n_mels, T) float32   features, row chunk = ``batch_rows``
        mfcc     (rows, n_mfcc, T) float32
        zcr, rms (rows, T)         float32
        emotion  (rows,) int16    index into attrs["vocabulary"]
        split    (rows,) int8     0 train, 1 val, 2 test
        variant  (rows,) int16    0 = original clip, k > 0 = k-th augmented copy
        clip_id, speaker, path (rows,) str
        augment  (rows, 6) float32  drawn parameters (nan = not applied), attrs["augment_params"]
        status   (rows,) int8     0 pending, 1 done, -1 failed
        error    (rows,) str      the failure reason of a failed row
    <store>/.ser-leases/<group>.json       the write lease while a writer holds the group (ser_tasks.store.lease)
    <store>/.ser-runs/<job>/               a training job's model on its way from a Dask worker (ser_tasks.learn.jobs)

Features, ``status`` and ``error`` are chunked by ``batch_rows`` rows, the unit a task writes; the
label and provenance arrays (``emotion`` to ``augment``), written once, by :data:`LABEL_CHUNK_ROWS`.

Rows are ordered train, val, test; within a split by a seeded shuffle of clips, with a clip's
variants adjacent. The planner writes every label/provenance array once; extraction tasks then
each own one chunk-aligned row range (zarr-python 3 loses data when two writers share a chunk,
zarr-python #3682) and write only features, status and error. Metadata is consolidated once, by
:meth:`FeatureStore.finalize`, for outside readers (xarray, a plain ``zarr.open``); this module
always reads the live metadata, since a growing group outdates that snapshot.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import platform
import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import zarr

from ser_tasks.config import SPLITS, PipelineConfig
from ser_tasks.emotions import vocabulary
from ser_tasks.errors import InputError, StoreConflictError
from ser_tasks.remote import fs_options
from ser_tasks.signal.augment import PARAM_NAMES
from ser_tasks.signal.features import FEATURES, feature_names, feature_shapes
from ser_tasks.store.lease import LEASE_DIR

if TYPE_CHECKING:  # pandas and the planner load where tables are built, not in extraction workers
    import pandas as pd

# Consolidated metadata lets outside readers open a remote store in one read; zarr warns that v3's
# spec lacks it. We write it knowingly.
warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
# The writer lease (ser_tasks.store.lease) and training jobs' outputs (ser_tasks.learn.jobs, .ser-runs) live
# beside the groups; zarr notes that they are not groups.
warnings.filterwarnings("ignore", message=rf"Object at ({re.escape(LEASE_DIR)}|\.ser-runs) is not recognized",
                        category=UserWarning)

STORE_VERSION = 1

#: Row chunk of the label and provenance arrays (``emotion`` ... ``augment``), which tasks only read.
LABEL_CHUNK_ROWS = 16384
PENDING, DONE, FAILED = 0, 1, -1

#: Codec of the feature arrays: Blosc LZ4 after byte shuffling. Against zarr's default (Zstandard)
#: on RAVDESS log-mel and MFCC chunks it wrote 2.3x and read 2.5x faster for a 2 % smaller store
#: (docs/decisions.md, D19). Groups written before keep the codec they were created with.
FEATURE_CODECS = (zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),)


def _store_like(url: str, storage_options: dict | None):
    """What zarr should open: the path or URL itself, or an fsspec store carrying the options.

    zarr opens remote stores through async fsspec; see NOTES.md.
    """
    options = fs_options(url, storage_options)
    if options:
        return zarr.storage.FsspecStore.from_url(url, storage_options=options)
    return url


def _open_root(url: str, storage_options: dict | None, mode: str) -> zarr.Group:
    """The store's root group, read from the live metadata, never the consolidated copy.

    The consolidated copy is a snapshot taken by :meth:`FeatureStore.finalize`; a group that grows
    (incremental extraction) changes array shapes after it, and a reader of the snapshot would see
    the old shapes (measured: the rows a scheduled run appended stayed pending).
    """
    return zarr.open_group(store=_store_like(url, storage_options), mode=mode, use_consolidated=False)


def read_strings(array, sl: slice = slice(None)) -> np.ndarray:
    """A slice of a Zarr string array as an object array of Python ``str``.

    numpy's StringDType does not cast to fixed-width ``str``.
    """
    return np.asarray(array[sl]).astype(object)


def _chunk_ranges(n: int, b: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each ``b``-row chunk of ``n`` rows."""
    return [(s, min(s + b, n)) for s in range(0, n, b)]


def group_name(config: PipelineConfig) -> str:
    """``extract-<first 12 hex digits of the extraction fingerprint>``."""
    return f"extract-{config.extraction_fingerprint()[:12]}"


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the features (recorded in the store's attributes)."""
    out = {"python": platform.python_version()}
    for dist in ("ser-pipeline", "numpy", "librosa", "soundfile", "miniaudio", "soxr", "zarr", "scipy"):
        try:
            out[dist] = _md.version(dist)
        except _md.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def with_params(plan: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    """``plan`` with one column per :data:`ser_tasks.signal.augment.PARAM_NAMES`; unchanged when it already has them.

    The columns are float (NaN = not applied), drawn per (clip, variant) by
    :func:`ser_tasks.signal.augment.draw_params`.
    """
    import pandas as pd  # the planner's; extraction workers import this module without pandas

    from ser_tasks.signal.augment import draw_params

    if set(PARAM_NAMES) <= set(plan.columns):
        return plan
    drawn = [draw_params(config.augment, c, int(v)).as_dict() for c, v in zip(plan["clip_id"], plan["variant"],
                                                                              strict=True)]
    return pd.concat([plan.reset_index(drop=True), pd.DataFrame(drawn, columns=list(PARAM_NAMES))], axis=1)


def _label_arrays(plan: pd.DataFrame, config: PipelineConfig, vocab: list[str]) -> dict[str, np.ndarray]:
    """The per-row label and provenance arrays of planned rows (shapes ``(rows,)``, augment ``(rows, 6)``).

    The augmentation parameters of the rows are drawn here (:func:`with_params`).
    """
    plan = with_params(plan, config)
    return {
        "emotion": plan["emotion"].map(vocab.index).to_numpy(np.int16),
        "split": plan["split"].map(SPLITS.index).to_numpy(np.int8),
        "variant": plan["variant"].to_numpy(np.int16),
        "clip_id": plan["clip_id"].to_numpy(dtype=str),
        "speaker": plan["speaker"].to_numpy(dtype=str),
        "path": plan["path"].to_numpy(dtype=str),
        "augment": plan[list(PARAM_NAMES)].to_numpy(np.float32),
    }


_MISSING = object()


@dataclass
class FeatureStore:
    """Handle on one extraction group of a feature store.

    Attributes:
        url: the store root (path or URL).
        group: the group's name inside the store.
        storage_options: fsspec options for remote stores (never logged).
        appended_rows: rows the last :meth:`create_or_resume` appended to an existing group.
    """

    url: str
    group: str
    storage_options: dict | None = None
    appended_rows: int = field(default=0, compare=False)
    # Open group handles by mode ("r", "r+"); a handle reads array metadata live, so it stays valid
    # while workers write. Not pickled: a handle shipped to another process opens its own.
    _handles: dict = field(default_factory=dict, compare=False, repr=False)

    def __getstate__(self) -> dict:
        """Pickled without open handles (the receiving process opens its own)."""
        return {**self.__dict__, "_handles": {}}

    # -- opening -------------------------------------------------------------------------------
    def open(self, mode: str = "r") -> zarr.Group:
        """The group (``mode`` ``"r"`` or ``"r+"``), opened once per handle and mode.

        A writable handle also serves reads.

        Raises:
            FileNotFoundError: the store or group does not exist.
        """
        key = "r" if mode == "r" else "r+"
        for cached in (self._handles.get("r+"), self._handles.get(key)):  # not `or`: an empty group is falsy
            if cached is not None:
                return cached
        try:
            g = _open_root(self.url, self.storage_options, key)[self.group]
        except (FileNotFoundError, KeyError) as exc:
            raise FileNotFoundError(f"{self.url}: no feature group {self.group!r}") from exc
        self._handles[key] = g
        return g

    def view(self) -> StoreView:
        """A read view of the group as it is now (see :class:`StoreView`); opens it at most once."""
        return StoreView(self.open(), self)

    @classmethod
    def groups(cls, url: str, storage_options: dict | None = None) -> list[str]:
        """Names of the extraction groups in a store (empty if the store does not exist)."""
        try:
            root = _open_root(url, storage_options, "r")
        except FileNotFoundError:
            return []
        return sorted(name for name in root.group_keys() if name.startswith("extract-"))

    @classmethod
    def locate(cls, url: str, group: str | None = None, storage_options: dict | None = None) -> FeatureStore:
        """The named group, or the store's only group when ``group`` is ``None``.

        Raises:
            FileNotFoundError: no group (of that name) in the store.
            InputError: several groups and none named.
        """
        try:
            root = _open_root(url, storage_options, "r")
        except FileNotFoundError:
            root = None
        names = [] if root is None else sorted(n for n in root.group_keys() if n.startswith("extract-"))
        if group is None:
            if not names:
                raise FileNotFoundError(f"{url}: no feature groups (run `ser extract` first)")
            if len(names) > 1:
                raise InputError(f"{url} holds {len(names)} feature groups ({', '.join(names)}); name one with --group")
            group = names[0]
        elif group not in names:
            raise FileNotFoundError(f"{url}: no feature group {group!r}; present: {', '.join(names) or 'none'}")
        store = cls(url, group, storage_options)
        store._handles["r"] = root[group]  # the root is open already: no second open for the group
        return store

    # -- planning ------------------------------------------------------------------------------
    @classmethod
    def create_or_resume(cls, url: str, config: PipelineConfig, plan: pd.DataFrame, *,
                         attrs: dict | None = None, storage_options: dict | None = None) -> FeatureStore:
        """Create the group for ``config`` with all arrays and the planned rows, or reopen it.

        Reopening resumes the rows still pending, and appends the planned rows the group lacks
        (incremental extraction: new files under the corpus root, see :meth:`_extend`); their count
        is left in :attr:`appended_rows`. A group built from another config lives under another name
        and is never touched.

        Raises:
            StoreConflictError: the group exists with a different fingerprint, was interrupted while
                being created, or the plan moves a stored clip to another split.
            InputError: an empty plan.
        """
        if plan.empty:
            raise InputError("nothing to extract: the plan has no rows")
        store = cls(url, group_name(config), storage_options)
        root = _open_root(url, storage_options, "a")
        root.attrs.setdefault("ser_store_version", STORE_VERSION)
        if store.group in root:
            g = root[store.group]
            store._check_config(g, config)
            store.appended_rows = store._extend(g, plan, attrs or {}, config)
        else:
            g = store._create(root, config, plan, attrs or {})
        store._handles["r+"] = g
        return store

    def _check_config(self, g: zarr.Group, config: PipelineConfig) -> None:
        if g.attrs.get("fingerprint") != config.extraction_fingerprint():
            raise StoreConflictError(f"{self.url}/{self.group} was written with another configuration")
        if g.attrs.get("planned") is not True:
            raise StoreConflictError(f"{self.url}/{self.group} is incomplete from an interrupted creation; remove it")

    def _extend(self, g: zarr.Group, plan: pd.DataFrame, attrs: dict, config: PipelineConfig) -> int:
        """Append the rows of ``plan`` the group lacks (new files under the corpus root); returns how many.

        Rows already stored must keep their split; rows of files no longer listed stay.

        The arrays are first cut back to ``attrs["rows"]`` (undoing an append that was interrupted),
        then grown; ``attrs["rows"]`` is written last, so it always counts fully planned rows.

        Raises:
            StoreConflictError: a stored clip changed split, or a new clip has an emotion outside the
                group's vocabulary (the model's classes are fixed per group).
        """
        import pandas as pd

        n = int(g.attrs["rows"])
        if g["status"].shape[0] != n:
            for name in g.array_keys():
                g[name].resize((n, *g[name].shape[1:]))
        stored = pd.DataFrame({"clip_id": read_strings(g["clip_id"], slice(0, n)), "variant": g["variant"][:n],
                               "stored_split": np.asarray(SPLITS, dtype=object)[g["split"][:n]]})
        merged = plan.merge(stored, on=["clip_id", "variant"], how="left")
        moved = merged[merged["stored_split"].notna() & (merged["stored_split"] != merged["split"])]
        if len(moved):
            raise StoreConflictError(
                f"{self.url}/{self.group}: {moved['clip_id'].nunique()} stored clip(s) would change split "
                f"(e.g. {moved['clip_id'].iloc[0]}); the split must stay fixed while a group grows")
        new = plan[merged["stored_split"].isna().to_numpy()].reset_index(drop=True)
        if new.empty:
            return 0
        vocab = list(g.attrs["vocabulary"])
        unknown = sorted(set(new["emotion"]) - set(vocab))
        if unknown:
            raise StoreConflictError(f"{self.url}/{self.group}: new clips carry emotion(s) {unknown} outside the "
                                     f"group's vocabulary {vocab}; extract them into another --store")
        m = n + len(new)
        for name in g.array_keys():
            g[name].resize((m, *g[name].shape[1:]))
        for name, values in _label_arrays(new, config, vocab).items():
            g[name][n:m] = values
        g["status"][n:m] = PENDING
        g["error"][n:m] = np.full(len(new), "", dtype=str)
        g.attrs.update({**attrs, "rows": m, "complete": False,
                        "appended": [*g.attrs.get("appended", []),
                                     {"rows": len(new),
                                      "at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}]})
        return len(new)

    def _create(self, root: zarr.Group, config: PipelineConfig, plan: pd.DataFrame, attrs: dict) -> zarr.Group:
        n = len(plan)
        b = config.extract.batch_rows
        vocab = vocabulary(set(plan["emotion"]))
        g = root.create_group(self.group)
        for name, shape in feature_shapes(config.audio, config.features).items():
            g.create_array(name, shape=(n, *shape), chunks=(b, *shape), dtype="float32", fill_value=np.nan,
                           compressors=FEATURE_CODECS)
        # Label arrays are written once here and only read by tasks, so they need no chunk-per-task
        # alignment: larger chunks make creation a few writes instead of one per row chunk per array
        # (385 writes, 0.9 s of the flow's serial time for 3,480 RAVDESS rows; a PUT each on S3).
        label_chunk = max(b, LABEL_CHUNK_ROWS)
        for name, values in _label_arrays(plan, config, vocab).items():
            arr = g.create_array(name, shape=values.shape, chunks=(label_chunk, *values.shape[1:]),
                                 dtype=str if values.dtype.kind == "U" else values.dtype)
            arr[:] = values
        g.create_array("status", shape=(n,), chunks=(b,), dtype="int8", fill_value=PENDING)
        g.create_array("error", shape=(n,), chunks=(b,), dtype=str)
        g.attrs.update({
            **attrs,
            "fingerprint": config.extraction_fingerprint(),
            "config": config.extraction_dict(),
            "vocabulary": vocab,
            "splits": list(SPLITS),
            "augment_params": list(PARAM_NAMES),
            "features": list(feature_names(config.features)),
            "batch_rows": b,
            "rows": n,
            "versions": library_versions(),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "planned": True,  # set last: a group without it was interrupted mid-creation
        })
        return g

    # -- extraction bookkeeping ----------------------------------------------------------------
    def regions(self) -> list[tuple[int, int]]:
        """All chunk-aligned ``(start, stop)`` row ranges of the group."""
        g = self.open()
        return _chunk_ranges(g["status"].shape[0], g.attrs["batch_rows"])

    def pending_regions(self) -> list[tuple[int, int]]:
        """Row ranges that still hold a pending row (a complete range is never recomputed)."""
        g = self.open()
        status = g["status"][:]
        return [(s, e) for s, e in _chunk_ranges(status.size, g.attrs["batch_rows"]) if (status[s:e] == PENDING).any()]

    def task_regions(self, chunks_per_task: int) -> list[tuple[int, int]]:
        """:meth:`pending_regions` merged into runs of up to ``chunks_per_task`` adjacent chunks.

        One extraction task each. A complete chunk is never part of a task, so it is never rewritten.

        Raises:
            InputError: ``chunks_per_task`` < 1.
        """
        if chunks_per_task < 1:
            raise InputError(f"chunks_per_task must be >= 1, got {chunks_per_task}")
        out: list[list[int]] = []
        run = 0
        for s, e in self.pending_regions():
            if out and out[-1][1] == s and run < chunks_per_task:
                out[-1][1], run = e, run + 1
            else:
                out.append([s, e])
                run = 1
        return [(s, e) for s, e in out]

    def write_region(self, start: int, stop: int, features: dict[str, np.ndarray], status: np.ndarray,
                     errors: list[str]) -> None:
        """Write a row range of whole chunks: features first, then status (the commit mark).

        Raises:
            InputError: ``start``/``stop`` not on chunk boundaries, or arrays of the wrong length.
        """
        g = self.open("r+")
        b, n = g.attrs["batch_rows"], g["status"].shape[0]
        if start % b or not start < stop <= n or (stop % b and stop != n):
            raise InputError(f"rows {start}:{stop} are not whole chunks of {b} rows (of {n})")
        for name in g.attrs.get("features", FEATURES):
            g[name][start:stop] = features[name]
        g["error"][start:stop] = np.asarray(errors, dtype=str)
        g["status"][start:stop] = status.astype(np.int8)

    def failures(self) -> pd.DataFrame:
        """Failed rows: ``clip_id, variant, path, reason`` (:meth:`StoreView.failures` of a fresh view)."""
        return self.view().failures()

    def counts(self) -> dict[str, int]:
        """Rows by status: ``rows``, ``done``, ``failed``, ``pending`` (reads the status array)."""
        return self.view().counts()

    def finalize(self, extra_attrs: dict | None = None, counts: dict[str, int] | None = None) -> dict[str, int]:
        """Record completion and failure count, then consolidate metadata (once, after all writers).

        Nothing is written when the group's attributes already hold these values and this handle
        appended no rows (a rerun with nothing new): its consolidated metadata is still current.

        Args:
            extra_attrs: more attributes to record.
            counts: :meth:`StoreView.counts` of a view taken after the last write (read here when
                ``None``).

        Returns:
            The counts, as recorded.
        """
        g = self.open("r+")
        counts = counts or self.counts()
        attrs = {**(extra_attrs or {}), "complete": counts["pending"] == 0, "failed_rows": counts["failed"]}
        if self.appended_rows == 0 and all(g.attrs.get(k, _MISSING) == v for k, v in attrs.items()):
            return counts
        g.attrs.update(attrs)
        zarr.consolidate_metadata(_store_like(self.url, self.storage_options))
        return counts


def row_corpus(speaker: np.ndarray, clip_id: np.ndarray) -> np.ndarray:
    """The corpus of each row, ``(rows,)`` object.

    The speaker's prefix (``ravdess:01``), else, for a row of unknown speaker, the clip id's
    (``ravdess/...``); a folder layout's clips keep the corpus their names were recognised as.
    """
    speaker, clip_id = np.asarray(speaker).astype(str), np.asarray(clip_id).astype(str)
    from_speaker = np.char.partition(speaker, ":")[:, 0]
    from_clip = np.char.partition(clip_id, "/")[:, 0]
    return np.where(np.char.find(speaker, ":") >= 0, from_speaker, from_clip).astype(object)


#: The per-row label and provenance arrays a :class:`StoreView` reads (at most once each).
COLUMNS = ("emotion", "split", "variant", "clip_id", "speaker", "path", "status", "error")
_STRINGS = {"clip_id", "speaker", "path", "error"}


class StoreView:
    """A read view of one extraction group: the group opened once, each per-row array read at most once.

    The one reader of the group's layout for training, scoring and cross-validation: rows of a
    split, labels, vocabulary, provenance and feature arrays. Columns are read on first use and
    kept (a few bytes per row); feature arrays are read by the caller, chunk by chunk. A view is a
    snapshot of the per-row arrays: take a new one after writing (``status`` changes as rows are
    extracted).

    Args:
        group: the opened group.
        store: the handle it came from (for its URL and name in messages); ``None`` for a bare group.

    Pickling keeps the store handle and drops the open group and the columns read; the receiving
    process opens the group again on first use.
    """

    def __init__(self, group: zarr.Group | None, store: FeatureStore | None = None):
        """Wrap an opened group (see the class docstring)."""
        if group is None and store is None:
            raise InputError("StoreView needs a group or a store")
        self.store = store
        self._group = group
        self._columns: dict[str, np.ndarray] = {}
        self._attrs: dict | None = None

    def __getstate__(self) -> dict:
        """Only the store handle travels; the group is reopened on first use."""
        if self.store is None:
            raise InputError("a StoreView of a bare group cannot be pickled; take it from a FeatureStore")
        return {"store": self.store, "_group": None, "_columns": {}, "_attrs": None}

    @property
    def group(self) -> zarr.Group:
        """The opened Zarr group (opened here on first use after unpickling)."""
        if self._group is None:
            self._group = self.store.open()
        return self._group

    @property
    def name(self) -> str:
        """``url/group`` for messages (the group's path when the view wraps a bare group)."""
        return f"{self.store.url}/{self.store.group}" if self.store is not None else self.group.path

    @property
    def attrs(self) -> dict:
        """The group's attributes (read once)."""
        if self._attrs is None:
            self._attrs = dict(self.group.attrs)
        return self._attrs

    @property
    def vocabulary(self) -> list[str]:
        """Emotion names; ``emotion`` values index into it."""
        return list(self.attrs["vocabulary"])

    @property
    def chunk_rows(self) -> int:
        """Rows per chunk of the feature and status arrays (``extract.batch_rows``)."""
        return int(self.group["status"].chunks[0])

    def column(self, name: str) -> np.ndarray:
        """One per-row array of :data:`COLUMNS`, whole, read on first use: ``(rows,)``.

        Strings come as object arrays of ``str``; ``emotion``, ``split``, ``variant`` and ``status`` as
        their stored integer dtypes.

        Raises:
            InputError: ``name`` is not one of :data:`COLUMNS`.
        """
        if name not in COLUMNS:
            raise InputError(f"unknown store column {name!r}; choose one of {', '.join(COLUMNS)}")
        if name not in self._columns:
            array = self.group[name]
            self._columns[name] = read_strings(array) if name in _STRINGS else array[:]
        return self._columns[name]

    def labels(self) -> np.ndarray:
        """Class index of every row ``(rows,)`` int32 (into :attr:`vocabulary`)."""
        return self.column("emotion").astype(np.int32)

    def rows(self, split: str, originals_only: bool = False) -> np.ndarray:
        """Sorted indices ``(n,)`` int64 of completed rows in one split; failed rows are left out.

        Args:
            split: ``"train"``, ``"val"`` or ``"test"`` (:data:`ser_tasks.corpus.split.SPLITS`).
            originals_only: keep variant 0 only: validation and test speakers are scored on their
                original clips, even in a store that augmented every clip (``augment.scope: all``).

        Raises:
            InputError: an unknown split.
        """
        if split not in SPLITS:
            raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        keep = (self.column("split") == SPLITS.index(split)) & (self.column("status") == DONE)
        if originals_only:
            keep &= self.column("variant") == 0
        return np.flatnonzero(keep)

    def corpus(self) -> np.ndarray:
        """The corpus of each row, ``(rows,)`` object (:func:`row_corpus`)."""
        return row_corpus(self.column("speaker"), self.column("clip_id"))

    def done(self) -> np.ndarray:
        """Whether each row was extracted, ``(rows,)`` bool."""
        return self.column("status") == DONE

    def features(self, name: str) -> zarr.Array:
        """A feature array (``log_mel``, ``mfcc``, ``zcr``, ``rms``; ``f0``, ``encoder`` if extracted), unread.

        Raises:
            InputError: not a feature of the store (``f0`` in a store extracted without ``features.f0``).
        """
        held = self.attrs.get("features", FEATURES)
        if name not in held:
            hint = {"f0": "; it was extracted without features.f0: true",
                    "encoder": "; it was extracted without features.encoder"}.get(name, "")
            raise InputError(f"{self.name}: no feature {name!r} (it holds {', '.join(held)}){hint}")
        return self.group[name]

    def counts(self) -> dict[str, int]:
        """Rows by status: ``rows``, ``done``, ``failed``, ``pending``."""
        status = self.column("status")
        return {"rows": int(status.size), "done": int((status == DONE).sum()),
                "failed": int((status == FAILED).sum()), "pending": int((status == PENDING).sum())}

    def failures(self) -> pd.DataFrame:
        """Failed rows: ``clip_id, variant, path, reason`` (empty, and nothing more read, when none failed)."""
        import pandas as pd

        idx = np.flatnonzero(self.column("status") == FAILED)
        if not idx.size:
            return pd.DataFrame(columns=["clip_id", "variant", "path", "reason"])
        return pd.DataFrame({"clip_id": self.column("clip_id")[idx], "variant": self.column("variant")[idx],
                             "path": self.column("path")[idx], "reason": self.column("error")[idx]})

    def provenance(self) -> pd.DataFrame:
        """One row per store row: ``clip_id, speaker, path, variant, split, emotion, status`` (names, not codes)."""
        import pandas as pd

        return pd.DataFrame({
            "clip_id": self.column("clip_id"), "speaker": self.column("speaker"), "path": self.column("path"),
            "variant": self.column("variant"),
            "split": np.asarray(SPLITS, dtype=object)[self.column("split")],
            "emotion": np.asarray(self.vocabulary, dtype=object)[self.column("emotion")],
            "status": self.column("status"),
        })
