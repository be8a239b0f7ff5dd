"""MLflow plumbing: the tracking URI, experiment, tags, what a training run logs, and a per-epoch callback.

Default tracking store: ``sqlite:///mlflow.db`` in the working folder, with artifacts in
``./mlartifacts`` beside it, so a plain ``mlflow ui`` started there shows the runs.
``--mlflow-uri`` or ``MLFLOW_TRACKING_URI`` point at a server instead.

:mod:`ser_tasks.learn.metrics` (scikit-learn, matplotlib: 1.5 s of imports) is imported by the
functions that log scores only: ``ser extract`` imports this module and scores nothing.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ser_tasks.learn.training import FitResult

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


@functools.cache
def _epoch_logger_class():
    import keras  # here, not at import: extraction imports this module and needs no Keras

    class MLflowEpochLogger(keras.callbacks.Callback):
        """Log every epoch's Keras metrics (learning rate included) to the active MLflow run, step = epoch."""

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            """Log ``logs`` at step ``epoch`` (0-based)."""
            mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items() if hasattr(v, "__float__")},
                               step=epoch)

    return MLflowEpochLogger


def epoch_logger():
    """A Keras callback that logs every epoch's metrics (learning rate included) to the active MLflow run.

    Step = epoch (0-based). Used instead of autologging, which would log a second copy (NOTES.md).
    Keras is imported on the first call only, so that extraction, which imports this module for
    its MLflow logging, never loads TensorFlow.
    """
    return _epoch_logger_class()()


def log_history(history: dict[str, list[float]]) -> None:
    """Log a finished training's per-epoch metrics to the active run, step = epoch (0-based).

    For a model trained elsewhere (a Dask worker, :mod:`ser_tasks.learn.jobs`): the same metrics
    :func:`epoch_logger` logs live, written after the fact in one batch.
    """
    from mlflow.entities import Metric

    run = mlflow.active_run()
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, values in history.items() for step, v in enumerate(values)]
    client = mlflow.MlflowClient()
    for start in range(0, len(batch), 1000):  # the tracking API takes at most 1,000 metrics per call
        client.log_batch(run.info.run_id, metrics=batch[start:start + 1000])


def training_tags(store_url: str, group: str, attrs: dict) -> dict[str, str]:
    """Tags of a training run: commit, store (credentials redacted), group, manifest fingerprint, corpus.

    Args:
        store_url: the store's URL (redacted before it is logged).
        group: the store group trained on.
        attrs: that group's attributes (``manifest_fingerprint``, ``corpus``).
    """
    from ser_tasks.remote import redact_url

    return {"git_commit": git_commit(), "store": redact_url(store_url), "store_group": group,
            "manifest_fingerprint": attrs.get("manifest_fingerprint", ""), "corpus": attrs.get("corpus", ""),
            "evaluation": "actor-disjoint (speaker-independent) test split"}


def log_training_inputs(run_id: str, params: dict, speakers: list[dict]) -> None:
    """Log the configuration and the speakers' split (``data/split.csv``) to the active run.

    Of ``params``, only those the run does not have yet: a parent pipeline run logged them already.
    """
    logged = set(mlflow.get_run(run_id).data.params)
    mlflow.log_params({k: v for k, v in params.items() if k not in logged})
    mlflow.log_text(pd.DataFrame(speakers).to_csv(index=False), "data/split.csv")


def log_training(fit_result: FitResult, vocabulary: list[str], out_dir: Path) -> None:
    """Log what training used and did.

    Parameters device, backend, rows and vocabulary; metrics ``best_epoch`` and ``train_seconds``;
    the per-epoch history (``evaluation/history.json``) and its curves
    (``evaluation/training_curves.png``, written to ``out_dir``).
    """
    import keras

    from ser_tasks.learn import metrics

    mlflow.log_params({"device": fit_result.device, "keras_backend": keras.backend.backend(),
                       "train_rows": fit_result.rows["train"], "val_rows": fit_result.rows["val"],
                       "test_rows": fit_result.rows["test"], "vocabulary": ",".join(vocabulary)})
    mlflow.log_metrics({"best_epoch": fit_result.best_epoch, "train_seconds": fit_result.seconds})
    mlflow.log_artifact(str(metrics.plot_history(fit_result.history, out_dir / "training_curves.png")), "evaluation")
    mlflow.log_dict(fit_result.history, "evaluation/history.json")


