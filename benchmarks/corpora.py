"""Many corpora: CREMA-D at its size, RAVDESS + CREMA-D together, cross-corpus, and EmoBox's folds.

Runs the README's own commands (``./ser``) on the shared data, each step in its own working folder
under ``--work`` (its own store and ``mlflow.db``), and keeps each step's ``--summary-json``, so
``--skip-done`` resumes after an interruption. Steps (``--steps``, in this order by default):

- ``extract``: ``ser extract`` of RAVDESS (1,440 clips) and of the CREMA-D subset (2,447 clips),
  no augmentation, 2 workers: wall time, clips/s, and the peak resident memory of the command's
  process tree (sampled every 0.2 s with psutil);
- ``run_both``: ``ser run RAVDESS CREMA-D``, the default recipe on both corpora (actor-disjoint
  split stratified by corpus and sex): test UA overall and per corpus;
- ``cross_corpus``: ``ser evaluate RAVDESS CREMA-D --protocol cross-corpus`` with
  ``benchmarks/accuracy.yaml``: train on one corpus, score the other on the shared classes;
- ``emobox``: ``ser evaluate RAVDESS --folds emobox`` with ``benchmarks/accuracy.yaml``;
- ``crema_cv``: ``ser evaluate CREMA-D`` (6 folds of 5 consecutive actors) with ``accuracy.yaml``;
- ``crema_cv_joint``: the same 6 CREMA-D test folds (``--folds-file``), every fold also training on
  RAVDESS's clips of CREMA-D's six classes (``--emotions``; RAVDESS's calm and surprised are left out);
- ``emobox_joint``: EmoBox's RAVDESS folds, every fold also training on all of CREMA-D (its six
  classes are among RAVDESS's eight). Speakers a partition does not name train in every fold.

Writes ``benchmarks/results/corpora.json`` with the steps that have run: ``crema_cv_actor_ua_mean``
/ ``_std``, ``ravdess_emobox_folds_ua_mean`` / ``_std``, ``cross_corpus`` (per held-out corpus),
``run_both`` and ``extract``. Usage::

    SER_TEST_DATA=../shared/data .venv/bin/python benchmarks/corpora.py [--steps extract,run_both] [--skip-done]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
STEPS = ("extract", "run_both", "cross_corpus", "emobox", "crema_cv", "crema_cv_joint", "emobox_joint")
#: CREMA-D's classes, all of them among RAVDESS's eight.
CREMA_CLASSES = "neutral,happy,sad,angry,fearful,disgust"


def crema_blocks_csv(crema_root: str, path: Path) -> Path:
    """Write the ``crema_cv`` step's folds (6 blocks of consecutive CREMA-D actors) as a ``--folds-file`` CSV."""
    from ser_tasks.corpus.manifest import build_manifest
    from ser_tasks.learn.folds import speaker_blocks

    speakers = build_manifest(crema_root).clips["speaker"].unique()
    rows = [f"{k},{spk}" for k, block in enumerate(speaker_blocks(speakers, 6)) for spk in block]
    path.write_text("fold,speaker\n" + "\n".join(rows) + "\n")
    return path


def ser(args: list[str], cwd: Path) -> tuple[float, float]:
    """Run ``./ser ARGS`` in ``cwd``: (wall seconds, peak RSS of its process tree in MiB). Raises on failure."""
    import psutil

    print("$ ./ser", " ".join(args), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(REPO / "ser"), *args], cwd=cwd)
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    done.set()
    sampler.join()
    if code:
        raise SystemExit(f"./ser {' '.join(args)} exited with {code}")
    return round(time.perf_counter() - t0, 1), round(peak / 2**20)


def step(name: str, args: argparse.Namespace, cmd: list[str]) -> dict:
    """Run one step's command in ``work/name`` (or reuse its summary) and return the summary, timed.

    The summary gains ``_wall_s``, ``_peak_rss_mib`` and the ``_commit`` and ``_date`` that ran it.
    """
    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    out = work / "summary.json"
    if args.skip_done and out.exists():
        print(f"{name}: reusing {out}", flush=True)
        return json.loads(out.read_text())
    commit, date = head_commit(), time.strftime("%Y-%m-%d")  # a commit made during the run did not run it
    wall, peak = ser([*cmd, "--mlflow-uri", f"sqlite:///{work / 'mlflow.db'}", "--summary-json", str(out)], work)
    summary = json.loads(out.read_text())
    summary["_wall_s"], summary["_peak_rss_mib"] = wall, peak
    # a reused step reports the commit and date that ran it, not the ones reusing it
    summary["_commit"], summary["_date"] = commit, date
    out.write_text(json.dumps(summary, indent=1, default=str))
    return summary


def folds(summary: dict) -> list[dict]:
    """Per-fold scores of an evaluation summary, without the confusion matrices."""
    return [{k: v for k, v in f.items() if k != "confusion"} for f in summary["evaluation"]["fold_results"]]


