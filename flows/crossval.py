"""Flows ``cross_validate`` and ``ser_evaluate``: k-fold protocols over a split-agnostic store, in MLflow.

MLflow layout: one parent run per protocol, one child run per fold (``fold_ua``, ``fold_wa``,
``fold_macro_f1``, its confusion matrix and curves), and the mean ± standard deviation on the
parent as ``test_ua``/``test_ua_std`` (so ``ser compare`` lists one row per protocol, not per
fold). The leakage ablation nests the three protocols' runs under one more parent that holds the
table. Folds run one after another in the flow's process (one model at a time, GPU when the Keras
backend sees one).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

import keras
import mlflow
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from flows.extract import extract_features, extraction_runner, training_placed
from flows.train import local_threads, train_job_task
from ser_tasks.config import PipelineConfig
from ser_tasks.learn import metrics, tracking
from ser_tasks.learn.folds import (
    ABLATION,
    CROSS_CORPUS,
    DESCRIPTIONS,
    PROTOCOLS,
    Fold,
    check_protocol,
    load_partition,
    make_folds,
    summarize,
)
from ser_tasks.learn.jobs import TrainJob, fetch_fit, outputs_url_for, placement
from ser_tasks.learn.training import score_rows, train_rows
from ser_tasks.remote import redact_url
from ser_tasks.store.zarr_store import FeatureStore, StoreView

#: Settings ``ser evaluate`` needs whatever the configuration says: every clip augmented (a
#: split-agnostic store) and a fixed schedule that selects nothing on held-out speakers.
EVALUATION_OVERRIDES = {"augment.scope": "all", "train.schedule": "cosine"}


def _fold_name(fold: Fold) -> str:
    return f"{fold.protocol}-{fold.held_out}" if fold.held_out else f"{fold.protocol}-fold{fold.index + 1}"


@contextlib.contextmanager
def _fold_run(fold: Fold, config: PipelineConfig, extra_params: dict | None = None):
    """The fold's child MLflow run (nested in the protocol's), with its tags and parameters."""
    tags = {"protocol": fold.protocol, "fold": str(fold.index + 1),
            **({"held_out_corpus": fold.held_out} if fold.held_out else {})}
    with mlflow.start_run(run_name=_fold_name(fold), nested=True, tags=tags) as run:
        mlflow.log_params({"fold": fold.index + 1, "train_rows": int(fold.train.size), "test_rows": int(fold.test.size),
                           "test_speakers": ",".join(fold.test_speakers) or "-", "train.model": config.train.model,
                           **(extra_params or {})})
        yield run


def _fold_result(fold: Fold, scores: dict, seconds: float, run_id: str) -> dict:
    return {"fold": fold.index + 1, "held_out": fold.held_out, "ua": scores["ua"], "wa": scores["wa"],
            "macro_f1": scores["macro_f1"], "n": scores["n"], "train_rows": int(fold.train.size),
            "test_speakers": list(fold.test_speakers), "seconds": round(seconds, 1), "confusion": scores["confusion"],
            "mlflow_run_id": run_id}


@task(name="fold", cache_policy=NO_CACHE)
def fold_task(view: StoreView, fold: Fold, config: PipelineConfig, out_dir: Path, verbose: int = 0) -> dict:
    """Train on ``fold.train`` in this process, score ``fold.test``, and log both to a child MLflow run.

    Returns:
        ``{"fold", "held_out", "ua", "wa", "macro_f1", "n", "train_rows", "test_speakers", "seconds",
        "confusion", "mlflow_run_id"}``.
    """
    vocab = view.vocabulary
    out_dir.mkdir(parents=True, exist_ok=True)
    with _fold_run(fold, config) as run:
        fitted = train_rows(view, fold.train, config.train, out_dir, extra_callbacks=[tracking.epoch_logger()],
                            verbose=verbose)
        y_true, y_pred = score_rows(view, fitted.model_path, fold.test)
        # a held-out corpus may lack some of the model's classes: average over those it has
        scores = metrics.scores(y_true, y_pred, vocab, present_only=fold.protocol == CROSS_CORPUS)
        tracking.log_fold(scores, fitted, vocab, out_dir, _fold_name(fold))
    return _fold_result(fold, scores, fitted.seconds, run.info.run_id)


def _cluster_folds(view: StoreView, folds: list[Fold], cfg: PipelineConfig, out: Path, protocol: str) -> list[dict]:
    """Every fold as a training task on the Dask cluster at once; each logged to its child run as it finishes.

    The workers write each model to the store's filesystem (:mod:`ser_tasks.learn.jobs`); the flow
    fetches it, and logs the fold (parameters, every epoch's metrics, scores, plots) to MLflow.
    """
    logger = get_run_logger()
    threads = cfg.train.threads or local_threads(cfg)
    jobs = [TrainJob(view, fold.train, fold.test, cfg.train, outputs_url_for(view.store.url, _fold_name(fold)),
                     present_only=fold.protocol == CROSS_CORPUS, threads=threads, name=_fold_name(fold))
            for fold in folds]
    with placement(cfg.train.resources):
        futures = {train_job_task.submit(job): fold for job, fold in zip(jobs, folds, strict=True)}
    results = []
    for fut in as_completed(list(futures)):
        fold, res = futures[fut], fut.result()
        fold_dir = out / protocol / f"fold{fold.index + 1}"
        fitted = fetch_fit(res, fold_dir, view.store.storage_options, int(fold.test.size))
        with _fold_run(fold, cfg, {"worker": f"{res['host']}:{res['pid']}", "threads": res["threads"] or "-"}) as run:
            tracking.log_history(res["history"])
            tracking.log_fold(res["scores"], fitted, view.vocabulary, fold_dir, _fold_name(fold))
        logger.info("%s done on %s:%s", _fold_name(fold), res["host"], res["pid"])
        results.append(_fold_result(fold, res["scores"], res["seconds"], run.info.run_id))
    return sorted(results, key=lambda r: r["fold"])


def _folds(view: StoreView, protocol: str, n_folds: int, seed: int, partition: dict[str, int] | None) -> list[Fold]:
    return make_folds(protocol, view.column("speaker"), view.column("clip_id"), view.column("variant"), view.done(),
                      n_folds, seed, partition if protocol == "cv-actor" else None, view.labels())


def _protocol(view: StoreView, protocol: str, folds: list[Fold], cfg: PipelineConfig, n_folds: int,
              out: Path, verbose: int, tags: dict | None = None, partition_name: str | None = None) -> dict:
    """Run the given folds of one protocol under a parent run (nested in the active run, if any)."""
    logger = get_run_logger()
    vocab = view.vocabulary
    on = f" on the {partition_name} partition" if partition_name and protocol == "cv-actor" else ""
    evaluation = f"{DESCRIPTIONS[protocol]}{on}, {len(folds)} of {n_folds} folds"
    t0 = time.perf_counter()
    with mlflow.start_run(run_name=protocol, nested=mlflow.active_run() is not None,
                          tags={**(tags or {}), "protocol": protocol, "evaluation": evaluation}) as run:
        mlflow.log_params(cfg.flat_params())
        mlflow.log_params({"protocol": protocol, "folds": n_folds, "folds_run": len(folds),
                           "partition": partition_name if on else "blocks" if protocol == "cv-actor" else "-",
                           "keras_backend": keras.backend.backend()})
        results = []
        parallel = _cluster_folds(view, folds, cfg, out, protocol) if cfg.train.where == "cluster" else None
        for fold in folds:
            res = (parallel[fold.index - folds[0].index] if parallel is not None
                   else fold_task(view, fold, cfg, out / protocol / f"fold{fold.index + 1}", verbose))
            logger.info("%s fold %d/%d (%s): UA %.3f  WA %.3f  macro-F1 %.3f  (%d test clips, %.0f s)", protocol,
                        fold.index + 1, len(folds), fold.held_out or ",".join(fold.test_speakers) or "random",
                        res["ua"], res["wa"],
                        res["macro_f1"], res["n"], res["seconds"])
            results.append(res)
        summary = summarize(results)
        pooled = tracking.log_protocol(summary, results, vocab, out / protocol, protocol)
    logger.info("%s: UA %.3f ± %.3f  WA %.3f ± %.3f  macro-F1 %.3f ± %.3f over %d folds", protocol,
                summary["ua_mean"], summary["ua_std"], summary["wa_mean"], summary["wa_std"],
                summary["macro_f1_mean"], summary["macro_f1_std"], summary["folds"])
    return {"protocol": protocol, "evaluation": evaluation, **summary, "n_folds": n_folds,
            "seconds": round(time.perf_counter() - t0, 1), "fold_results": results,
            "confusion_pooled": pooled.tolist(), "vocabulary": vocab, "mlflow_run_id": run.info.run_id}


@flow(name="cross_validate", log_prints=True)
def cross_validate(store_url: str, protocol: str = "cv-actor", config: PipelineConfig | None = None,
                   group: str | None = None, mlflow_uri: str | None = None, n_folds: int = 6,
                   max_folds: int | None = None, storage_options: dict | None = None, out_dir: str | None = None,
                   verbose: int = 0, partition: str | None = None, folds_file: str | None = None) -> dict:
    """Cross-validate one protocol, or the leakage ablation (all three), on a feature-store group.

    Args:
        store_url: Zarr store path or URL.
        protocol: ``cv-actor``, ``clip-split``, ``row-split``, ``cross-corpus`` (see
            :mod:`ser_tasks.learn.folds`) or ``ablation`` (the first three, each under its own run,
            nested in one parent run).
        config: the pipeline settings (a dict is validated into one); ``train``, ``split.seed`` and
            ``tracking`` are used here.
        group: the store's extraction group; the only one when ``None``.
        mlflow_uri: tracking URI (default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``).
        n_folds: folds in each partition (``cross-corpus``: one per corpus, whatever this says).
        max_folds: run only the first ``max_folds`` folds of each protocol (all when ``None``).
        storage_options: fsspec options for a remote store.
        out_dir: models, plots and curves per fold (a temporary folder if ``None``).
        verbose: Keras ``fit`` verbosity of each fold's training (0 silent).
        partition: ``cv-actor`` on a named published partition (``emobox``) instead of blocks.
        folds_file: ``cv-actor`` on the partition of a CSV (columns ``fold``, ``speaker``).

    Returns:
        For one protocol: ``{"protocol", "ua_mean", "ua_std", "wa_mean", "wa_std", "macro_f1_mean",
        "macro_f1_std", "folds", "fold_results", "mlflow_run_id", ...}``. For the ablation:
        ``{"protocols": {name: that}, "table": [...], "mlflow_run_id"}``.

    Raises:
        InputError: unknown protocol, too few speakers or clips for the folds, ``max_folds`` < 1, or
            a partition that names speakers the store lacks.
    """
    check_protocol(protocol, max_folds)
    cfg = PipelineConfig.model_validate(config or {})
    store = FeatureStore.locate(store_url, group, storage_options)
    view = store.view()
    assigned = load_partition(partition or n_folds, folds_file)
    partition_name = folds_file or partition
    # Every protocol's folds, once, before any run: too few speakers or clips fails here.
    folds = {p: _folds(view, p, n_folds, cfg.split.seed, assigned)
             for p in (PROTOCOLS if protocol == ABLATION else (protocol,))}
    n_folds = {p: len(f) for p, f in folds.items()}  # a partition or the corpora decide the count
    folds = {p: f[:max_folds] for p, f in folds.items()}
    tracking.setup(mlflow_uri, cfg.tracking.experiment)
    out = Path(out_dir or tempfile.mkdtemp(prefix="ser-cv-"))
    tags = {"git_commit": tracking.git_commit(), "store": redact_url(store.url), "store_group": store.group,
            "corpus": view.attrs.get("corpus", ""), "manifest_fingerprint": view.attrs.get("manifest_fingerprint", "")}
    if protocol != ABLATION:
        return _protocol(view, protocol, folds[protocol], cfg, n_folds[protocol], out, verbose, tags, partition_name)
    with mlflow.start_run(run_name="leakage-ablation", tags={**tags, "protocol": ABLATION}) as parent:
        mlflow.log_params(cfg.flat_params())
        results = {p: _protocol(view, p, folds[p], cfg, n_folds[p], out, verbose, tags, partition_name)
                   for p in PROTOCOLS}
        table = ablation_table(results)
        mlflow.log_text(table.to_csv(index=False), "evaluation/ablation.csv")
        mlflow.log_metrics({f"ablation_{p.replace('-', '_')}_ua": r["ua_mean"] for p, r in results.items()})
    return {"protocols": results, "table": table.to_dict(orient="records"), "mlflow_run_id": parent.info.run_id}


def ablation_table(results: dict[str, dict]) -> pd.DataFrame:
    """One row per protocol: UA, WA and macro-F1 as mean and sd over folds, and the UA gap to ``cv-actor``.

    The gap is in percentage points: how much the protocol inflates the score.
    """
    base = results.get("cv-actor", {}).get("ua_mean")
    rows = []
    for p, r in results.items():
        rows.append({"protocol": p, "what it holds out": DESCRIPTIONS[p], "folds": r["folds"],
                     "UA": round(r["ua_mean"], 4), "UA sd": round(r["ua_std"], 4), "WA": round(r["wa_mean"], 4),
                     "macro-F1": round(r["macro_f1_mean"], 4),
                     "UA gain over cv-actor (pp)": round(100 * (r["ua_mean"] - base), 1) if base is not None else None})
    return pd.DataFrame(rows)


@flow(name="ser_evaluate", log_prints=True)
def ser_evaluate(root: str | list[str], store_url: str, protocol: str = "cv-actor",
                 config: PipelineConfig | None = None,
                 corpus: str | None = None, mlflow_uri: str | None = None, dask_address: str | None = None,
                 n_folds: int = 6, max_folds: int | None = None, storage_options: dict | None = None,
                 crema_demographics: str | None = None, out_dir: str | None = None, verbose: int = 0,
                 partition: str | None = None, folds_file: str | None = None) -> dict:
    """Corpus -> split-agnostic Zarr features (every clip augmented; resumable) -> :func:`cross_validate`.

    ``config`` gets :data:`EVALUATION_OVERRIDES` applied. ``partition`` and ``folds_file`` are
    checked before extraction (see :func:`cross_validate`).

    Returns:
        ``{"extract": <extract_features summary>, "evaluation": <cross_validate result>, "seconds"}``.
    """
    t0 = time.perf_counter()
    check_protocol(protocol, max_folds)  # before minutes of extraction
    load_partition(partition or n_folds, folds_file)
    cfg = PipelineConfig.model_validate(config or {}).with_overrides(EVALUATION_OVERRIDES)
    runner = extraction_runner(cfg, dask_address)
    extracted = extract_features.with_options(task_runner=runner)(
        root, store_url, cfg, corpus, storage_options, crema_demographics, False)
    result = training_placed(cross_validate, cfg, dask_address)(
        store_url, protocol, cfg, extracted["group"], mlflow_uri, n_folds, max_folds, storage_options, out_dir,
        verbose, partition, folds_file)
    return {"extract": extracted, "evaluation": result, "seconds": round(time.perf_counter() - t0, 1)}

