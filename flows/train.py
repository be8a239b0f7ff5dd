"""Flow ``train_model``: Zarr store -> Keras model (zoo) -> test-speaker scores -> MLflow.

Training and evaluation run in the flow's own process (one model, GPU when TensorFlow sees one);
the tasks hand each other file paths, never models.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

import keras
import mlflow
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from ser_tasks import metrics, tracking
from ser_tasks.config import PipelineConfig
from ser_tasks.models import MODEL_INPUTS
from ser_tasks.remote import redact_url
from ser_tasks.store import FeatureStore
from ser_tasks.train import TEST, FitResult, fit, score_split


@task(name="fit-model", cache_policy=NO_CACHE)
def fit_task(store: FeatureStore, config: PipelineConfig, out_dir: Path) -> FitResult:
    """:func:`ser_tasks.train.fit`, logging each epoch to the active MLflow run."""
    return fit(store, config.train, out_dir, extra_callbacks=[tracking.MLflowEpochLogger()])


@task(name="evaluate-model", cache_policy=NO_CACHE)
def evaluate_task(store: FeatureStore, model_path: Path, out_dir: Path) -> dict:
    """:func:`ser_tasks.train.score_split` on the test speakers."""
    return score_split(store, model_path, out_dir, TEST)


@task(name="log-model", cache_policy=NO_CACHE)
def log_model_task(fit_result: FitResult, config: PipelineConfig, vocabulary: list[str], scores: dict,
                   tags: dict) -> dict:
    """Log the raw-audio model, register a version with its scores as tags, and give it an alias.

    The model is a :class:`ser_tasks.predict.EmotionModel`; the alias is champion or challenger
    (:mod:`ser_tasks.registry`).

    Returns:
        ``{"model_name", "model_version", "model_uri", "alias", "promotion"}``.
    """
    from ser_tasks import registry
    from ser_tasks.predict import Preprocessing, log_emotion_model

    name = config.tracking.registered_model
    prep = Preprocessing(config.audio, config.features, MODEL_INPUTS[config.train.model], tuple(vocabulary),
                         config.train.model)
    info = log_emotion_model(fit_result.model_path, fit_result.normalizer_path, prep, name)
    version = int(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in registry.version_tags(scores, tags["manifest_fingerprint"], tags["store_group"],
                                            tags["git_commit"]).items():
        client.set_model_version_tag(name, str(version), key, value)
    promotion = registry.promote_if_better(name, version, client)
    mlflow.set_tags({"model_alias": promotion.alias, "promotion": promotion.reason})
    return {"model_name": name, "model_version": version, "model_uri": info.model_uri, "alias": promotion.alias,
            "promotion": promotion.reason}


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
    g = store.open()
    tracking.setup(mlflow_uri, cfg.tracking.experiment)
    out = Path(out_dir or tempfile.mkdtemp(prefix="ser-train-"))
    out.mkdir(parents=True, exist_ok=True)
    tags = {"git_commit": tracking.git_commit(), "store": redact_url(store.url), "store_group": store.group,
            "manifest_fingerprint": g.attrs.get("manifest_fingerprint", ""), "corpus": g.attrs.get("corpus", ""),
            "evaluation": "actor-disjoint (speaker-independent) test split"}
    with _run(run_id, f"train-{cfg.train.model}", tags) as run:
        mlflow.set_tags(tags)
        params = cfg.flat_params()
        mlflow.log_params({k: v for k, v in params.items() if k not in _logged_params(run.info.run_id)})
        mlflow.log_text(pd.DataFrame(g.attrs["speakers"]).to_csv(index=False), "data/split.csv")
        fit_result = fit_task(store, cfg, out)
        mlflow.log_params({"device": fit_result.device, "keras_backend": keras.backend.backend(),
                           "train_rows": fit_result.rows["train"], "val_rows": fit_result.rows["val"],
                           "test_rows": fit_result.rows["test"], "vocabulary": ",".join(g.attrs["vocabulary"])})
        result = evaluate_task(store, fit_result.model_path, out)
        curves = metrics.plot_history(fit_result.history, out / "training_curves.png")
        mlflow.log_metrics({"test_ua": result["ua"], "test_wa": result["wa"], "test_macro_f1": result["macro_f1"],
                            "best_epoch": fit_result.best_epoch, "train_seconds": fit_result.seconds})
        for cls, vals in result["report"].items():
            if cls in result["vocabulary"]:
                mlflow.log_metrics({f"test_recall_{cls}": vals["recall"], f"test_precision_{cls}": vals["precision"],
                                    f"test_f1_{cls}": vals["f1-score"]})
        mlflow.log_artifact(result["confusion_png"], "evaluation")
        mlflow.log_artifact(str(curves), "evaluation")
        mlflow.log_dict({k: result[k] for k in ("wa", "ua", "macro_f1", "n", "report", "confusion", "vocabulary")},
                        "evaluation/test_metrics.json")
        mlflow.log_text(_report_text(result), "evaluation/classification_report.txt")
        mlflow.log_dict(fit_result.history, "evaluation/history.json")
        registered = log_model_task(fit_result, cfg, result["vocabulary"], result, tags)
        logger.info("test speakers: UA %.3f  WA %.3f  macro-F1 %.3f  (%d clips); model %s v%d; run %s",
                    result["ua"], result["wa"], result["macro_f1"], result["n"], registered["model_name"],
                    registered["model_version"], run.info.run_id)
        logger.info("model %s v%d is %s: %s", registered["model_name"], registered["model_version"],
                    registered["alias"], registered["promotion"])
        return {"ua": result["ua"], "wa": result["wa"], "macro_f1": result["macro_f1"], "test_clips": result["n"],
                "best_epoch": fit_result.best_epoch, "epochs": len(fit_result.history.get("loss", [])),
                "train_seconds": round(fit_result.seconds, 3), "device": fit_result.device,
                "rows": fit_result.rows, "mlflow_run_id": run.info.run_id, **registered,
                "out_dir": str(out)}


def _logged_params(run_id: str) -> set[str]:
    return set(mlflow.get_run(run_id).data.params)


def _report_text(result: dict) -> str:
    lines = [f"Test speakers (actor-disjoint split), {result['n']} clips",
             f"UA (unweighted average recall) {result['ua']:.4f}",
             f"WA (accuracy)                  {result['wa']:.4f}",
             f"macro-F1                       {result['macro_f1']:.4f}", "",
             f"{'class':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for cls in result["vocabulary"]:
        r = result["report"][cls]
        lines.append(f"{cls:<12}{r['precision']:>10.3f}{r['recall']:>10.3f}{r['f1-score']:>10.3f}{int(r['support']):>10d}")
    return "\n".join(lines) + "\n" + json.dumps({"confusion": result["confusion"]}) + "\n"