def corpora(step: str, work: Path, out: Path, data: Path, config: Path | None = None) -> dict:
    """Run this script as a child with ``--steps STEP --cluster --skip-done``; the step's section of ``out``.

    ``config`` replaces the recipe (``benchmarks/accuracy.yaml``) when given.
    """
    cmd = [sys.executable, str(REPO / "benchmarks" / "corpora.py"), "--steps", step, "--cluster", "--skip-done",
           "--work", str(work), "--out", str(out), "--data", str(data)]
    if config is not None:
        cmd += ["--config", str(config)]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())[step]


def cluster_config(config: Path, work: Path) -> Path:
    """Write ``work/cluster-<name>``: ``config`` with its folds trained on a 2-worker LocalCluster.

    Sets ``train.where: cluster`` and ``train.threads: 1`` (two folds at a time, one thread each)
    and ``extract.workers: 2``; the recipe is otherwise unchanged. Returns the new file's path.
    """
    import yaml

    derived = yaml.safe_load(config.read_text())
    derived.setdefault("train", {}).update({"where": "cluster", "threads": 1})
    derived["extract"] = {**derived.get("extract", {}), "workers": 2}
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"cluster-{config.name}"
    out.write_text(yaml.safe_dump(derived))
    return out


def head_commit() -> str:
    """This checkout's short commit hash."""
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()


def summary(section: dict, source: str | None = None) -> dict:
    """Fold UAs, their mean and sd, WA, macro-F1 and wall time of a corpora.json evaluation section.

    ``source`` says where the section came from; by default "this run" with its commit and date.
    """
    uas = [round(f["ua"], 4) for f in section["folds"]]
    return {"source": source or f"this run (commit {section['commit']}, {section['date']})", "fold_ua": uas,
            "ua_mean": round(statistics.mean(uas), 4), "ua_std": round(statistics.stdev(uas), 4),
            "wa_mean": round(section["wa_mean"], 4), "macro_f1_mean": round(section["macro_f1_mean"], 4),
            "wall_s": section["wall_s"]}


def development_result(**fields) -> dict:
    """The head of a development-corpus driver's JSON: date, commit, ``selection_protocol``, then ``fields``."""
    return {"date": time.strftime("%Y-%m-%d"), "commit": head_commit(), "selection_protocol": "development-corpus",
            **fields}


def report_emobox(result: dict, adopted: bool, key: str, work: Path, data: Path, config: Path | None = None,
                  step: str = "emobox",
                  not_run: str = "rejected on the development corpus; the recipe's EmoBox figure stands") -> None:
    """The protocol's report: EmoBox's RAVDESS folds run once, only when the change was adopted.

    Runs ``step`` (``emobox`` or ``emobox_joint``) with ``config`` (default: the recipe) in
    ``work/report`` (:func:`corpora`) and adds its :func:`summary` to ``result`` under ``key``, with
    ``emobox_folds_ua`` and ``emobox_folds_ua_mean`` / ``_std``; when rejected, adds
    ``emobox_not_run`` = ``not_run`` instead.
    """
    if not adopted:
        result["emobox_not_run"] = not_run
        return
    emo = summary(corpora(step, work / "report", work / "report.json", data, config))
    result.update({key: emo, "emobox_folds_ua": emo["fold_ua"], "emobox_folds_ua_mean": emo["ua_mean"],
                   "emobox_folds_ua_std": emo["ua_std"]})


def recipe_crema_baseline() -> dict:
    """:func:`summary` of the recipe's CREMA-D folds in ``results/corpora.json``, the development baseline.

    Raises:
        SystemExit: that ``crema_cv`` step did not run the recipe (``accuracy.yaml``) on the cluster.
    """
    sec = json.loads((RESULTS / "corpora.json").read_text())["crema_cv"]
    if not sec.get("cluster") or sec["config"] != "accuracy.yaml":
        raise SystemExit("results/corpora.json's crema_cv step is not the recipe on the cluster; re-run it first")
    return summary(sec, f"results/corpora.json crema_cv (commit {sec['commit']}, {sec['date']})")


