"""Batch inference: score many recordings with a registered model, in chunks, resumably, on Dask.

``ser predict`` and ``ser score`` (and the scheduled scoring flow, :mod:`flows.batch`) cut the files
into chunks (:func:`plan_chunks`: a speaker's files stay together, for a speaker-normalised model),
score each chunk on a Dask worker (:func:`predict_batch`, :func:`batch_client`, :func:`score_chunk`:
the worker reads the files, runs the registered model, :class:`ser_tasks.serve.predict.EmotionModel`, and
writes the chunk's rows as one Parquet file) and read the results back (:func:`read_predictions`).

The output is a Parquet dataset folder, one sub-folder per model version (``model=<name>-v<N>``, a
Hive partition), one ``part-<hash>.parquet`` per chunk, written whole or not at all (a temporary
name, then a rename; an object store's single upload), and a ``_params.json`` saying how the rows
were made. A re-run with the same model version and parameters skips every file that already has
rows (:func:`done_paths`), so a run killed at any point (SIGKILL included) and run again ends with
every file exactly once; a new model version scores everything again in its own folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pandas as pd

from ser_tasks.errors import InputError
from ser_tasks.remote import fs_options

#: Rows per chunk: one task's work, one Parquet file; small enough that a killed run loses little.
CHUNK_FILES = 32
#: Name of the file, in a model's folder of the output, that records how its rows were made.
PARAMS_FILE = "_params.json"


@dataclass(frozen=True)
class ModelRef:
    """The model a batch scores with, as its workers load it.

    Attributes:
        uri: the MLflow model URI, an alias resolved (``models:/ser-emotion/7``), so that every worker
            and a later resume use the same version.
        slug: the name of its output folder's partition value (``ser-emotion-v7``).
        tracking_uri: the MLflow tracking URI the workers read the model from.
        local_dir: a folder holding the downloaded model, when the workers share this machine's disk.
    """

    uri: str
    slug: str
    tracking_uri: str
    local_dir: str | None = None


def resolve_model(model_uri: str, local_dir: str | None = None) -> ModelRef:
    """Pin ``model_uri`` to one version (an alias resolved now) and name its output partition.

    Args:
        model_uri: any MLflow model URI (``models:/NAME@ALIAS``, ``models:/NAME/N``, ``runs:/...``).
        local_dir: where to download the model for workers on this machine (``None``: they download it).

    Raises:
        InputError: the model, alias or version does not exist.
    """
    import mlflow

    from ser_tasks.serve.registry import model_version

    try:
        found = model_version(model_uri)
        uri = f"models:/{found[0]}/{found[1]}" if found else model_uri
        if local_dir is not None:
            local_dir = mlflow.artifacts.download_artifacts(uri, dst_path=local_dir)
    except mlflow.exceptions.MlflowException as exc:
        raise InputError(f"cannot load model {model_uri}: {exc.message}") from exc
    return ModelRef(uri, model_slug(model_uri, found), mlflow.get_tracking_uri(), local_dir)


def model_slug(model_uri: str, found: tuple[str, str] | None) -> str:
    """A folder name for a model: ``<name>-v<N>`` for a registry version (``found``), else the URI made safe."""
    return f"{found[0]}-v{found[1]}" if found else re.sub(r"[^A-Za-z0-9._-]+", "_", model_uri).strip("_")[-80:]


def plan_chunks(paths: list[str], speakers: list[str] | None = None, size: int = CHUNK_FILES) -> list[list[int]]:
    """Positions of ``paths`` per chunk: ``size`` files in order, or a speaker's files together.

    Args:
        paths: the files.
        speakers: ``(len(paths),)`` speaker of each file (``""``: unknown), or ``None``.
        size: files per chunk (a speaker with more files gets a chunk of its own, whole).

    Returns:
        Lists of positions into ``paths``; every position once.
    """
    from ser_tasks.serve.predict import speaker_batches

    if speakers is None:
        return [list(range(i, min(i + size, len(paths)))) for i in range(0, len(paths), size)]
    return speaker_batches(list(speakers), size)


def chunk_name(paths: list[str]) -> str:
    """``part-<sha1 of the chunk's paths>.parquet``: the same chunk gets the same name on a re-run."""
    return f"part-{hashlib.sha1(chr(0).join(paths).encode()).hexdigest()[:20]}.parquet"