def log_test_scores(result: dict) -> None:
    """Log the test speakers' scores (:func:`ser_tasks.learn.training.score_split`'s result) to the active run.

    Metrics ``test_ua``, ``test_wa``, ``test_macro_f1``, per class ``test_recall_<c>``,
    ``test_precision_<c>``, ``test_f1_<c>``, and per corpus (several in the store) ``test_ua_<corpus>``,
    ``test_wa_<corpus>``, ``test_macro_f1_<corpus>``; artifacts ``evaluation/confusion_matrix.png``,
    ``evaluation/test_metrics.json`` and ``evaluation/classification_report.txt``.
    """
    from ser_tasks.learn import metrics

    mlflow.log_metrics({"test_ua": result["ua"], "test_wa": result["wa"], "test_macro_f1": result["macro_f1"]})
    mlflow.log_metrics({f"test_{k}_{c}": s[k] for c, s in result.get("per_corpus", {}).items()
                        for k in ("ua", "wa", "macro_f1")})
    for cls, vals in result["report"].items():
        if cls in result["vocabulary"]:
            mlflow.log_metrics({f"test_recall_{cls}": vals["recall"], f"test_precision_{cls}": vals["precision"],
                                f"test_f1_{cls}": vals["f1-score"]})
    mlflow.log_artifact(result["confusion_png"], "evaluation")
    mlflow.log_dict({k: result[k] for k in ("wa", "ua", "macro_f1", "n", "report", "confusion", "vocabulary")},
                    "evaluation/test_metrics.json")
    mlflow.log_text(metrics.report_text(result, "Test speakers (actor-disjoint split)"),
                    "evaluation/classification_report.txt")


def log_fold(scores: dict, fitted: FitResult, vocabulary: list[str], out_dir: Path, name: str) -> None:
    """Log one cross-validation fold to the active (child) run.

    Metrics ``fold_ua``, ``fold_wa``, ``fold_macro_f1`` and ``train_seconds``; artifacts
    ``evaluation/confusion_matrix.png``, ``evaluation/training_curves.png`` (both written to
    ``out_dir``) and ``evaluation/fold_metrics.json``.

    Args:
        scores: :func:`ser_tasks.learn.metrics.scores` of the fold's held-out rows.
        fitted: the fold's training result.
        vocabulary: class labels.
        out_dir: where the plots are written.
        name: the fold's name, for the plot's title (``cv-actor-fold1``).
    """
    from ser_tasks.learn import metrics

    mlflow.log_metrics({"fold_ua": scores["ua"], "fold_wa": scores["wa"], "fold_macro_f1": scores["macro_f1"],
                        "train_seconds": fitted.seconds})
    png = metrics.plot_confusion(np.array(scores["confusion"]), vocabulary, out_dir / "confusion_matrix.png",
                                 title=f"{name}: UA {scores['ua']:.3f}, WA {scores['wa']:.3f}")
    mlflow.log_artifact(str(png), "evaluation")
    mlflow.log_artifact(str(metrics.plot_history(fitted.history, out_dir / "training_curves.png")), "evaluation")
    mlflow.log_dict({k: scores[k] for k in ("ua", "wa", "macro_f1", "n", "report", "confusion")},
                    "evaluation/fold_metrics.json")


def log_protocol(summary: dict, results: list[dict], vocabulary: list[str], out_dir: Path, protocol: str):
    """Log one protocol's folds to its parent run: mean and sd over folds, the table, the pooled matrix.

    Metrics ``test_ua``, ``test_wa``, ``test_macro_f1`` (means) and their ``_std``, and per held-out
    corpus (``cross-corpus``) ``test_ua_<corpus>`` and the like; artifacts ``evaluation/folds.csv``
    and ``evaluation/confusion_pooled.png`` (written to ``out_dir``).

    Args:
        summary: :func:`ser_tasks.learn.folds.summarize` of ``results``.
        results: one dict per fold (with ``confusion``).
        vocabulary: class labels.
        out_dir: where the plot is written.
        protocol: the protocol's name, for the plot's title.

    Returns:
        The confusion matrix summed over folds, ``(k, k)`` int.
    """
    from ser_tasks.learn import metrics

    mlflow.log_metrics({"test_ua": summary["ua_mean"], "test_ua_std": summary["ua_std"],
                        "test_wa": summary["wa_mean"], "test_wa_std": summary["wa_std"],
                        "test_macro_f1": summary["macro_f1_mean"], "test_macro_f1_std": summary["macro_f1_std"]})
    mlflow.log_metrics({f"test_{key}_{r['held_out']}": r[key] for r in results if r.get("held_out")
                        for key in ("ua", "wa", "macro_f1")})
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "confusion"} for r in results])
    mlflow.log_text(table.to_csv(index=False), "evaluation/folds.csv")
    pooled = np.sum([r["confusion"] for r in results], axis=0)
    png = metrics.plot_confusion(pooled, vocabulary, out_dir / "confusion_pooled.png",
                                 title=f"{protocol}, all folds pooled: UA {summary['ua_mean']:.3f} "
                                       f"± {summary['ua_std']:.3f} (mean ± sd over folds)")
    mlflow.log_artifact(str(png), "evaluation")
    return pooled