def main() -> None:
    """Run the chosen steps and merge their figures into ``corpora.json``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = Path(os.environ.get("SER_TEST_DATA", REPO.parent / "shared" / "data"))
    ap.add_argument("--data", type=Path, default=data)
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--config", type=Path, default=REPO / "benchmarks" / "accuracy.yaml")
    ap.add_argument("--work", type=Path, default=REPO / "ser-out" / "bench-corpora")
    ap.add_argument("--out", type=Path, default=RESULTS / "corpora.json")
    ap.add_argument("--skip-done", action="store_true")
    ap.add_argument("--crema-max-folds", type=int, default=None,
                    help="run only the first N of CREMA-D's 6 folds (the figure is then over N folds, and says so)")
    ap.add_argument("--cluster", action="store_true",
                    help="evaluations train their folds as parallel tasks on a 2-worker LocalCluster (train.where: "
                         "cluster, 1 thread each); the recipe is unchanged")
    args = ap.parse_args()
    args.work = args.work.resolve()
    rav, crema = str((args.data / "ravdess").resolve()), str((args.data / "crema-d").resolve())
    cfg = str(args.config.resolve())
    if args.cluster:
        cfg = str(cluster_config(args.config, args.work))
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    head, today = head_commit(), time.strftime("%Y-%m-%d")

    def ran(s: dict) -> dict:
        """The commit and date that ran a step's summary (older summaries: this checkout's, today)."""
        return {"commit": s.get("_commit", head), "date": s.get("_date", today)}

    for name in args.steps.split(","):
        if name not in STEPS:
            raise SystemExit(f"unknown step {name!r}; choose from {', '.join(STEPS)}")
        if name == "extract":
            figures = {}
            for corpus, root in (("ravdess", rav), ("crema_d", crema)):
                s = step(f"extract_{corpus}", args, ["extract", root, "--store", "features.zarr", "--variants", "0"])
                figures[corpus] = {"clips": s["clips"], "failed_rows": s["failed_rows"], "wall_s": s["_wall_s"],
                                   "flow_s": s["seconds"], "clips_per_s_flow": round(s["clips_per_second"], 1),
                                   "clips_per_s_command": round(s["clips"] / s["_wall_s"], 1),
                                   "peak_rss_mib": s["_peak_rss_mib"]}
            result["extract"] = {**ran(s), "variants": 0, "workers": 2, **figures}
        elif name == "run_both":
            s = step(name, args, ["run", rav, crema, "--store", "features.zarr", "--out-dir", "run"])
            t = s["train"]
            result["run_both"] = {**ran(s), "command": f"./ser run {rav} {crema}",
                                  "ua": t["ua"], "wa": t["wa"], "macro_f1": t["macro_f1"],
                                  "test_clips": t["test_clips"],
                                  "per_corpus": {c: {k: v[k] for k in ("ua", "wa", "macro_f1", "n")}
                                                 for c, v in t.get("per_corpus", {}).items()},
                                  "rows": s["extract"]["rows"], "failed_rows": s["extract"]["failed_rows"],
                                  "train_seconds": t["train_seconds"], "wall_s": s["_wall_s"],
                                  "model_version": t["model_version"], "alias": t["alias"]}
        elif name == "cross_corpus":
            s = step(name, args, ["evaluate", rav, crema, "--store", "features.zarr", "--protocol", "cross-corpus",
                                  "--config", cfg, "--out-dir", "runs"])
            result["cross_corpus"] = {**ran(s), "config": args.config.name,
                                      "held_out": {f["held_out"]: {k: f[k] for k in ("ua", "wa", "macro_f1", "n")}
                                                   for f in folds(s)},
                                      "wall_s": s["_wall_s"]}
        elif name in ("emobox", "emobox_joint"):
            extra = [crema] if name == "emobox_joint" else []
            s = step(name, args, ["evaluate", rav, *extra, "--store", "features.zarr", "--folds", "emobox",
                                  "--config", cfg, "--out-dir", "runs"])
            ev = s["evaluation"]
            if name == "emobox":
                result.update({"ravdess_emobox_folds_ua_mean": ev["ua_mean"],
                               "ravdess_emobox_folds_ua_std": ev["ua_std"]})
            result[name] = {**ran(s), "config": args.config.name, "cluster": args.cluster,
                            "wa_mean": ev["wa_mean"],
                            "macro_f1_mean": ev["macro_f1_mean"], "folds": folds(s), "wall_s": s["_wall_s"]}
        else:
            roots, opts = [crema], ["--max-folds", str(args.crema_max_folds)] if args.crema_max_folds else []
            if name == "crema_cv_joint":
                (args.work / name).mkdir(parents=True, exist_ok=True)
                blocks = crema_blocks_csv(crema, args.work / name / "crema_folds.csv")
                roots.append(rav)
                opts += ["--emotions", CREMA_CLASSES, "--folds-file", str(blocks)]
            s = step(name, args, ["evaluate", *roots, "--store", "features.zarr", "--config", cfg, "--out-dir", "runs",
                                  *opts])
            ev = s["evaluation"]
            if name == "crema_cv":
                result.update({"crema_cv_actor_ua_mean": ev["ua_mean"], "crema_cv_actor_ua_std": ev["ua_std"],
                               "crema_cv_actor_folds_run": ev["folds"]})
            result[name] = {**ran(s), "config": args.config.name, "cluster": args.cluster,
                            "wa_mean": ev["wa_mean"],
                            "macro_f1_mean": ev["macro_f1_mean"], "folds": folds(s), "wall_s": s["_wall_s"]}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"{name}: written to {args.out}", flush=True)


if __name__ == "__main__":
    main()
