"""Scheduled deployments of ``ser_pipeline`` on a Prefect server, served by this process.

``ser deploy`` builds a :class:`prefect.deployments.runner.RunnerDeployment` of the pipeline flow
with a cron schedule and fixed parameters, registers it on the server ``PREFECT_API_URL`` points
at, and runs the flow runs the server schedules (or that are triggered from the UI/API) in
subprocesses until stopped. Each scheduled run is incremental: extraction appends only the files
the corpus root gained since the last run (see :meth:`ser_tasks.store.zarr_store.FeatureStore.create_or_resume`),
then the model is retrained and a new version registered.

Deployment parameters are stored by the Prefect server in clear, so credentials must not be among
them: the serving process (and the Dask workers) take them from their environment (the AWS chain).
"""

from __future__ import annotations

from typing import Any

from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron

from flows.pipeline import ser_pipeline
from ser_tasks.config import PipelineConfig
from ser_tasks.errors import InputError
from ser_tasks.remote import reveal, secret_keys

DEFAULT_CRON = "0 2 * * *"  # nightly, 02:00


def pipeline_deployment(name: str, root: str | list[str], store_url: str, *, cron: str = DEFAULT_CRON,
                        timezone: str = "UTC",
                        config: PipelineConfig | None = None, corpus: str | None = None,
                        mlflow_uri: str | None = None,
                        dask_address: str | None = None, storage_options: dict | None = None,
                        crema_demographics: str | None = None, out_dir: str | None = None) -> RunnerDeployment:
    """A deployment of :func:`flows.pipeline.ser_pipeline` with a cron schedule.

    ``root``, ``store_url``, ``config``, ``corpus``, ``mlflow_uri``, ``dask_address``,
    ``storage_options``, ``crema_demographics`` and ``out_dir`` are the flow's parameters for every
    scheduled run.

    Args:
        name: deployment name (the full name is ``ser_pipeline/<name>``).
        root: corpus folder or fsspec URL, or several (``NAME=PATH`` names a corpus); each run extracts
            the files they gained since the last run.
        store_url: Zarr store path or URL that each run appends to.
        cron: a cron expression, e.g. ``"0 2 * * *"``.
        timezone: the IANA time zone name of ``cron``.
        config: the pipeline settings (defaults when ``None``); stored on the server as JSON, and
            validated back into a :class:`ser_tasks.config.PipelineConfig` by each run.
        corpus: corpus name, or ``None`` to detect.
        mlflow_uri: tracking URI (default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``).
        dask_address: an existing Dask scheduler (``tcp://host:8786``); a LocalCluster per run when ``None``.
        storage_options: non-secret fsspec options only (e.g. ``endpoint_url``).
        crema_demographics: CREMA-D ``VideoDemographics.csv`` for the speakers' sex.
        out_dir: where each run writes the model, normaliser and plots (a temporary folder if ``None``).

    Raises:
        InputError: ``storage_options`` holds a credential (it would be stored on the server in
            clear); give it to the serving process through its environment instead.
    """
    secrets = secret_keys(storage_options)
    if secrets:
        raise InputError(f"storage options {secrets} are credentials, which a deployment would store on the "
                         "Prefect server in clear; set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or a profile) "
                         "in the environment of `ser deploy` and the Dask workers instead")
    parameters: dict[str, Any] = {
        "root": root, "store_url": store_url, "config": config.model_dump(mode="json") if config else None,
        "corpus": corpus, "mlflow_uri": mlflow_uri,
        "dask_address": dask_address, "storage_options": reveal(storage_options) or None,
        "crema_demographics": crema_demographics, "out_dir": out_dir, "show_progress": False, "verbose": 2,
    }
    return ser_pipeline.to_deployment(
        name=name, schedule=Cron(cron, timezone=timezone), parameters=parameters, tags=["ser", "scheduled"],
        description=f"Incremental feature extraction of {root} into {store_url}, then retraining "
                    "(actor-disjoint evaluation), on the schedule given.",
        # Run by import path, so any process with the package installed can execute it.
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def serve(*deployments: RunnerDeployment, limit: int | None = 1) -> None:
    """Register ``deployments`` on the server and execute their runs until interrupted.

    ``limit`` caps concurrent flow runs (one pipeline at a time by default: each trains a model).
    The schedules stay active when this process stops, so runs due meanwhile wait as ``Late`` for
    the next runner instead of silently disappearing.
    """
    from prefect import serve as prefect_serve

    prefect_serve(*deployments, pause_on_shutdown=False, limit=limit)