def model_folder(out_url: str, ref: ModelRef) -> str:
    """The folder of ``ref``'s rows in the dataset at ``out_url``."""
    return f"{out_url.rstrip('/')}/model={ref.slug}"


def prepare_output(out_url: str, ref: ModelRef, params: dict, storage_options: dict | None = None) -> None:
    """Create the model's folder and its ``_params.json``, or check a resumed one was made the same way.

    Raises:
        InputError: the folder holds rows made with other parameters (per window against per file,
            other windows): mixing them would give a table that means nothing.
    """
    folder = model_folder(out_url, ref)
    fs, path = fsspec.core.url_to_fs(folder, **fs_options(folder, storage_options))
    fs.makedirs(path, exist_ok=True)
    meta = posixpath.join(path, PARAMS_FILE)
    wanted = {"model_uri": ref.uri, "params": params}
    if fs.exists(meta):
        with fs.open(meta, "rt") as fh:
            found = json.load(fh)
        if found != wanted:
            raise InputError(f"{out_url}: its rows for {ref.slug} were made with {found['params']}, not {params}; "
                             "write to another output folder")
        return
    with fs.open(meta, "wt") as fh:
        json.dump(wanted, fh)


def done_paths(out_url: str, ref: ModelRef, storage_options: dict | None = None) -> set[str]:
    """Files that already have rows for ``ref`` in the dataset at ``out_url`` (empty when none)."""
    import pyarrow.parquet as pq

    folder = model_folder(out_url, ref)
    fs, path = fsspec.core.url_to_fs(folder, **fs_options(folder, storage_options))
    if not fs.exists(path):
        return set()
    done: set[str] = set()
    for part in fs.glob(posixpath.join(path, "part-*.parquet")):
        with fs.open(part, "rb") as fh:
            done.update(pq.read_table(fh, columns=["path"]).column("path").to_pylist())
    return done


#: Models loaded in this process (a worker scores many chunks with one model), by URI.
_LOADED: dict[str, object] = {}


def _model(ref: ModelRef, roots: list[str]):
    """The pyfunc of ``ref`` in this process, loaded once (from ``ref.local_dir`` when it is here)."""
    import mlflow

    from ser_tasks.serve.predict import opened_by_caller

    key = f"{ref.uri}|{'|'.join(sorted(roots))}"
    if key not in _LOADED:
        source = ref.local_dir if ref.local_dir and os.path.isdir(ref.local_dir) else ref.uri
        if source == ref.uri:
            mlflow.set_tracking_uri(ref.tracking_uri)
        _LOADED.clear()  # one model per worker at a time: they are large
        _LOADED[key] = mlflow.pyfunc.load_model(source, model_config=opened_by_caller(roots))
    return _LOADED[key]


def score_chunk(ref: ModelRef, paths: list[str], speakers: list[str] | None, params: dict, out_url: str,
                roots: list[str], storage_options: dict | None = None, threads: int | None = None) -> dict:
    """Score one chunk of files and write its rows as one Parquet file (on a Dask worker, or here).

    Args:
        ref: the model (:func:`resolve_model`).
        paths: the chunk's files (local paths or fsspec URLs).
        speakers: their speakers (``""``: unknown) for a speaker-normalised model, or ``None``.
        params: prediction parameters (:class:`ser_tasks.serve.predict.EmotionModel`).
        out_url: the dataset folder (:func:`model_folder` of it receives the file).
        roots: the folders and prefixes the user gave (the model may open files under them).
        storage_options: fsspec options for remote files and a remote ``out_url``.
        threads: TensorFlow threads of this process (one per Dask worker core), or ``None``.

    Returns:
        ``{"files", "rows", "failed", "part"}``.
    """
    from ser_tasks.learn.jobs import limit_threads
    from ser_tasks.serve.predict import predict_files

    limit_threads(threads)
    model = _model(ref, roots)
    out = predict_files(model, paths, params, storage_options, batch=len(paths), speakers=speakers)
    out.insert(1, "model_uri", ref.uri)
    name = chunk_name(paths)
    folder = model_folder(out_url, ref)
    fs, path = fsspec.core.url_to_fs(folder, **fs_options(folder, storage_options))
    target = posixpath.join(path, name)
    if fs.protocol in ("file", "local") or "file" in fs.protocol:
        tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
        out.to_parquet(tmp, index=False)
        os.replace(tmp, target)  # whole or not at all: a killed task leaves only a .tmp, never read
    else:
        with fs.open(target, "wb") as fh:  # one upload, visible when complete
            out.to_parquet(fh, index=False)
    failed = out.drop_duplicates("path")["error"].ne("").sum()
    return {"files": len(paths), "rows": len(out), "failed": int(failed), "part": name}


