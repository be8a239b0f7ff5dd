"""Flow ``train_model``: Zarr store -> Keras model (zoo) -> test-speaker scores -> MLflow.

Training and evaluation run in the flow's own process (one model, GPU when TensorFlow sees one);
the tasks hand each other file paths, never models.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import mlflow
import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ser_tasks.config import PipelineConfig
from ser_tasks.learn import tracking
from ser_tasks.learn.jobs import TrainJob, fetch_fit, outputs_url_for, placement, run_job
from ser_tasks.learn.training import FitResult, fit, score_split, split_scores
from ser_tasks.serve import registry
from ser_tasks.store.zarr_store import FeatureStore, StoreView


@task(name="fit-model", cache_policy=NO_CACHE)
def fit_task(view: StoreView, config: PipelineConfig, out_dir: Path) -> FitResult:
    """:func:`ser_tasks.learn.training.fit`, logging each epoch to the active MLflow run."""
    return fit(view, config.train, out_dir, extra_callbacks=[tracking.epoch_logger()])


@task(name="evaluate-model", cache_policy=NO_CACHE)
def evaluate_task(view: StoreView, model_path: Path, out_dir: Path) -> dict:
    """:func:`ser_tasks.learn.training.score_split` on the test speakers."""
    return score_split(view, model_path, out_dir, "test")


@task(name="train-job", cache_policy=NO_CACHE, task_run_name="{job.name}")
def train_job_task(job: TrainJob) -> dict:
    """:func:`ser_tasks.learn.jobs.run_job` on whichever Dask worker takes it (resource annotations apply)."""
    return run_job(job)


def local_threads(cfg: PipelineConfig) -> int:
    """Threads per training task on a LocalCluster: the machine's cores shared among its workers."""
    return max(1, (os.cpu_count() or 1) // cfg.extract.workers)


def cluster_fit(view: StoreView, cfg: PipelineConfig, out: Path) -> tuple[FitResult, dict]:
    """Fit and score the test speakers as one task on the Dask cluster; fetch the model; log the epochs.

    Returns:
        The fit (model and normaliser fetched into ``out``) and :func:`ser_tasks.learn.training.split_scores`
        of the test speakers.
    """
    rows = {s: view.rows(s, originals_only=s != "train") for s in ("train", "val", "test")}
    job = TrainJob(view, rows["train"], rows["test"], cfg.train, outputs_url_for(view.store.url, "train"),
                   val=rows["val"], threads=cfg.train.threads or local_threads(cfg), name=f"train-{cfg.train.model}")
    with placement(cfg.train.resources):
        future = train_job_task.submit(job)
    res = future.result()
    fitted = fetch_fit(res, out, view.store.storage_options, int(rows["test"].size))
    tracking.log_history(res["history"])
    mlflow.log_params({"train_worker": f"{res['host']}:{res['pid']}", "train_threads": res["threads"] or "-"})
    return fitted, split_scores(view, rows["test"], np.array(res["y_true"]), np.array(res["y_pred"]), out)


@task(name="log-model", cache_policy=NO_CACHE)
def log_model_task(fit_result: FitResult, config: PipelineConfig, vocabulary: list[str], scores: dict,
                   tags: dict) -> dict:
    """:func:`ser_tasks.serve.registry.register_model`: the raw-audio model, a new version, its alias."""
    return registry.register_model(fit_result.model_path, fit_result.normalizer_path, config, vocabulary, scores,
                                   tags)


@contextlib.contextmanager
def _run(run_id: str | None, run_name: str, tags: dict):
    """The active MLflow run: ``run_id``'s (resumed if it is not the active one), else a new run."""
    active = mlflow.active_run()
    if active is not None and (run_id is None or active.info.run_id == run_id):
        yield active
    else:
        with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name, tags=tags) as run:
            yield run


@flow(name="train_model", log_prints=True)
def train_model(store_url: str, config: PipelineConfig | None = None, group: str | None = None,
                mlflow_uri: str | None = None, run_id: str | None = None, storage_options: dict | None = None,
                out_dir: str | None = None, verbose: int = 2) -> dict:
    """Train, evaluate on the test speakers, and log everything to MLflow.

    Args:
        store_url: Zarr store path or URL written by ``extract_features``.
        config: the pipeline settings (a dict is validated into one); its ``train``, ``tracking``,
            ``audio`` and ``features`` sections are used here.
        group: the store's extraction group; the only one when ``None``.
        mlflow_uri: tracking URI (default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``).
        run_id: MLflow run to log into (the parent pipeline's); a new run when ``None``.
        storage_options: fsspec options for a remote store.
        out_dir: where the model, normaliser and plots are written (a temporary folder if ``None``).
        verbose: Keras ``fit`` verbosity (0 silent, 1 progress bar, 2 one line per epoch).

    Returns:
        ``{"ua", "wa", "macro_f1", "test_clips", "best_epoch", "epochs", "train_seconds", "device",
        "mlflow_run_id", "model_name", "model_version", "rows"}``.
    """
    logger = get_run_logger()
    cfg = PipelineConfig.model_validate(config or {})
    store = FeatureStore.locate(store_url, group, storage_options)
    view = store.view()  # the group opened once; each label array read once, by whichever step needs it first
    attrs = view.attrs
    tracking.setup(mlflow_uri, cfg.tracking.experiment)
    out = Path(out_dir or tempfile.mkdtemp(prefix="ser-train-"))
    out.mkdir(parents=True, exist_ok=True)
    tags = tracking.training_tags(store.url, store.group, attrs)
    with _run(run_id, f"train-{cfg.train.model}", tags) as run:
        mlflow.set_tags(tags)
        tracking.log_training_inputs(run.info.run_id, cfg.flat_params(), attrs["speakers"])
        if cfg.train.where == "cluster":
            fit_result, result = cluster_fit(view, cfg, out)
            tracking.log_training(fit_result, attrs["vocabulary"], out)
        else:
            fit_result = fit_task(view, cfg, out)
            tracking.log_training(fit_result, attrs["vocabulary"], out)
            result = evaluate_task(view, fit_result.model_path, out)
        tracking.log_test_scores(result)
        registered = log_model_task(fit_result, cfg, result["vocabulary"], result, tags)
        logger.info("test speakers: UA %.3f  WA %.3f  macro-F1 %.3f  (%d clips); model %s v%d; run %s",
                    result["ua"], result["wa"], result["macro_f1"], result["n"], registered["model_name"],
                    registered["model_version"], run.info.run_id)
        for corpus, s in result.get("per_corpus", {}).items():
            logger.info("  %s test speakers: UA %.3f  WA %.3f  macro-F1 %.3f  (%d clips)", corpus, s["ua"], s["wa"],
                        s["macro_f1"], s["n"])
        logger.info("model %s v%d is %s: %s", registered["model_name"], registered["model_version"],
                    registered["alias"], registered["promotion"])
        return {"ua": result["ua"], "wa": result["wa"], "macro_f1": result["macro_f1"], "test_clips": result["n"],
                "best_epoch": fit_result.best_epoch, "epochs": len(fit_result.history.get("loss", [])),
                "train_seconds": round(fit_result.seconds, 3), "device": fit_result.device,
                "rows": fit_result.rows, "mlflow_run_id": run.info.run_id, **registered,
                "per_corpus": result.get("per_corpus", {}),
                "out_dir": str(out)}
