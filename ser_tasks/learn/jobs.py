"""Training as a job that runs anywhere: in the flow's process, or as a task on a Dask worker.

A :class:`TrainJob` is small and picklable: the store's read view travels as its URL and group
(:class:`ser_tasks.store.zarr_store.StoreView` reopens the group where it lands), the rows as index arrays.
:func:`run_job` trains, scores the held-out rows, and writes the model (``model.keras``) and its
normalisation statistics (``normalizer.json``) to ``outputs_url``: a folder on the store's own
filesystem (``<store>/.ser-runs/<id>/``, local or S3), never a path that exists only on the
worker's machine. :func:`fetch_outputs` brings them to the caller, which logs them to MLflow; the
worker needs neither MLflow nor the caller's disk.

Thread cap: a worker that trains caps TensorFlow's intra- and inter-op threads at
``threads`` (see :func:`limit_threads`), so N training tasks on N workers of one machine do not
each spawn a thread per core.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
import numpy as np

from ser_tasks.config import TrainConfig
from ser_tasks.remote import fs_options
from ser_tasks.store.zarr_store import StoreView

RUNS_DIR = ".ser-runs"
OUTPUTS = ("model.keras", "normalizer.json")


@dataclass
class TrainJob:
    """One training: rows to train on, rows to score, the settings, and where the outputs go.

    Attributes:
        view: the store group's read view (pickled as its store handle).
        train: store rows to train on, ``(n,)`` int64.
        test: store rows to score after training, ``(m,)`` int64 (may be empty: nothing scored).
        cfg: the training settings.
        outputs_url: folder (path or fsspec URL) for ``model.keras`` and ``normalizer.json``.
        val: store rows to validate on each epoch (logged only), ``(k,)`` int64.
        present_only: score UA and macro-F1 over the classes present in ``test`` only.
        threads: TensorFlow thread cap in the process that runs the job (``None``: leave as is).
        name: a label for logs (``cv-actor-fold3``).
    """

    view: StoreView
    train: np.ndarray
    test: np.ndarray
    cfg: TrainConfig
    outputs_url: str
    val: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    present_only: bool = False
    threads: int | None = None
    name: str = ""


def placement(resources: dict[str, float] | None):
    """Dask annotations that send the tasks submitted inside to workers holding ``resources`` (none: anywhere)."""
    import contextlib

    import dask

    return dask.annotate(resources=dict(resources)) if resources else contextlib.nullcontext()


def outputs_url_for(store_url: str, label: str) -> str:
    """A fresh folder for one job's outputs on the store's filesystem: ``<store>/.ser-runs/<label>-<id>``."""
    return f"{store_url.rstrip('/')}/{RUNS_DIR}/{label}-{uuid.uuid4().hex[:12]}"


def limit_threads(threads: int | None) -> None:
    """Cap TensorFlow's intra- and inter-op thread pools of this process at ``threads``.

    TensorFlow fixes its pools at first use: in a process that already ran TensorFlow ops the call
    has no effect (the first training task of a worker decides; later ones use the same value).
    Other Keras backends are left alone.
    """
    if not threads:
        return
    import keras

    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # already initialised in this process
        pass


def run_job(job: TrainJob) -> dict:
    """Train, score the test rows, and write the outputs to ``job.outputs_url``.

    Returns:
        ``{"name", "history", "best_epoch", "rows", "seconds", "device", "scores" (or ``None``
        without test rows: :func:`ser_tasks.learn.metrics.scores`), "y_true" and "y_pred" (class
        indices of the test rows, in sorted row order), "outputs_url", "host", "pid",
        "threads"}``: plain data, a few kB.

    Raises:
        InputError: no training rows, an unknown model.
        OSError: the outputs folder cannot be written.
    """
    from ser_tasks.learn import metrics
    from ser_tasks.learn.training import score_rows, train_rows

    limit_threads(job.threads)
    with tempfile.TemporaryDirectory(prefix="ser-job-") as tmp:
        fitted = train_rows(job.view, job.train, job.cfg, Path(tmp), job.val, verbose=0)
        scores, y_true, y_pred = None, np.empty(0, int), np.empty(0, int)
        if job.test.size:
            y_true, y_pred = score_rows(job.view, fitted.model_path, job.test)
            scores = metrics.scores(y_true, y_pred, job.view.vocabulary, present_only=job.present_only)
        fs, root = _fs(job.outputs_url, job.view)
        fs.makedirs(root, exist_ok=True)
        for name in OUTPUTS:
            fs.put_file(str(Path(tmp) / name), f"{root}/{name}")
    import socket

    return {"name": job.name, "history": fitted.history, "best_epoch": fitted.best_epoch, "rows": fitted.rows,
            "seconds": fitted.seconds, "device": fitted.device, "scores": scores, "outputs_url": job.outputs_url,
            "y_true": [int(v) for v in y_true], "y_pred": [int(v) for v in y_pred],
            "host": socket.gethostname(), "pid": os.getpid(), "threads": job.threads}


def _fs(url: str, view: StoreView | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    options = view.store.storage_options if view is not None and view.store is not None else None
    return fsspec.core.url_to_fs(url, **fs_options(url, options))


def fetch_fit(res: dict, local_dir: Path, storage_options: dict | None = None, test_rows: int = 0):
    """A :func:`run_job` result as a :class:`~ser_tasks.learn.training.FitResult`, its files fetched into ``local_dir``.

    Args:
        res: what :func:`run_job` returned.
        local_dir: where ``model.keras`` and ``normalizer.json`` land (created).
        storage_options: fsspec options for the store's filesystem.
        test_rows: rows the caller scores (``FitResult.rows["test"]``).
    """
    from ser_tasks.learn.training import FitResult

    files = fetch_outputs(res["outputs_url"], local_dir, storage_options)
    return FitResult(files["model.keras"], files["normalizer.json"], res["history"], res["best_epoch"],
                     {**res["rows"], "test": test_rows}, res["seconds"], res["device"])


def fetch_outputs(outputs_url: str, local_dir: Path, storage_options: dict | None = None,
                  remove: bool = True) -> dict[str, Path]:
    """Copy a job's outputs to ``local_dir`` (created); remove them from the store unless ``remove`` is false.

    Returns:
        ``{"model.keras": path, "normalizer.json": path}``.

    Raises:
        FileNotFoundError: the job wrote no outputs there.
    """
    fs, root = fsspec.core.url_to_fs(outputs_url, **fs_options(outputs_url, storage_options))
    local_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in OUTPUTS:
        fs.get_file(f"{root}/{name}", str(local_dir / name))
        out[name] = local_dir / name
    if remove:
        fs.rm(root, recursive=True)
    return out
