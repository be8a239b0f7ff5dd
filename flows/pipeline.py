"""Flow ``ser_pipeline``: extract features, then train and evaluate, under one MLflow run."""

from __future__ import annotations

import time

import mlflow
from prefect import flow

from flows.extract import extract_features, extraction_runner, roots_text, training_placed
from flows.train import train_model
from ser_tasks.config import PipelineConfig
from ser_tasks.learn import tracking


@flow(name="ser_pipeline", log_prints=True)
def ser_pipeline(root: str | list[str], store_url: str, config: PipelineConfig | None = None, corpus: str | None = None,
                 mlflow_uri: str | None = None, dask_address: str | None = None,
                 storage_options: dict | None = None, crema_demographics: str | None = None,
                 out_dir: str | None = None, show_progress: bool = True, verbose: int = 2) -> dict:
    """Corpus -> Zarr features (Dask) -> Keras model -> test scores, all in one MLflow run.

    Returns:
        ``{"extract": <extract_features summary>, "train": <train_model summary>, "seconds",
        "mlflow_run_id", "model_name", "model_version", "ua", "wa", "macro_f1"}``.
    """
    t0 = time.perf_counter()
    cfg = PipelineConfig.model_validate(config or {})
    tracking.setup(mlflow_uri, cfg.tracking.experiment)
    runner = extraction_runner(cfg, dask_address)
    with mlflow.start_run(run_name=f"{cfg.train.model}", tags={"stage": "pipeline", "root": roots_text(root)}) as run:
        mlflow.log_params(cfg.flat_params())
        extracted = extract_features.with_options(task_runner=runner)(
            root, store_url, cfg, corpus, storage_options, crema_demographics, show_progress)
        trained = training_placed(train_model, cfg, dask_address)(
            store_url, cfg, extracted["group"], mlflow_uri, run.info.run_id, storage_options, out_dir, verbose)
        seconds = time.perf_counter() - t0
        mlflow.log_metric("pipeline_seconds", seconds)
    return {"extract": extracted, "train": trained, "seconds": round(seconds, 3),
            "mlflow_run_id": run.info.run_id, "model_name": trained["model_name"],
            "model_version": trained["model_version"], "ua": trained["ua"], "wa": trained["wa"],
            "macro_f1": trained["macro_f1"]}