def read_predictions(out_url: str, ref: ModelRef, storage_options: dict | None = None,
                     paths: list[str] | None = None) -> pd.DataFrame:
    """The rows of ``ref`` in the dataset at ``out_url``, in the order of ``paths`` (or by path).

    Per-window rows keep their time order within a file.
    """
    folder = model_folder(out_url, ref)
    fs, path = fsspec.core.url_to_fs(folder, **fs_options(folder, storage_options))
    parts = sorted(fs.glob(posixpath.join(path, "part-*.parquet")))
    frames = []
    for part in parts:
        with fs.open(part, "rb") as fh:
            frames.append(pd.read_parquet(fh))
    if not frames:
        return pd.DataFrame({"path": []})
    out = pd.concat(frames, ignore_index=True)
    if paths is not None:
        order = {p: i for i, p in enumerate(paths)}
        out = out[out["path"].isin(order)]
        key = out["path"].map(order)
    else:
        key = out["path"]
    by = ["_k", "start"] if "start" in out else ["_k"]
    return out.assign(_k=key).sort_values(by, kind="stable").drop(columns="_k").reset_index(drop=True)


def pending(paths: list[str], speakers: list[str] | None, done: set[str]) -> tuple[list[str], list[str] | None]:
    """``paths`` (and their ``speakers``) without the files in ``done``."""
    keep = [i for i, p in enumerate(paths) if p not in done]
    return [paths[i] for i in keep], (None if speakers is None else [speakers[i] for i in keep])


def run_batch(ref: ModelRef, paths: list[str], params: dict, out_url: str, roots: list[str],
              speakers: list[str] | None = None, storage_options: dict | None = None, client=None,
              threads: int | None = None, chunk_files: int = CHUNK_FILES, on_start=None, on_done=None) -> dict:
    """Score every file of ``paths`` that has no rows yet for ``ref`` at ``out_url``.

    Args:
        ref: the model (:func:`resolve_model`).
        paths: the files, local paths or fsspec URLs.
        params: prediction parameters (:class:`ser_tasks.serve.predict.EmotionModel`).
        out_url: the Parquet dataset folder, local or remote.
        roots: what the user gave (folders, files, prefixes): the model may open files under them.
        speakers: speaker of each file (``""``: unknown), or ``None``: see :func:`plan_chunks`.
        storage_options: fsspec options for the files and the output.
        client: a ``distributed.Client``: one task per chunk on its workers; ``None``: here, in turn.
        threads: TensorFlow threads per task's process (a worker's cores).
        chunk_files: files per chunk.
        on_start: called once with the number of files to score (after the resume's skip).
        on_done: called with the number of files of each chunk done.

    Returns:
        ``{"files" (asked), "skipped" (already scored), "scored", "failed", "chunks", "out"}``.

    Raises:
        InputError: ``out_url`` holds rows of ``ref`` made with other parameters.
    """
    prepare_output(out_url, ref, params, storage_options)
    done = done_paths(out_url, ref, storage_options)
    todo, todo_speakers = pending(paths, speakers, done)
    if on_start is not None:
        on_start(len(todo))
    chunks = plan_chunks(todo, todo_speakers, chunk_files)
    args = [([todo[i] for i in c], None if todo_speakers is None else [todo_speakers[i] for i in c]) for c in chunks]
    results = []
    if client is None:
        for chunk, spk in args:
            results.append(score_chunk(ref, chunk, spk, params, out_url, roots, storage_options, threads))
            if on_done is not None:
                on_done(results[-1]["files"])
    else:
        from distributed import as_completed

        futures = [client.submit(score_chunk, ref, chunk, spk, params, out_url, roots, storage_options, threads,
                                 key=f"score-{chunk_name(chunk)[5:-8]}", pure=False, retries=1)
                   for chunk, spk in args]
        for future in as_completed(futures):
            results.append(future.result())
            if on_done is not None:
                on_done(results[-1]["files"])
    return {"files": len(paths), "skipped": len(paths) - len(todo), "scored": sum(r["files"] for r in results),
            "failed": sum(r["failed"] for r in results), "chunks": len(results), "out": model_folder(out_url, ref)}


