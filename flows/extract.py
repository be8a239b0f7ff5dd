"""Flow ``extract_features``: corpus root -> manifest -> actor-disjoint split -> Zarr features.

``ser_extract`` runs it in an MLflow run of its own (``ser extract``).

Runs of adjacent pending Zarr chunks (``extract.chunks_per_task`` of them, 256 rows by default; not
one task per file: NOTES.md measured about 100 ms per Dask task, and a Prefect task run costs about
0.4 CPU-seconds more) are mapped over a ``DaskTaskRunner``: a LocalCluster of worker processes by
default, or an existing scheduler given by address.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect_dask import DaskTaskRunner
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flows.engine import forkserver
from ser_tasks.config import ManifestConfig, PipelineConfig
from ser_tasks.remote import redact_url
from ser_tasks.runtime.worker_setup import WARM_UP_ENV, WARM_UP_MODES, warm_up_for
from ser_tasks.store.extraction import extraction_summary, log_extraction, process_region
from ser_tasks.store.lease import WriterLease
from ser_tasks.store.zarr_store import FeatureStore, group_name

if TYPE_CHECKING:
    from ser_tasks.corpus.manifest import Manifest

# The manifest, the split and the row plan (pandas) are imported where the flow uses them: every
# extraction worker imports this module (Prefect ships the flow run's context, which names the
# flow, with each task) and would otherwise pay pandas' 0.2 s import for nothing.


def dask_runner(address: str | None = None, workers: int = 2, threads_per_worker: int = 1,
                warm_up: str = "augment") -> DaskTaskRunner:
    """A Dask task runner: the scheduler at ``address``, or a LocalCluster of worker processes.

    The LocalCluster's workers are forked from a warmed-up server (:mod:`flows.engine.forkserver`,
    started here unless running), and preload :mod:`ser_tasks.runtime.worker_setup`, which warms up
    whatever that server did not; workers of a cluster given by address are started by their owner
    (``dask worker --preload ser_tasks.runtime.worker_setup`` does the same there).

    Args:
        address: a Dask scheduler's address, or ``None`` for a LocalCluster.
        workers: LocalCluster worker processes.
        threads_per_worker: threads per LocalCluster worker.
        warm_up: what the LocalCluster's workers warm up for (their ``SER_WARM_UP``):
            ``augment``, ``features`` (no augmented copies) or ``none`` (training only).

    Raises:
        ValueError: ``warm_up`` is not one of those.
    """
    if warm_up not in WARM_UP_MODES:
        raise ValueError(f"warm_up {warm_up!r} is not one of {', '.join(WARM_UP_MODES)}")
    if address:
        return DaskTaskRunner(address=address)
    forkserver.start(warm_up)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": workers, "threads_per_worker": threads_per_worker,
                                          "processes": True, "dashboard_address": None,
                                          "preload": ["ser_tasks.runtime.worker_setup"],
                                          "env": {**forkserver.worker_env(), WARM_UP_ENV: warm_up}})


def extraction_runner(cfg: PipelineConfig, address: str | None = None) -> DaskTaskRunner:
    """:func:`dask_runner` for ``cfg``'s extraction: its workers and threads per worker.

    Its workers warm up without augmentation when ``cfg.augment.variants`` is 0.
    """
    return dask_runner(address, cfg.extract.workers, cfg.extract.threads_per_worker, warm_up_for(cfg))


def training_placed(training_flow, cfg: PipelineConfig, address: str | None = None):
    """``training_flow`` as the configuration places it: on a Dask runner of its own with ``train.where: cluster``.

    The runner is the cluster at ``address``, or a fresh LocalCluster of ``extract.workers``
    processes (the extraction's is closed by then); otherwise the flow runs as it is, in this process.
    """
    if cfg.train.where != "cluster":
        return training_flow
    return training_flow.with_options(task_runner=dask_runner(address, cfg.extract.workers,
                                                              cfg.extract.threads_per_worker, warm_up="none"))


@task(name="build-manifest", cache_policy=NO_CACHE)
def manifest_task(root: str | list[str], corpus: str | None, storage_options: dict | None,
                  crema_demographics: str | None, config: ManifestConfig | None = None) -> Manifest:
    """:func:`ser_tasks.corpus.manifest.build_manifest` as a task (runs in the flow's process)."""
    from ser_tasks.corpus.manifest import build_manifest

    return build_manifest(root, corpus, storage_options, crema_demographics, config)


@task(name="extract-batch", cache_policy=NO_CACHE, task_run_name="rows-{start}-{stop}")
def extract_batch(url: str, group: str, start: int, stop: int, storage_options: dict | None = None) -> dict:
    """:func:`ser_tasks.store.extraction.process_region` on a worker (whole chunks); retried on store errors."""
    return process_region(url, group, start, stop, storage_options)


@flow(name="extract_features", log_prints=True)
def extract_features(root: str | list[str], store_url: str, config: PipelineConfig | None = None,
                     corpus: str | None = None,
                     storage_options: dict | None = None, crema_demographics: str | None = None,
                     show_progress: bool = True) -> dict:
    """Extract features of every clip under ``root`` into ``store_url``; resumable.

    Args:
        root: corpus folder or fsspec URL, or several; ``NAME=PATH`` names a root's corpus, and each
            top-level subfolder of an unnamed root is detected on its own.
        store_url: Zarr store path or URL.
        config: the pipeline settings (a dict is validated into one; defaults when ``None``).
        corpus: corpus name, or ``None`` to detect.
        storage_options: fsspec options for remote roots and stores (never logged).
        crema_demographics: CREMA-D ``VideoDemographics.csv`` for the speakers' sex.
        show_progress: show a progress bar of the extraction tasks on the console.

    Returns:
        Summary: ``clips``, ``skipped``, ``rows``, ``computed_rows``, ``failed_rows``, ``failures``
        (list of {path, clip_id, variant, reason}), ``seconds``, ``clips_per_second``,
        ``rows_per_second``, ``store``, ``group``, ``manifest_fingerprint``, ``corpus``; when an MLflow
        run is active, the manifest, skipped files, split and failures are logged to it.
    """
    from ser_tasks.corpus.split import assign_split, split_table
    from ser_tasks.store.plan import plan_rows, planned_splits

    logger = get_run_logger()
    t0 = time.perf_counter()
    cfg = PipelineConfig.model_validate(config or {})
    manifest = manifest_task(root, corpus, storage_options, crema_demographics, cfg.manifest)
    # One writer per group, from reading its planned splits to finalising it (ser_tasks.store.lease).
    lease = WriterLease(store_url, group_name(cfg), storage_options, cfg.extract.lease_seconds,
                        cfg.extract.lease_wait_seconds,
                        on_wait=lambda held: logger.warning(
                            "store group %s is being written by %s (lease expires at %s): waiting up to %.0f s",
                            group_name(cfg), held.get("owner"), held.get("expires_at"),
                            cfg.extract.lease_wait_seconds))
    with lease:
        # Speakers already in the store keep their side, so a grown corpus only appends rows.
        fixed = planned_splits(store_url, cfg, storage_options)
        manifest.clips, notes = assign_split(manifest.clips, cfg.split, fixed=fixed)
        manifest.notes += notes
        for note in manifest.notes:
            logger.info(note)
        logger.info("%s: %d clips, %d skipped, %d speakers", manifest.corpus, len(manifest.clips),
                    len(manifest.skipped), manifest.clips["speaker"].nunique())
        plan = plan_rows(manifest.clips, cfg, params=False)  # drawn for the rows written only
        store = FeatureStore.create_or_resume(
            store_url, cfg, plan, storage_options=storage_options,
            attrs={"corpus": manifest.corpus, "manifest_fingerprint": manifest.fingerprint(), "split_notes": notes,
                   "speakers": split_table(manifest.clips).astype({"split": str}).to_dict("records")})
        pending = store.task_regions(cfg.extract.chunks_per_task)
        rows_total = int(store.open().attrs["rows"])
        b = cfg.extract.batch_rows  # tasks start on chunk boundaries: count their chunks without another status read
        logger.info("store %s group %s: %d rows (%d appended now), %d tasks over %d of %d chunks to compute",
                    redact_url(store_url), store.group, rows_total, store.appended_rows, len(pending),
                    sum(-(-(e - s) // b) for s, e in pending), -(-rows_total // b))

        results = []
        if pending:
            batch = extract_batch.with_options(retries=cfg.extract.retries, retry_delay_seconds=2)
            futures = [batch.submit(store.url, store.group, s, e, storage_options) for s, e in pending]
            with Progress(TextColumn("extracting"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"),
                          TimeElapsedColumn(), disable=not show_progress) as progress:
                bar = progress.add_task("extract", total=len(futures))
                for fut in as_completed(futures):
                    results.append(fut.result())
                    progress.advance(bar)
        lease.check()  # a writer presumed dead (its lease broken by another) must not commit
        written = store.view()  # after the last write: status read once, for the counts and the failures
        store.finalize({"manifest_fingerprint": manifest.fingerprint()}, written.counts())
        failures = written.failures()
    summary = extraction_summary(manifest, store, results, failures, rows_total, cfg.augment.variants,
                                 time.perf_counter() - t0)
    logger.info("extracted %d rows (%d clips) in %.1f s: %.1f clips/s, %d failed rows", summary["computed_rows"],
                summary["computed_clips"], summary["seconds"], summary["clips_per_second"], len(failures))
    # No MLflow run can be active unless something imported mlflow: importing it only to ask would
    # cost the flow 1.5 s (measured), serial time that no worker can share. Workers import this
    # module too and need neither MLflow nor Keras.
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and mlflow.active_run() is not None:
        log_extraction(manifest, failures, summary)
    return summary



def roots_text(root: str | list[str]) -> str:
    """The corpus roots of a run as one string (the MLflow tag ``root``)."""
    return root if isinstance(root, str) else " ".join(root)


@flow(name="ser_extract", log_prints=True)
def ser_extract(root: str | list[str], store_url: str, config: PipelineConfig | None = None, corpus: str | None = None,
                mlflow_uri: str | None = None, dask_address: str | None = None,
                storage_options: dict | None = None, crema_demographics: str | None = None,
                show_progress: bool = True) -> dict:
    """:func:`extract_features` on a Dask runner in an MLflow run of its own (``ser extract``).

    As :func:`flows.pipeline.ser_pipeline` does for the whole pipeline, the flow, not its caller,
    opens the run (tag ``stage: extract``) and logs the settings; the extraction logs the manifest,
    split and failures to it. The parameters are :func:`extract_features`'s, with ``mlflow_uri`` (default
    ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``) and ``dask_address`` (an existing Dask
    scheduler; a LocalCluster of ``extract.workers`` when ``None``).

    Returns:
        :func:`extract_features`'s summary with ``mlflow_run_id``.
    """
    import mlflow  # here, not at the top: every extraction worker imports this module (see above)

    from ser_tasks.learn import tracking

    cfg = PipelineConfig.model_validate(config or {})
    tracking.setup(mlflow_uri, cfg.tracking.experiment)
    runner = extraction_runner(cfg, dask_address)
    with mlflow.start_run(run_name="extract", tags={"stage": "extract", "root": roots_text(root)}) as run:
        mlflow.log_params(cfg.flat_params())
        summary = extract_features.with_options(task_runner=runner)(root, store_url, cfg, corpus, storage_options,
                                                                     crema_demographics, show_progress)
    return {**summary, "mlflow_run_id": run.info.run_id}
