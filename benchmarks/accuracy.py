"""Honest accuracy on RAVDESS: actor-disjoint cross-validation and the leakage ablation.

Runs the README's own command, ``./ser evaluate``, three times on one split-agnostic store:

1. ``--protocol cv-actor``: 6 folds of 4 held-out actors (EmoBox's protocol), all folds;
2. ``--protocol clip-split`` and 3. ``--protocol row-split`` (the seed notebooks'), the same
   model, features, augmentation and schedule, on the first ``--leaky-folds`` folds of their own
   6-fold partitions (their folds are random draws of clips or rows, so a few already show the
   inflation; every fold of the leaky protocols costs as much as an honest one).

Writes ``benchmarks/results/accuracy.json`` (its key figures also under ``"figures"``, as in
``throughput.json``): ``cv_actor_ua_mean``, ``cv_actor_ua_std`` (and WA,
macro-F1), ``ablation_row_split_ua``, ``ablation_clip_split_ua``, ``ablation_actor_split_ua``
(the cv-actor mean; ``ablation_actor_split_ua_same_folds`` is its mean over the same number of
folds as the leaky ones), every fold's scores, the configuration and the wall times. Each step's
summary is kept, so ``--skip-done`` resumes after an interruption without redoing finished steps.

Usage::

    SER_TEST_DATA=../shared/data .venv/bin/python benchmarks/accuracy.py [--leaky-folds 2] [--cluster]

``--cluster`` trains two folds at a time on a 2-worker LocalCluster (``corpora.cluster_config``);
with ``train.ensemble: 3`` a fold trains its 3 members one after another.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from corpora import REPO, RESULTS, cluster_config, head_commit


def run_protocol(protocol: str, args: argparse.Namespace, work: Path, max_folds: int | None) -> dict:
    """``./ser evaluate`` for one protocol; returns its ``--summary-json`` (kept in ``work``)."""
    out = work / f"{protocol}.json"
    if args.skip_done and out.exists():
        print(f"{protocol}: reusing {out}", flush=True)
        return json.loads(out.read_text())
    cmd = [str(REPO / "ser"), "evaluate", str(args.data), "--store", str(work / "features.zarr"),
           "--protocol", protocol, "--folds", str(args.folds), "--config", str(args.config),
           "--mlflow-uri", f"sqlite:///{work / 'mlflow.db'}", "--summary-json", str(out),
           "--out-dir", str(work / "runs")]
    if max_folds is not None:
        cmd += ["--max-folds", str(max_folds)]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=work)
    print(f"{protocol}: {time.perf_counter() - t0:.0f} s", flush=True)
    return json.loads(out.read_text())


def main() -> None:
    """Parse arguments, run the three protocols, write the JSON results and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = Path(os.environ.get("SER_TEST_DATA", REPO.parent / "shared" / "data")) / "ravdess"
    ap.add_argument("--data", type=Path, default=default_data, help="RAVDESS root (Actor_01 ... Actor_24)")
    ap.add_argument("--config", type=Path, default=REPO / "benchmarks" / "accuracy.yaml")
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--leaky-folds", type=int, default=2, help="folds run of clip-split and row-split")
    ap.add_argument("--work", type=Path, default=REPO / "ser-out" / "bench-accuracy")
    ap.add_argument("--out", type=Path, default=RESULTS / "accuracy.json")
    ap.add_argument("--skip-done", action="store_true", help="reuse the steps whose summaries exist in --work")
    ap.add_argument("--cluster", action="store_true",
                    help="train the folds as parallel tasks on a 2-worker LocalCluster (train.where: cluster, "
                         "1 thread each); the recipe is unchanged")
    args = ap.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data}: no RAVDESS folder (set SER_TEST_DATA or --data)")
    args.work = args.work.resolve()  # the runs execute with it as their working directory
    args.data = args.data.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    args.config = args.config.resolve()
    recipe = args.config
    if args.cluster:
        args.config = cluster_config(recipe, args.work)

    cv = run_protocol("cv-actor", args, args.work, None)["evaluation"]
    clip = run_protocol("clip-split", args, args.work, args.leaky_folds)["evaluation"]
    row = run_protocol("row-split", args, args.work, args.leaky_folds)["evaluation"]
    same = cv["fold_results"][:args.leaky_folds]
    result = {
        "corpus": "RAVDESS speech, 1,440 clips, 24 actors, 8 classes",
        "commit": head_commit(), "date": time.strftime("%Y-%m-%d"),
        "config_file": str(recipe.relative_to(REPO)) if recipe.is_relative_to(REPO) else str(recipe),
        "config": recipe.read_text(), "cluster": args.cluster,
        "cv_actor_ua_mean": cv["ua_mean"], "cv_actor_ua_std": cv["ua_std"],
        "cv_actor_wa_mean": cv["wa_mean"], "cv_actor_wa_std": cv["wa_std"],
        "cv_actor_macro_f1_mean": cv["macro_f1_mean"], "cv_actor_macro_f1_std": cv["macro_f1_std"],
        "cv_actor_folds": cv["fold_results"],
        "ablation_row_split_ua": row["ua_mean"], "ablation_clip_split_ua": clip["ua_mean"],
        "ablation_actor_split_ua": cv["ua_mean"],
        "ablation_actor_split_ua_same_folds": sum(r["ua"] for r in same) / len(same),
        "ablation_folds": {"row-split": row["folds"], "clip-split": clip["folds"], "cv-actor": cv["folds"]},
        "ablation": {name: {k: r[k] for k in ("ua_mean", "ua_std", "wa_mean", "macro_f1_mean", "folds", "fold_results")}
                     for name, r in (("row-split", row), ("clip-split", clip), ("cv-actor", cv))},
        "confusion_pooled_cv_actor": cv["confusion_pooled"], "vocabulary": cv["vocabulary"],
        "seconds": {"cv-actor": cv["seconds"], "clip-split": clip["seconds"], "row-split": row["seconds"]},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    # The keys, also under "figures" as in throughput.json, so one reader serves both files.
    result["figures"] = {k: result[k] for k in ("cv_actor_ua_mean", "cv_actor_ua_std", "ablation_row_split_ua",
                                                "ablation_clip_split_ua", "ablation_actor_split_ua")}
    for fold in result["cv_actor_folds"]:
        fold.pop("confusion", None)
    for entry in result["ablation"].values():
        for fold in entry["fold_results"]:
            fold.pop("confusion", None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nactor-disjoint 6-fold CV: UA {cv['ua_mean']:.3f} ± {cv['ua_std']:.3f}  WA {cv['wa_mean']:.3f} ± "
          f"{cv['wa_std']:.3f}  macro-F1 {cv['macro_f1_mean']:.3f} ± {cv['macro_f1_std']:.3f}")
    for name, r in (("row-split", row), ("clip-split", clip), ("cv-actor", cv)):
        print(f"  {name:<11} UA {r['ua_mean']:.3f}  ({r['folds']} folds)")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
