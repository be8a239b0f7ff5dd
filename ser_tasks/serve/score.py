"""Scores of an existing model on any labelled corpus the loaders read (``ser score``).

How a user checks a registered model on their own recordings, or on another corpus: the corpus is
read into a manifest, its clips of the classes the model knows are predicted from their raw audio
by the registered model itself (:class:`ser_tasks.serve.predict.EmotionModel`, windows averaged), and
UA, WA, macro-F1, per-class scores and a confusion matrix are computed on those classes and logged
as an MLflow run tagged with the model version. Clips of other classes are listed as ignored.

Predictions keep the model's whole vocabulary: a CREMA-D neutral clip that a RAVDESS model calls
"calm" counts as wrong, as it would for a user of ``ser predict``. UA is the mean recall over the
classes present in the corpus; macro-F1 averages F1 over those classes.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from ser_tasks.config import ManifestConfig
from ser_tasks.corpus.manifest import build_manifest, read_manifest_csv
from ser_tasks.errors import InputError
from ser_tasks.learn import metrics
from ser_tasks.serve.bulk import model_slug, predict_batch, read_predictions
from ser_tasks.serve.registry import model_version


def score_corpus(model_uri: str, root: str | list[str] | None, corpus: str | None = None,
                 storage_options: dict | None = None, crema_demographics: str | None = None,
                 out_dir: Path | None = None, on_start: Callable[[int], None] | None = None,
                 on_batch: Callable[[int], None] | None = None, manifest_config: ManifestConfig | None = None,
                 manifest_csv: str | None = None, out_base: Path | None = None, dask_address: str | None = None,
                 workers: int = 1) -> dict:
    """Score a model on a labelled corpus and log the result as a run of the current MLflow experiment.

    :func:`ser_tasks.learn.tracking.setup` chooses the experiment.

    Args:
        model_uri: any MLflow model URI (``models:/ser-emotion@champion``, ``runs:/.../model``).
        root: corpus folder or fsspec URL, or several (corpus detected per top-level folder, or named
            by ``corpus`` or ``NAME=PATH``); ignored with ``manifest_csv``.
        corpus: one of :data:`ser_tasks.corpus.corpora.CORPORA`, or ``None`` to detect it
            (:func:`ser_tasks.corpus.manifest.build_manifest`).
        storage_options: fsspec options for remote roots.
        crema_demographics: CREMA-D ``VideoDemographics.csv``.
        out_dir: where the confusion matrix and the predictions are written.
        on_start: progress callback, called once with the number of clips to score.
        on_batch: progress callback, called with the number of clips done after each batch.
        manifest_config: emotions to keep and the speaker pattern of folder layouts
            (:class:`ser_tasks.config.ManifestConfig`).
        manifest_csv: score the clips of this manifest CSV instead of listing ``root``
            (:func:`ser_tasks.corpus.manifest.read_manifest_csv`).
        out_base: without ``out_dir``, write under ``out_base/<corpus>-<model>`` (one folder per corpus
            and model version, so one scoring does not overwrite another's); neither: a temporary folder.
        dask_address: score on the Dask scheduler there (:func:`ser_tasks.serve.bulk.predict_batch`).
        workers: otherwise, LocalCluster worker processes (1: in this process).

    The predictions go to ``out_dir/predictions.parquet`` as a resumable dataset
    (:mod:`ser_tasks.serve.bulk`): scoring the same corpus with the same model version again reuses them.

    Returns:
        ``{"ua", "wa", "macro_f1", "n" (clips scored), "clips" (of known classes), "failed",
        "failures" ([{path, reason}]), "ignored" ({emotion: clips}), "skipped" (files whose names did
        not parse), "classes", "report", "confusion", "vocabulary", "corpus", "model_uri",
        "model_name", "model_version", "mlflow_run_id", "confusion_png", "out_dir"}``.

    Raises:
        InputError: the corpus has no clip of a class the model knows, or none could be scored.
        FileNotFoundError: ``root`` is not a folder.
    """
    # a bad root fails before the model loads
    if manifest_csv:
        manifest = read_manifest_csv(manifest_csv, storage_options, manifest_config)
        roots = sorted({posixpath.dirname(p) if "://" in p else os.path.dirname(p) for p in manifest.clips["path"]})
    else:
        if not root:
            raise InputError("give a corpus root or a manifest CSV to score")
        manifest = build_manifest(root, corpus, storage_options, crema_demographics, manifest_config)
        roots = root
    try:  # the classes from the signature's p_<label> columns: the model itself loads on the workers
        outputs = mlflow.models.get_model_info(model_uri).signature.outputs.input_names()
    except mlflow.exceptions.MlflowException as exc:
        raise InputError(f"cannot load model {model_uri}: {exc.message}") from exc
    vocab = [name[2:] for name in outputs if name.startswith("p_")]
    clips = manifest.clips
    known = clips[clips["emotion"].isin(vocab)]
    ignored = clips.loc[~clips["emotion"].isin(vocab), "emotion"].value_counts().sort_index()
    if known.empty:
        raise InputError(f"{manifest.root}: no clip of a class the model knows ({', '.join(vocab)}); "
                         f"the corpus has {', '.join(sorted(clips['emotion'].unique()))}")
    found = model_version(model_uri)
    if out_dir is None and out_base is not None:
        out_dir = Path(out_base) / f"{manifest.corpus}-{model_slug(model_uri, found)}"
    out = Path(out_dir or tempfile.mkdtemp(prefix="ser-score-"))
    out.mkdir(parents=True, exist_ok=True)
    # the corpus's speakers, from its file names: a speaker-normalised model sees each voice's clips together
    paths = list(known["path"])
    summary, ref = predict_batch(model_uri, paths, {}, str(out / "predictions.parquet"),
                                 roots if isinstance(roots, list) else [roots],
                                 list(known["speaker"].fillna("").astype(str)), storage_options, dask_address,
                                 workers, on_start=on_start, on_done=on_batch)
    preds = read_predictions(str(out / "predictions.parquet"), ref, storage_options, paths)
    preds.insert(1, "true", list(known["emotion"]))
    ok = preds["error"] == ""
    if not ok.any():
        raise InputError(f"{manifest.root}: none of the {len(preds)} clips could be scored; "
                         f"first error: {preds['error'].iloc[0]}")
    index = {label: i for i, label in enumerate(vocab)}
    y_true = preds.loc[ok, "true"].map(index).to_numpy()
    y_pred = preds.loc[ok, "emotion"].map(index).to_numpy()
    scores = metrics.scores(y_true, y_pred, vocab, present_only=True)
    png = metrics.plot_confusion(np.array(scores["confusion"]), vocab, out / "confusion_matrix.png",
                                  title=f"{manifest.corpus}: UA {scores['ua']:.3f}, WA {scores['wa']:.3f}, "
                                        f"macro-F1 {scores['macro_f1']:.3f} ({len(scores['classes'])} classes)")
    preds.to_csv(out / "predictions.csv", index=False)
    failures = [{"path": p, "reason": e} for p, e in zip(preds.loc[~ok, "path"], preds.loc[~ok, "error"])]
    tags = {"stage": "score", "model_uri": model_uri, "root": manifest.root, "corpus": manifest.corpus,
            "manifest_fingerprint": manifest.fingerprint(),
            "evaluation": f"existing model on {manifest.corpus}, classes it shares with the model"}
    if found:
        tags.update({"model_name": found[0], "model_version": found[1]})
    with mlflow.start_run(run_name=f"score-{manifest.corpus}", tags=tags) as run:
        mlflow.log_metrics({"score_ua": scores["ua"], "score_wa": scores["wa"], "score_macro_f1": scores["macro_f1"],
                            "score_clips": scores["n"], "score_failed": len(failures),
                            "score_ignored": int(ignored.sum())})
        for cls in scores["classes"]:
            r = scores["report"][cls]
            mlflow.log_metrics({f"score_recall_{cls}": r["recall"], f"score_f1_{cls}": r["f1-score"]})
        mlflow.log_artifact(str(png), "evaluation")
        mlflow.log_artifact(str(out / "predictions.csv"), "evaluation")
        mlflow.log_dict({k: scores[k] for k in ("ua", "wa", "macro_f1", "n", "classes", "report", "confusion")}
                        | {"vocabulary": vocab, "ignored": ignored.to_dict()}, "evaluation/score_metrics.json")
        mlflow.log_text(pd.DataFrame(failures, columns=["path", "reason"]).to_csv(index=False), "data/failures.csv")
    return {**scores, "clips": len(known), "failed": len(failures), "failures": failures,
            "ignored": {str(k): int(v) for k, v in ignored.items()}, "skipped": len(manifest.skipped),
            "vocabulary": vocab, "corpus": manifest.corpus, "model_uri": model_uri,
            "model_name": found[0] if found else None, "model_version": int(found[1]) if found else None,
            "mlflow_run_id": run.info.run_id, "confusion_png": str(png), "out_dir": str(out)}
