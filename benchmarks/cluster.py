"""Training on the cluster: 6 folds on 1 and on 2 workers, and a sweep in parallel and one after another.

One benchmark run, on RAVDESS, with ``benchmarks/accuracy.yaml`` but ``--epochs`` epochs (default
10: the speed-up, not the accuracy, is measured; fold and sweep overheads weigh more at fewer
epochs, so the figure is conservative). The stores are extracted first (not timed), then:

1. ``ser evaluate --folds 6`` with ``train.where: cluster`` on a LocalCluster of 1 worker
   (``train.threads`` 2: the whole machine) and of 2 workers (1 thread each):
   ``cv_two_worker_speedup`` = wall time of 1 worker / wall time of 2;
2. ``ser sweep`` over ``train.learning_rate`` x ``train.spec_time_masks`` (4 combinations),
   ``train.where: local`` (one after another, 2 threads) and ``cluster`` (2 workers):
   ``sweep_parallel_speedup``.

Writes ``benchmarks/results/cluster.json``. Usage::

    SER_TEST_DATA=../shared/data .venv/bin/python benchmarks/cluster.py [--epochs 10] [--no-sweep] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def ser(args: list[str], cwd: Path) -> float:
    """Run ``./ser ARGS`` in ``cwd``; its wall time in seconds. Raises on failure."""
    print("$ ./ser", " ".join(args), flush=True)
    t0 = time.perf_counter()
    subprocess.run([str(REPO / "ser"), *args], cwd=cwd, check=True)
    return round(time.perf_counter() - t0, 1)


def main() -> None:
    """Run both comparisons and write the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = Path(os.environ.get("SER_TEST_DATA", REPO.parent / "shared" / "data"))
    ap.add_argument("--data", type=Path, default=data)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--work", type=Path, default=REPO / "ser-out" / "bench-cluster")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cluster.json")
    ap.add_argument("--no-sweep", action="store_true", help="the 6-fold comparison only")
    args = ap.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    rav = str((args.data / "ravdess").resolve())
    base = yaml.safe_load((REPO / "benchmarks" / "accuracy.yaml").read_text())
    base["train"]["epochs"] = args.epochs

    def config(name: str, where: str, workers: int, threads: int) -> str:
        cfg = json.loads(json.dumps(base))
        cfg["train"].update({"where": where, "threads": threads})
        cfg["extract"] = {"workers": workers}
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return str(path)

    common = ["--mlflow-uri", f"sqlite:///{work / 'mlflow.db'}"]
    # the stores, complete before any clock starts
    ser(["evaluate", rav, "--store", "eval.zarr", "--config", config("x0", "local", 2, 2), "--epochs", "1",
         "--max-folds", "1", "--out-dir", "warm", *common], work)  # extracts the split-agnostic store
    ser(["extract", rav, "--store", "sweep.zarr", "--config", config("x", "local", 2, 2), *common], work)
    out: dict = {"epochs": args.epochs, "config": "benchmarks/accuracy.yaml with train.epochs overridden",
                 "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
                 "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                          text=True).stdout.strip()}
    one = ser(["evaluate", rav, "--store", "eval.zarr", "--config", config("one", "cluster", 1, 2),
               "--out-dir", "one", *common], work)
    two = ser(["evaluate", rav, "--store", "eval.zarr", "--config", config("two", "cluster", 2, 1),
               "--out-dir", "two", *common], work)
    out.update({"cv_one_worker_s": one, "cv_two_workers_s": two, "cv_two_worker_speedup": round(one / two, 2)})
    if args.no_sweep:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        print(json.dumps(out, indent=1))
        return
    grid = work / "grid.yaml"
    grid.write_text("train.learning_rate: [0.003, 0.001]\ntrain.spec_time_masks: [0, 1]\n")
    seq = ser(["sweep", rav, "--grid", str(grid), "--store", "sweep.zarr", "--config",
               config("seq", "local", 2, 2), "--out-dir", "seq", *common], work)
    par = ser(["sweep", rav, "--grid", str(grid), "--store", "sweep.zarr", "--config",
               config("par", "cluster", 2, 1), "--out-dir", "par", *common], work)
    out.update({"sweep_combinations": 4, "sweep_sequential_s": seq, "sweep_parallel_s": par,
                "sweep_parallel_speedup": round(seq / par, 2)})
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