@contextlib.contextmanager
def batch_client(address: str | None = None, workers: int = 2):
    """A ``distributed.Client``: of the scheduler at ``address``, or of a fresh LocalCluster.

    The LocalCluster has ``workers`` single-threaded processes (spawned: each imports TensorFlow when
    its first chunk loads the model, so none inherits another's threads); it is closed on exit. A
    cluster given by address is left running.
    """
    from distributed import Client, LocalCluster

    if address:
        with Client(address) as client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


def corpus_normalised(model_dir: str | None) -> bool:
    """Whether the pyfunc model downloaded to ``model_dir`` was trained with ``train.corpus_norm``.

    Read from its ``preprocessing.json`` artifact (:class:`ser_tasks.serve.predict.Preprocessing`); ``False``
    when there is none (not this project's model, or no folder).
    """
    if model_dir is None:
        return False
    found = sorted(Path(model_dir).glob("**/preprocessing.json"))
    return bool(found) and bool(json.loads(found[0].read_text()).get("corpus_norm", False))


def predict_batch(model_uri: str, paths: list[str], params: dict, out_url: str, roots: list[str],
                  speakers: list[str] | None = None, storage_options: dict | None = None,
                  dask_address: str | None = None, workers: int = 2, chunk_files: int | None = None,
                  on_start=None, on_done=None) -> tuple[dict, ModelRef]:
    """Score ``paths`` with ``model_uri`` into the Parquet dataset ``out_url``, resuming what is there.

    One chunk's work is done here, without a cluster; more go to :func:`batch_client`'s workers
    (one TensorFlow thread each). The model is downloaded once for workers on this machine; a
    cluster given by address downloads it on each worker. A model trained with
    ``train.corpus_norm`` normalises the files of one call together, so its files (those not
    scored yet) go in one chunk, whatever ``speakers`` and ``chunk_files`` say. See
    :func:`run_batch` for the arguments.

    Returns:
        ``(summary, ref)``: :func:`run_batch`'s summary and the pinned :class:`ModelRef` (for
        :func:`read_predictions`).
    """
    size = chunk_files or CHUNK_FILES
    with tempfile.TemporaryDirectory(prefix="ser-model-") as tmp:
        ref = resolve_model(model_uri, tmp)
        if corpus_normalised(ref.local_dir):  # one population: one call of the model
            speakers = ["all"] * len(paths)
        if dask_address:  # the workers are elsewhere: each downloads the model itself
            ref = ModelRef(ref.uri, ref.slug, ref.tracking_uri)
        todo = len(paths) - len(done_paths(out_url, ref, storage_options))
        if not dask_address and (workers <= 1 or todo <= size):
            summary = run_batch(ref, paths, params, out_url, roots, speakers, storage_options, None, None,
                                size, on_start, on_done)
        else:
            with batch_client(dask_address, workers) as client:
                summary = run_batch(ref, paths, params, out_url, roots, speakers, storage_options, client, 1,
                                    size, on_start, on_done)
    return summary, ModelRef(ref.uri, ref.slug, ref.tracking_uri)
