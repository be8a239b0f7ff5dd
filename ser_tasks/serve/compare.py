"""Compare the runs of an MLflow experiment: one row per evaluated run, and a plot of their scores.

Used by ``ser compare EXPERIMENT``. Only runs that logged test scores (``test_ua``) are listed;
extraction-only runs have none.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ser_tasks.config import MODEL_INPUTS
from ser_tasks.errors import InputError

AUGMENTS = ("noise", "pitch", "stretch", "shift", "gain")
COLUMNS = ["run_id", "run_name", "model", "features", "augmentation", "evaluation", "ua", "ua_std", "wa",
           "macro_f1", "duration_s", "start_time", "differs"]

#: Parameters that describe one run's bookkeeping rather than its recipe: never listed as differing.
BOOKKEEPING = {"train_rows", "val_rows", "test_rows", "vocabulary", "device", "train_worker", "train_threads",
               "worker", "threads", "folds_run", "fold", "test_speakers"}


def differing(params: list[dict[str, str]]) -> list[str]:
    """``key=value`` of every parameter whose value is not the same in all of ``params`` (one dict per run).

    A parameter a run lacks counts as ``-``. Bookkeeping (:data:`BOOKKEEPING`) is left out.

    Returns:
        One string per run: ``"train.schedule=plateau, train.epochs=60"`` (keys sorted), or ``""``.
    """
    keys = sorted({k for p in params for k in p} - BOOKKEEPING)
    varying = [k for k in keys if len({p.get(k, "-") for p in params}) > 1]
    return [", ".join(f"{k}={p.get(k, '-')}" for k in varying) for p in params]


def _augmentation(params: dict) -> str:
    variants = params.get("augment.variants")
    masking = any(int(params.get(f"train.spec_{k}_masks", 0) or 0) > 0 for k in ("freq", "time"))
    if variants in (None, "0"):
        if masking:
            return "SpecAugment"
        return "none" if variants == "0" else "?"
    used = [a for a in AUGMENTS if float(params.get(f"augment.{a}_prob", 0) or 0) > 0]
    return f"{variants}x " + "+".join(used + ["SpecAugment"] * masking)


def _features(params: dict) -> str:
    model = params.get("train.model", "")
    name = MODEL_INPUTS.get(model, "?")
    if name == "log_mel":
        return f"log-mel {params.get('features.n_mels', '?')}"
    if name == "mfcc":
        return f"MFCC {params.get('features.n_mfcc', '?')}"
    if name == "zcr_rms":
        return "ZCR+RMS"
    if name == "frames":
        return "log-mel+MFCC+ZCR+RMS frames"
    return name


def runs_table(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """The evaluated runs of ``experiment``, best UA first.

    Returns:
        Columns :data:`COLUMNS`: ``ua``/``wa``/``macro_f1`` in [0, 1] (test speakers; a
        cross-validation's means over folds, with ``ua_std`` its sd, NaN for a single split),
        ``duration_s`` in seconds (run start to end; NaN while running), ``differs``: the
        parameters (and evaluation) whose values differ among the listed runs (:func:`differing`).

    Raises:
        InputError: no experiment of that name.
    """
    import mlflow

    from ser_tasks.learn.tracking import resolve_uri

    client = mlflow.MlflowClient(resolve_uri(tracking_uri))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise InputError(f"no MLflow experiment {experiment!r} at {resolve_uri(tracking_uri)} (present: {names})")
    rows, all_params = [], []
    for run in client.search_runs([exp.experiment_id], max_results=5000):
        metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
        if "test_ua" not in metrics:
            continue
        end = run.info.end_time
        rows.append({
            "run_id": run.info.run_id, "run_name": run.info.run_name, "model": params.get("train.model", "?"),
            "features": _features(params), "augmentation": _augmentation(params),
            "evaluation": tags.get("evaluation", ""), "ua": metrics["test_ua"],
            "ua_std": metrics.get("test_ua_std", float("nan")), "wa": metrics.get("test_wa"),
            "macro_f1": metrics.get("test_macro_f1"),
            "duration_s": (end - run.info.start_time) / 1000 if end else float("nan"),
            "start_time": pd.Timestamp(run.info.start_time, unit="ms"),
        })
        all_params.append({**params, **({"evaluation": tags["evaluation"]} if tags.get("evaluation") else {})})
    for row, diff in zip(rows, differing(all_params), strict=True):
        row["differs"] = diff
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values("ua", ascending=False, ignore_index=True)


def plot_runs(table: pd.DataFrame, path: Path, title: str) -> Path:
    """Grouped horizontal bars of UA, WA and macro-F1 per run (PNG at ``path``).

    Raises:
        InputError: an empty table.
    """
    if table.empty:
        raise InputError("no evaluated runs to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.run_id[:8]} | {r.differs[:60] or r.model}" for r in table.itertuples()]
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.45 * len(table) * 1.6))
    height = 0.27
    for k, (col, name) in enumerate((("ua", "UA"), ("wa", "WA"), ("macro_f1", "macro-F1"))):
        ys = [i + (k - 1) * height for i in range(len(table))]
        ax.barh(ys, table[col].astype(float), height=height, label=name)
    ax.set_yticks(range(len(table)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("score on held-out speakers")
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
