"""Classical baselines on utterance statistics, chosen by nested actor-disjoint cross-validation.

    SER_TEST_DATA=../shared/data .venv/bin/python benchmarks/classical.py [--out benchmarks/results/classical.json]

Issue 17's baseline rows and its honest-selection protocol, cheap enough to run in full:

* **Features.** Each corpus is extracted by the README's command, ``./ser extract ROOT --variants 0
  --store ser-out/bench-classical/<corpus>.zarr`` (resumable; a finished store answers in about a
  second). Every original clip becomes one vector: the mean and the standard deviation over time
  of each frame feature the store holds (64 log-mel bands, 40 MFCCs, ZCR, RMS: 212 values), the
  statistics pooling of ``utterance_mlp`` done outside the model.
* **Folds** (the same rows as ``ser evaluate``): RAVDESS on EmoBox's 6 folds (``--folds emobox``);
  the CREMA-D subset on 6 folds of consecutive actors (``ser evaluate``'s default ``cv-actor``).
* **Models** (scikit-learn, each after a ``StandardScaler`` fitted on the training rows):
  logistic regression and an RBF SVM (one-vs-rest, class-balanced), each with a grid of ``C``;
  and the seed notebooks' MLP (REFERENCE.md: 300 hidden units, alpha 0.01, batch 256, adaptive
  learning rate, 500 iterations), fixed, nothing tuned.
* **Selection, honest** (``selection_protocol``: ``nested-cv``). For each outer fold, every
  candidate (model family and ``C``) is scored by UA over 4 inner actor-disjoint folds
  (``GroupKFold`` by speaker) of that fold's training actors only; the best is refitted on all of
  them and scores the outer fold's test actors once. The outer test actors never take part in a
  choice. Rows per family (``C`` chosen the same way) and the jointly selected row are reported.

Writes ``--out`` (and prints it): per corpus and row, UA per outer fold, mean and standard
deviation, WA, macro-F1 and the choice per fold; and, for the jointly selected row,
``emobox_folds_ua_mean``, ``emobox_folds_ua_std``, ``crema_actor_ua_mean``, ``crema_actor_ua_std``
and ``selection_protocol``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
WORK = REPO / "ser-out" / "bench-classical"
INNER_FOLDS = 4
GRIDS = {"logreg": [0.01, 0.1, 1.0], "svm_rbf": [1.0, 10.0, 100.0]}


def utterance_statistics(view, rows: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Mean and standard deviation over time of every frame feature: ``(len(rows), 2 * C)`` float64.

    ``C`` = log-mel bands + MFCCs + 2 (ZCR, RMS); read ``chunk`` rows at a time.
    """
    from ser_tasks.learn.data import assemble
    from ser_tasks.signal.features import FEATURES

    out = []
    for s in range(0, len(rows), chunk):
        idx = rows[s:s + chunk]
        frames = assemble("frames", {k: view.features(k).get_orthogonal_selection((idx,)) for k in FEATURES})
        out.append(np.concatenate([frames.mean(axis=1), frames.std(axis=1)], axis=1).astype(np.float64))
    return np.concatenate(out)


def candidate(family: str, c: float | None, seed: int = 0):
    """A scikit-learn pipeline: scaler then the model of ``family`` with regularisation ``c``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if family == "logreg":
        model = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
    elif family == "svm_rbf":
        model = SVC(C=c, kernel="rbf", gamma="scale", class_weight="balanced")
    elif family == "seed_mlp":  # REFERENCE.md's settings, as the seed notebooks ran them
        model = MLPClassifier(hidden_layer_sizes=(300,), alpha=0.01, batch_size=256, learning_rate="adaptive",
                              max_iter=500, random_state=seed)
    else:
        raise ValueError(family)
    return make_pipeline(StandardScaler(), model)


def inner_ua(family: str, c: float | None, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """Mean UA over :data:`INNER_FOLDS` actor-disjoint folds of the training actors."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold

    uas = []
    for tr, te in GroupKFold(n_splits=INNER_FOLDS).split(x, y, groups):
        uas.append(balanced_accuracy_score(y[te], candidate(family, c).fit(x[tr], y[tr]).predict(x[te])))
    return float(np.mean(uas))


