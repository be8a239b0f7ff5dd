"""The scheduled flow that scores only the recordings a folder or prefix gained, with the champion.

:func:`score_new_recordings` is a Prefect flow: list a folder or prefix, score with the champion
every file that has no rows yet for the champion's version (:func:`ser_tasks.serve.bulk.predict_batch`,
on Dask), and log what it did; :func:`scoring_deployment` puts it on a cron or interval schedule
(``ser deploy-scoring``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron, Interval

from ser_tasks.errors import InputError
from ser_tasks.remote import reveal, secret_keys

#: Seconds from making an interval deployment (``every_seconds``) to its first run.
FIRST_RUN_AFTER = 10


@flow(name="score-new-recordings", log_prints=True)
def score_new_recordings(prefix: str, out_url: str, model_uri: str = "models:/ser-emotion@champion",
                         mlflow_uri: str | None = None, dask_address: str | None = None, workers: int = 2,
                         storage_options: dict | None = None, per_window: bool = False) -> dict:
    """Score with ``model_uri`` (the champion by default) every recording under ``prefix`` not yet scored by it.

    Args:
        prefix: a folder or fsspec prefix (``s3://bucket/incoming/``), listed recursively.
        out_url: the Parquet dataset folder of the predictions (``model=<name>-v<N>/part-*.parquet``).
        model_uri: the model; an alias is resolved at each run, so a new champion scores every file
            again, in its own folder.
        mlflow_uri: tracking URI (default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``).
        dask_address: a running Dask scheduler, or ``None`` for a LocalCluster of ``workers``.
        workers: LocalCluster worker processes.
        storage_options: non-secret fsspec options (credentials come from the environment).
        per_window: one row per window instead of one per file.

    Returns:
        :func:`ser_tasks.serve.bulk.run_batch`'s summary plus ``model_uri`` (the version used).
    """
    from ser_tasks.learn import tracking
    from ser_tasks.serve.bulk import predict_batch
    from ser_tasks.serve.predict import expand_inputs

    logger = get_run_logger()
    tracking.use(mlflow_uri)
    files = expand_inputs([prefix], storage_options)
    summary, ref = predict_batch(model_uri, files, {"per_window": per_window}, out_url, [prefix],
                                 storage_options=storage_options, dask_address=dask_address, workers=workers)
    logger.info("%s: %d files, %d already scored by %s, %d scored now (%d failed) into %s", prefix,
                summary["files"], summary["skipped"], ref.uri, summary["scored"], summary["failed"], summary["out"])
    return {**summary, "model_uri": ref.uri}


def scoring_deployment(name: str, prefix: str, out_url: str, *, cron: str = "*/15 * * * *", timezone: str = "UTC",
                       model_uri: str = "models:/ser-emotion@champion", mlflow_uri: str | None = None,
                       dask_address: str | None = None, workers: int = 2, storage_options: dict | None = None,
                       per_window: bool = False, every_seconds: float | None = None) -> RunnerDeployment:
    """A deployment of :func:`score_new_recordings` on a cron schedule (the flow's parameters fixed).

    ``every_seconds`` replaces the cron schedule by an interval one: a run every that many seconds,
    the first one :data:`FIRST_RUN_AFTER` seconds from now (time to register the deployment), not
    one interval away.

    Raises:
        InputError: ``storage_options`` holds a credential (the Prefect server stores parameters in
            clear); give it to the serving process and the workers through their environment; or
            ``every_seconds`` is not positive.
    """
    if every_seconds is not None and not every_seconds > 0:
        raise InputError(f"a scoring interval must be positive, got {every_seconds} s")
    secrets = secret_keys(storage_options)
    if secrets:
        raise InputError(f"storage options {secrets} are credentials, which a deployment would store on the "
                         "Prefect server in clear; set them in the environment of the serving process instead")
    parameters: dict[str, Any] = {"prefix": prefix, "out_url": out_url, "model_uri": model_uri,
                                  "mlflow_uri": mlflow_uri, "dask_address": dask_address, "workers": workers,
                                  "storage_options": reveal(storage_options) or None, "per_window": per_window}
    return score_new_recordings.to_deployment(
        name=name, parameters=parameters, tags=["ser", "scoring"],
        schedule=Cron(cron, timezone=timezone) if every_seconds is None else Interval(
            every_seconds, anchor_date=datetime.now(UTC) + timedelta(seconds=FIRST_RUN_AFTER), timezone=timezone),
        description=f"Scores the new recordings under {prefix} with {model_uri} into {out_url}.",
        entrypoint_type=EntrypointType.MODULE_PATH)
