"""Flow ``ser_sweep``: one store group, a grid of training settings, one MLflow child run per combination.

The combinations train as parallel tasks on the Dask cluster with ``train.where: cluster``, else
one after another in this process (:mod:`ser_tasks.learn.jobs` either way). Each child run holds the
combination's parameters, every epoch's metrics, its validation UA at the last epoch
(``val_ua_final``) and its test-speaker scores, so ``ser compare`` lists them side by side. Choose
among them on validation UA: the test speakers are for reporting the choice once.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import mlflow
from prefect import flow, get_run_logger
from prefect.futures import as_completed

from flows.extract import extract_features, extraction_runner, training_placed
from flows.train import local_threads, train_job_task
from ser_tasks.config import PipelineConfig
from ser_tasks.learn import tracking
from ser_tasks.learn.grid import expand
from ser_tasks.learn.jobs import TrainJob, fetch_fit, outputs_url_for, placement, run_job
from ser_tasks.learn.training import split_scores
from ser_tasks.store.zarr_store import FeatureStore


@flow(name="sweep_trainings", log_prints=True)
def sweep_trainings(store_url: str, grid: dict[str, list], config: PipelineConfig | None = None,
                    group: str | None = None, mlflow_uri: str | None = None, storage_options: dict | None = None,
                    out_dir: str | None = None) -> dict:
    """Train every combination of ``grid`` on one store group, each logged to a child of one parent run.

    Returns:
        ``{"combinations": [{"name", "val_ua", "ua", "wa", "macro_f1", "seconds", "mlflow_run_id"}, ...]
        (grid order), "mlflow_run_id" (the parent), "seconds"}``.

    Raises:
        InputError: a grid key outside ``train.``; ValueError: a combination that fails validation.
    """
    logger = get_run_logger()
    t0 = time.perf_counter()
    cfg = PipelineConfig.model_validate(config or {})
    combos = expand(cfg, grid)
    store = FeatureStore.locate(store_url, group, storage_options)
    view = store.view()
    rows = {s: view.rows(s, originals_only=s != "train") for s in ("train", "val", "test")}
    tracking.setup(mlflow_uri, cfg.tracking.experiment)
    out = Path(out_dir or tempfile.mkdtemp(prefix="ser-sweep-"))
    tags = tracking.training_tags(store.url, store.group, view.attrs)
    threads = cfg.train.threads or local_threads(cfg)
    jobs = [TrainJob(view, rows["train"], rows["test"], c.train, outputs_url_for(store.url, f"sweep{i}"),
                     val=rows["val"], threads=threads, name=name) for i, (name, c) in enumerate(combos)]
    results: list[dict] = []
    with mlflow.start_run(run_name="sweep", nested=mlflow.active_run() is not None,
                          tags={**tags, "stage": "sweep", "grid": repr(grid)}) as parent:
        mlflow.log_params(cfg.flat_params())
        if cfg.train.where == "cluster":
            with placement(cfg.train.resources):
                futures = {train_job_task.submit(job): i for i, job in enumerate(jobs)}
            finished = ((futures[f], f.result()) for f in as_completed(list(futures)))
        else:
            finished = ((i, run_job(job)) for i, job in enumerate(jobs))
        for i, res in finished:
            name, combo_cfg = combos[i]
            combo_dir = out / f"combination{i + 1}"
            fitted = fetch_fit(res, combo_dir, storage_options, int(rows["test"].size))
            scores = split_scores(view, rows["test"], res["y_true"], res["y_pred"], combo_dir)
            val_ua = res["history"].get("val_ua", [float("nan")])[-1]
            with mlflow.start_run(run_name=name, nested=True, tags={**tags, "stage": "sweep", "sweep": name}) as run:
                mlflow.log_params({**combo_cfg.flat_params(), "train_worker": f"{res['host']}:{res['pid']}",
                                   "train_threads": res["threads"] or "-"})
                tracking.log_history(res["history"])
                tracking.log_training(fitted, view.vocabulary, combo_dir)
                tracking.log_test_scores(scores)
                mlflow.log_metric("val_ua_final", val_ua)
            logger.info("%s: val UA %.3f, test UA %.3f (%.0f s)", name, val_ua, scores["ua"], res["seconds"])
            results.append({"index": i, "name": name, "val_ua": val_ua, "ua": scores["ua"], "wa": scores["wa"],
                            "macro_f1": scores["macro_f1"], "seconds": round(res["seconds"], 1),
                            "mlflow_run_id": run.info.run_id})
        seconds = time.perf_counter() - t0
        mlflow.log_metric("sweep_seconds", seconds)
    results.sort(key=lambda r: r.pop("index"))
    return {"combinations": results, "mlflow_run_id": parent.info.run_id, "seconds": round(seconds, 1)}


@flow(name="ser_sweep", log_prints=True)
def ser_sweep(root: str | list[str], store_url: str, grid: dict[str, list], config: PipelineConfig | None = None,
              corpus: str | None = None, mlflow_uri: str | None = None, dask_address: str | None = None,
              storage_options: dict | None = None, crema_demographics: str | None = None,
              out_dir: str | None = None) -> dict:
    """Corpora -> Zarr features (the actor-disjoint split; resumable) -> :func:`sweep_trainings`.

    Returns:
        ``{"extract": <extract_features summary>, "sweep": <sweep_trainings result>, "seconds"}``.
    """
    t0 = time.perf_counter()
    cfg = PipelineConfig.model_validate(config or {})
    expand(cfg, grid)  # a bad grid fails before minutes of extraction
    runner = extraction_runner(cfg, dask_address)
    extracted = extract_features.with_options(task_runner=runner)(
        root, store_url, cfg, corpus, storage_options, crema_demographics, False)
    result = training_placed(sweep_trainings, cfg, dask_address)(
        store_url, grid, cfg, extracted["group"], mlflow_uri, storage_options, out_dir)
    return {"extract": extracted, "sweep": result, "seconds": round(time.perf_counter() - t0, 1)}