def nested(x: np.ndarray, y: np.ndarray, speaker: np.ndarray, folds, families: list[str],
           vocabulary: list[str]) -> dict:
    """Outer folds scored once each, after choosing among ``families`` (and their ``C``) on inner folds."""
    from ser_tasks.learn import metrics

    per_fold = []
    for fold in folds:
        tr, te = fold.train, fold.test
        grid = [(f, c) for f in families for c in GRIDS.get(f, [None])]
        inner = {(f, c): inner_ua(f, c, x[tr], y[tr], speaker[tr]) for f, c in grid} if len(grid) > 1 else {}
        family, c = max(inner, key=inner.get) if inner else grid[0]
        pred = candidate(family, c).fit(x[tr], y[tr]).predict(x[te])
        s = metrics.scores(y[te], pred, vocabulary)
        per_fold.append({"fold": fold.index + 1, "test_speakers": list(fold.test_speakers), "n": int(len(te)),
                         "ua": round(s["ua"], 4), "wa": round(s["wa"], 4), "macro_f1": round(s["macro_f1"], 4),
                         "chosen": f"{family}" + (f" C={c:g}" if c is not None else ""),
                         "inner_ua": round(inner.get((family, c), float("nan")), 4)})
    ua = [f["ua"] for f in per_fold]
    return {"ua_mean": round(float(np.mean(ua)), 4), "ua_std": round(float(np.std(ua)), 4),
            "wa_mean": round(float(np.mean([f["wa"] for f in per_fold])), 4),
            "macro_f1_mean": round(float(np.mean([f["macro_f1"] for f in per_fold])), 4), "folds": per_fold}


def extract(root: Path, store: Path) -> None:
    """``./ser extract ROOT --variants 0`` into ``store`` (answers at once when it is complete)."""
    cmd = [str(REPO / "ser"), "extract", str(root), "--variants", "0", "--store", str(store),
           "--mlflow-uri", f"sqlite:///{WORK / 'mlflow.db'}"]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def corpus_rows(name: str, root: Path, partition: str | None) -> dict:
    """Every row of one corpus: nested selection for each family and for all of them jointly."""
    from ser_tasks.learn.folds import load_partition, make_folds
    from ser_tasks.store.zarr_store import FeatureStore

    store = WORK / f"{name}.zarr"
    extract(root, store)
    view = FeatureStore.locate(str(store)).view()
    folds = make_folds("cv-actor", view.column("speaker"), view.column("clip_id"), view.column("variant"),
                       view.done(), 6, 0, load_partition(partition) if partition else None, view.labels())
    rows = np.unique(np.concatenate([f.test for f in folds]))  # originals only, as the folds score them
    t0 = time.perf_counter()
    x_rows = utterance_statistics(view, rows)
    x = np.zeros((int(rows.max()) + 1, x_rows.shape[1]))
    x[rows] = x_rows
    y, speaker = view.labels(), np.asarray(view.column("speaker")).astype(str)
    # train on originals too: the classical rows see no augmented copies
    folds = [dataclasses.replace(f, train=np.intersect1d(f.train, rows)) for f in folds]
    out = {"clips": int(len(rows)), "features": int(x.shape[1]), "feature_seconds": round(time.perf_counter() - t0, 1),
           "folds": "emobox" if partition else "6 blocks of consecutive actors", "rows": {}}
    for label, families in (("logreg", ["logreg"]), ("svm_rbf", ["svm_rbf"]), ("seed_mlp", ["seed_mlp"]),
                            ("nested_selected", ["logreg", "svm_rbf", "seed_mlp"])):
        t = time.perf_counter()
        out["rows"][label] = {**nested(x, y, speaker, folds, families, view.vocabulary),
                              "seconds": round(time.perf_counter() - t, 1)}
        r = out["rows"][label]
        print(f"{name} {label}: UA {r['ua_mean']:.3f} ± {r['ua_std']:.3f} "
              f"({', '.join(f['chosen'] for f in r['folds'])})", flush=True)
    return out


def main() -> None:
    """Run both corpora and write the results JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("SER_TEST_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--out", default=str(RESULTS / "classical.json"))
    args = ap.parse_args()
    data = Path(args.data)
    WORK.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    ravdess = corpus_rows("ravdess", data / "ravdess", "emobox")
    crema = corpus_rows("crema_d", data / "crema-d", None)
    best_r, best_c = ravdess["rows"]["nested_selected"], crema["rows"]["nested_selected"]
    result = {
        "date": dt.date.today().isoformat(), "commit": commit, "selection_protocol": "nested-cv",
        "selection": f"per outer fold, {INNER_FOLDS} inner actor-disjoint folds of its training actors",
        "emobox_folds_ua_mean": best_r["ua_mean"], "emobox_folds_ua_std": best_r["ua_std"],
        "crema_actor_ua_mean": best_c["ua_mean"], "crema_actor_ua_std": best_c["ua_std"],
        "ravdess": ravdess, "crema_d": crema,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("ravdess", "crema_d")}, indent=1))


if __name__ == "__main__":
    main()
