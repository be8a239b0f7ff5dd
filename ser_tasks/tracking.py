"""MLflow plumbing: the tracking URI, experiment, tags and a per-epoch logging callback.

Default tracking store: ``sqlite:///mlflow.db`` in the working folder, with artifacts in
``./mlartifacts`` beside it, so a plain ``mlflow ui`` started there shows the runs.
``--mlflow-uri`` or ``MLFLOW_TRACKING_URI`` point at a server instead.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import keras
import mlflow

DEFAULT_URI = "sqlite:///mlflow.db"


def resolve_uri(uri: str | None = None) -> str:
    """The tracking URI to use: ``uri``, else ``$MLFLOW_TRACKING_URI``, else :data:`DEFAULT_URI`."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def use(uri: str | None = None) -> str:
    """Point MLflow's tracking and model registry at ``uri`` (resolved by :func:`resolve_uri`); returns it.

    Both, so that a ``models:/`` URI is looked up where the runs are, whatever a registry URI set
    earlier in the process said.
    """
    uri = resolve_uri(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def setup(uri: str | None, experiment: str) -> str:
    """Point MLflow at ``uri`` and select (creating if needed) ``experiment``; returns its id.

    For a local sqlite store the experiment's artifacts go to ``mlartifacts/`` beside the database.
    """
    uri = use(uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        location = None
        if uri.startswith("sqlite:///"):
            db = Path(uri.removeprefix("sqlite:///")).resolve()
            location = (db.parent / "mlartifacts").as_uri()
        experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_commit() -> str:
    """The commit of the checkout this package runs from, or ``"unknown"`` outside git."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


class MLflowEpochLogger(keras.callbacks.Callback):
    """Log every epoch's Keras metrics (learning rate included) to the active MLflow run, step = epoch.

    Used instead of autologging, which would log a second copy (NOTES.md).
    """

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Log ``logs`` at step ``epoch`` (0-based)."""
        mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items() if hasattr(v, "__float__")}, step=epoch)
