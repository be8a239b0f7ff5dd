"""Extraction throughput, orchestration overhead, no-op rerun and worker memory, on RAVDESS.

Measured against the seed notebooks' loop.

    .venv/bin/python benchmarks/throughput.py [--data ../shared/data] [--limit N] [--repeats 3] [--skip-4x]

Scenarios, each on a fresh Dask LocalCluster of single-threaded worker processes:

* **seed loop** (a single-threaded child process): the earlier notebooks' per-file loop
  (../shared/docs/REFERENCE.md), re-implemented here only: ``librosa.load`` at the native rate, a
  noisy and a pitch-shifted copy, zero padding on both sides to 3.5 s, then a 128-band dB mel
  spectrogram, ZCR and RMS (frame 2048, hop 512) of each of the three, kept in lists. One process.
* **plain loop** (a single-threaded child process, as a Dask worker is): the pipeline's own task
  body (:func:`ser_tasks.store.extraction.process_region`) called over every batch of a planned store: the
  work without Prefect or Dask.
* **plain loop, two processes at once** (each single-threaded, on the clips of 12 actors): the
  same work with nothing shared but the machine, for the most two workers can gain on it
  (``two_process_ceiling``) and how much CPU per row contention costs (``two_process_cpu_inflation``).
* **pipeline, 1 and 2 workers**: the ``extract_features`` flow (Prefect + Dask), same corpus, same
  config (2 augmented copies per training clip; the default features: log-mel, MFCC, ZCR, RMS and
  the F0 contour, which the seed loop never computes; the JSON's ``features`` names them).
* **no-op rerun**: the flow again on the 2-worker store: nothing new to compute.
* **cold start, 1 and 2 workers**: the flow as ``ser extract --workers N`` runs it, starting and
  stopping its own LocalCluster inside the clock (``two_worker_speedup_cold``).
* **training input**: samples per second of the Zarr loader alone (:class:`ser_tasks.learn.data.ZarrSequence`
  over the training rows) against the default model's training step alone.
* **4x corpus**: every clip linked 4 times (folder-per-emotion layout, distinct names), 2 workers,
  for the peak memory per worker.

Every process starts its clock after its one-time start-up: imports, then one synthetic clip
through :func:`ser_tasks.store.extraction.warm_up` (what librosa loads on first use: scipy's lazy modules,
numba's cached kernels; about 3 s, reported as ``warm_up_s``). The seed loop's process warms up
the same way, as do the pipeline's workers (which do it in the background when the pipeline
starts them: :mod:`ser_tasks.runtime.worker_setup`). Everything after that is counted, in the workers and
in the flow's process: Prefect's and Dask's work per task, the first task's Prefect client and
settings, building the manifest and planning the store.

Every scenario (the seed loop, the plain loop, its two-process pair and the pipeline with 1 and 2
workers, warm and cold) runs ``--repeats`` times, interleaved (seed, plain, pair, 1 worker, 2 workers,
cold 1, cold 2, seed, ...), since one run on a shared 2-vCPU VM varies by 10 % or more and the VM
drifts within a run; each scenario's key holds its run of median wall time, and ``wall_s_runs``
every run's. ``per_core_speedup_runs`` gives the per-core ratio of each repeat's own pair of runs.

Throughput is counted in feature rows (one clip or augmented copy through features), the unit both
loops share: the seed loop makes 3 rows per clip, the pipeline 3 per training clip and 1 per
validation/test clip. CPU seconds are those of the worker processes plus the flow's process.
Writes benchmarks/results/throughput.json and prints it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ser_tasks.runtime import process_env  # noqa: E402

process_env.apply()

import librosa  # noqa: E402
import numpy as np  # noqa: E402

EMOTION_FOLDERS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
                   "07": "disgust", "08": "surprised"}


# -- the seed notebooks' loop (REFERENCE.md), benchmark only ---------------------------------
def seed_loop(paths: list[str]) -> dict:
    """Per file: load at the native rate, noisy + pitch-shifted copies, pad to 3.5 s, mel/ZCR/RMS."""
    from ser_tasks.store.extraction import warm_up

    warm = warm_up()
    rng = np.random.default_rng(0)
    mels, zcrs, rmss = [], [], []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for path in paths:
        y, sr = librosa.load(path, sr=None)
        noisy = y + 0.035 * rng.uniform() * np.max(y) * rng.standard_normal(len(y))
        pitched = librosa.effects.pitch_shift(y, sr=sr, n_steps=0.7)
        target = int(3.5 * sr)
        for x in (y, noisy, pitched):
            x = x[:target]
            pad = target - len(x)
            x = np.pad(x, (pad // 2, pad - pad // 2))
            mel = librosa.feature.melspectrogram(y=x, sr=sr, n_fft=2048, hop_length=512, n_mels=128)
            mels.append(librosa.power_to_db(mel))
            zcrs.append(librosa.feature.zero_crossing_rate(x, frame_length=2048, hop_length=512))
            rmss.append(librosa.feature.rms(y=x, frame_length=2048, hop_length=512))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"clips": len(paths), "rows": len(mels), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "peak_rss_mib": round(_peak_rss_mib(), 1), "warm_up_s": round(warm, 2)}


# -- the pipeline ------------------------------------------------------------------------------
def _peak_rss_mib() -> float:
    """This process's own peak resident set (``VmHWM``), in MiB.

    Not ``ru_maxrss``: Linux carries that over fork and exec, so a worker would report its parent's
    peak (measured: 2,012 MiB for workers of a benchmark process that had peaked there, against
    424 MiB of their own).
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def _worker_usage() -> dict:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": r.ru_utime + r.ru_stime, "peak_rss_mib": _peak_rss_mib()}


def _flow_record(summary: dict, workers: int, wall: float, flow_cpu: float, worker_cpu: float) -> dict:
    """One pipeline run's figures: the flow's summary counts, wall and CPU seconds (workers + flow)."""
    return {"workers": workers, "clips": summary["clips"], "rows": summary["rows"],
            "computed_rows": summary["computed_rows"], "wall_s": round(wall, 2), "flow_seconds": summary["seconds"],
            "cpu_s": round(worker_cpu + flow_cpu, 2), "worker_cpu_s": round(worker_cpu, 2)}


def run_flow(root: str, store: str, cfg: dict, workers: int, corpus: str | None = None, runs: int = 1) -> list[dict]:
    """The extraction flow on a fresh LocalCluster of ``workers`` processes, ``runs`` times in a row."""
    from distributed import Client, LocalCluster
    from prefect_dask import DaskTaskRunner

    from flows.extract import extract_features
    from ser_tasks.store.extraction import warm_up

    out = []
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        # Workers import the task's module and warm up before the clock starts, as both loops do:
        # a once-per-process cost, like starting the worker (2.6 CPU-s measured).
        client.run(importlib.import_module, "flows.extract")
        warm = max(client.run(warm_up).values())
        for _ in range(runs):
            before = client.run(_worker_usage)
            wall0, cpu0 = time.perf_counter(), time.process_time()
            summary = extract_features.with_options(task_runner=DaskTaskRunner(address=cluster.scheduler_address))(
                root, store, cfg, corpus, show_progress=False)
            wall, flow_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            after = client.run(_worker_usage)
            worker_cpu = sum(after[w]["cpu_s"] - before[w]["cpu_s"] for w in after)
            out.append({**_flow_record(summary, workers, wall, flow_cpu, worker_cpu),
                        "peak_rss_mib_per_worker": round(max(a["peak_rss_mib"] for a in after.values()), 1),
                        "warm_up_s": round(warm, 2)})
    return out


def run_flow_cold(root: str, store: str, cfg: dict, workers: int) -> dict:
    """The extraction flow as ``ser extract --workers N`` runs it, with its own LocalCluster.

    The flow starts its own LocalCluster (:func:`flows.extract.dask_runner`: a fresh forkserver
    that imports and warms up once, workers forked from it) and stops it.

    Wall time from the flow call to its return, cluster start and stop included. CPU seconds: the
    flow's process plus its reaped descendants: the forkserver, stopped (and so reaped) after the
    flow, and the worker processes it forked and reaped.
    """
    from flows.engine import forkserver
    from flows.extract import dask_runner, extract_features

    forkserver.stop()  # cold: the server's imports and warm-up inside the clock
    wall0, cpu0 = time.perf_counter(), time.process_time()
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = extract_features.with_options(task_runner=dask_runner(None, workers))(root, store, cfg,
                                                                                     show_progress=False)
    wall, flow_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    forkserver.stop()  # after the clock: only so that its CPU seconds (and its workers') reach RUSAGE_CHILDREN
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (kids.ru_utime + kids.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    return _flow_record(summary, workers, wall, flow_cpu, worker_cpu)


def plain_loop(root: str, store: str, cfg_dict: dict) -> dict:
    """The flow's task body over every batch, in this process (no Prefect, no Dask)."""
    from ser_tasks.config import PipelineConfig
    from ser_tasks.corpus.manifest import build_manifest
    from ser_tasks.corpus.split import assign_split
    from ser_tasks.store.extraction import process_region, warm_up
    from ser_tasks.store.plan import plan_rows
    from ser_tasks.store.zarr_store import FeatureStore

    cfg = PipelineConfig.model_validate(cfg_dict)
    warm = warm_up()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    m = build_manifest(root)
    clips, _ = assign_split(m.clips, cfg.split)
    fs = FeatureStore.create_or_resume(store, cfg, plan_rows(clips, cfg))
    rows = 0
    for s, e in fs.pending_regions():
        rows += process_region(fs.url, fs.group, s, e)["rows"]
    fs.finalize()
    return {"clips": len(clips), "rows": rows, "wall_s": round(time.perf_counter() - wall0, 2),
            "cpu_s": round(time.process_time() - cpu0, 2), "peak_rss_mib": round(_peak_rss_mib(), 1),
            "warm_up_s": round(warm, 2)}


def loader_vs_model(store_url: str, model_name: str = "compact_cnn", batch_size: int = 32, steps: int = 30) -> dict:
    """Samples per second of the Zarr training loader alone against the model's training step alone.

    The loader: one pass over the training rows, no model. The training step: ``train_on_batch`` on
    one cached batch.
    """
    import keras

    from ser_tasks.learn.data import ZarrSequence, input_shape
    from ser_tasks.learn.models import MODEL_INPUTS, build_model
    from ser_tasks.learn.training import fit_normalizer
    from ser_tasks.store.zarr_store import FeatureStore

    view = FeatureStore.locate(store_url).view()
    name = MODEL_INPUTS[model_name]
    idx = view.rows("train")
    seq = ZarrSequence(view, idx, name, batch_size, shuffle=True, seed=0)
    t0 = time.perf_counter()
    for i in range(len(seq)):
        seq[i]
    loader_s = time.perf_counter() - t0
    vocab = view.vocabulary
    model = build_model(model_name, input_shape(view, name), len(vocab), fit_normalizer(view, idx, name))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    x, y = seq[0][:2]
    for _ in range(3):  # graph tracing and first-step allocation
        model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    step_s = time.perf_counter() - t0
    loader = idx.size / loader_s
    model_rate = steps * len(x) / step_s
    return {"model": model_name, "batch_size": batch_size, "train_rows": int(idx.size),
            "loader_samples_per_s": round(loader, 1), "model_samples_per_s": round(model_rate, 1),
            "loader_to_model_ratio": round(loader / model_rate, 2)}


def link_tree(files: list[Path], dest: Path) -> Path:
    """Symbolic links to ``files`` under ``dest``, each in a folder named as its own (``Actor_NN``)."""
    for p in files:
        (dest / p.parent.name).mkdir(parents=True, exist_ok=True)
        os.symlink(p, dest / p.parent.name / p.name)
    return dest


def corpus_copies(files: list[Path], dest: Path, copies: int) -> Path:
    """``copies`` links of every clip in a folder-per-emotion tree, with distinct names."""
    for k in range(copies):
        for p in files:
            folder = dest / EMOTION_FOLDERS[p.name.split("-")[2]]
            folder.mkdir(parents=True, exist_ok=True)
            os.symlink(p, folder / f"copy{k}-{p.name}")
    return dest


# What a Dask nanny sets in its workers (distributed.nanny.pre-spawn-environ): one BLAS/OpenMP
# thread per process. Both loops run in a child process under the same, so that CPU seconds and
# wall seconds compare one core with one core.
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                 "NUMBA_NUM_THREADS": "1"}


def start_child(name: str, *args):
    """Start ``name(*args)`` of this module in a fresh single-threaded Python process (a ``Popen``)."""
    import subprocess

    code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import throughput as t; "
            f"print(json.dumps(t.{name}(*json.loads(sys.argv[1]))))")
    proc = subprocess.Popen([sys.executable, "-W", "ignore", "-c", code,
                             json.dumps([str(a) if isinstance(a, Path) else a for a in args])],
                            env={**os.environ, **SINGLE_THREAD}, stdout=subprocess.PIPE, text=True)
    proc.bench_name = name
    return proc


def child_result(proc) -> dict:
    """Wait for a :func:`start_child` process; its result. Raises ``RuntimeError`` if it failed."""
    out, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"benchmark child {proc.bench_name} exited with {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def in_child(name: str, *args) -> dict:
    """Run ``name(*args)`` of this module in a fresh single-threaded Python process; its result."""
    return child_result(start_child(name, *args))


def machine_ceiling(paths: list[Path], work: Path, cfg: dict) -> dict:
    """The plain loop run as two independent processes at once, each on the clips of half the actors.

    No orchestration and nothing shared but the machine, so their combined rows per second over
    the plain loop's on the whole corpus is the most any two workers can gain here: a 2-vCPU VM
    whose vCPUs share a physical core, or a busy host, shows up as a ceiling below 2.
    """
    halves = [link_tree([p for p in paths if int(p.parent.name.split("_")[-1]) in actors], work / f"half{k}")
              for k, actors in enumerate((range(1, 13), range(13, 25)))]
    wall0 = time.perf_counter()
    procs = [start_child("plain_loop", str(root), str(work / f"{root.name}.zarr"), cfg) for root in halves]
    parts = [child_result(p) for p in procs]
    # The pair's time is its slower half, each clocked after its imports as the plain loop is
    # (both import at once); ``outer_wall_s`` adds the two interpreters' start-up and imports.
    return {"halves": parts, "rows": sum(p["rows"] for p in parts), "wall_s": max(p["wall_s"] for p in parts),
            "outer_wall_s": round(time.perf_counter() - wall0, 2), "cpu_s": round(sum(p["cpu_s"] for p in parts), 2)}


def median_run(runs: list[dict]) -> dict:
    """The run of median ``wall_s`` (the lower middle of an even count), plus ``wall_s_runs``.

    ``wall_s_runs`` holds every run's ``wall_s``, in the order they ran.
    """
    middle = sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]
    return {**middle, "wall_s_runs": [r["wall_s"] for r in runs]}


def figures(results: dict) -> dict:
    """The headline ratios from the scenarios' results (also to recompute them from a saved JSON)."""
    seed, w1, w2 = results["seed_loop"], results["pipeline_1_worker"], results["pipeline_2_workers"]
    plain, pair = results["plain_loop"], results["plain_loop_2_processes"]
    seed_rows_per_cpu = seed["rows"] / seed["cpu_s"]
    out = {
        # per core: rows per CPU-second of one process
        "seed_rows_per_cpu_s": round(seed_rows_per_cpu, 2),
        "pipeline_rows_per_cpu_s_1_worker": round(w1["rows"] / w1["cpu_s"], 2),
        "per_core_speedup_vs_seed": round((w1["rows"] / w1["cpu_s"]) / seed_rows_per_cpu, 2),
        "seed_clips_per_s": round(seed["clips"] / seed["wall_s"], 2),
        "pipeline_clips_per_s_1_worker": round(w1["clips"] / w1["wall_s"], 2),
        "pipeline_clips_per_s_2_workers": round(w2["clips"] / w2["wall_s"], 2),
        "seed_cpu_s_per_clip": round(seed["cpu_s"] / seed["clips"], 4),
        "pipeline_cpu_s_per_clip_1_worker": round(w1["cpu_s"] / w1["clips"], 4),
        "two_worker_speedup": round(w1["wall_s"] / w2["wall_s"], 2),
        # The same work in two independent processes against one: what this machine allows.
        "two_process_ceiling": round((pair["rows"] / pair["wall_s"]) / (plain["rows"] / plain["wall_s"]), 2),
        "two_process_cpu_inflation": round((pair["cpu_s"] / pair["rows"]) / (plain["cpu_s"] / plain["rows"]), 3),
        "orchestration_overhead_fraction": round(w1["wall_s"] / plain["wall_s"] - 1, 3),
        "noop_rerun_fraction": round(results["noop_rerun"]["wall_s"]
                                     / results["noop_rerun"].get("first_run_wall_s", w2["wall_s"]), 4),
        "loader_to_model_ratio": results["loader"]["loader_to_model_ratio"],
    }
    if "cold_2_workers" in results:  # cluster start, warm-up and stop inside the clock
        cold1, cold2 = results["cold_1_worker"], results["cold_2_workers"]
        out["two_worker_speedup_cold"] = round(cold1["wall_s"] / cold2["wall_s"], 2)
    if "memory_4x" in results:
        out |= {"peak_rss_mib_1x": results["memory_1x"]["peak_rss_mib_per_worker"],
                "peak_rss_mib_4x": results["memory_4x"]["peak_rss_mib_per_worker"]}
    return out


def main() -> None:
    """Run every scenario, then write the results with their headline figures and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("SER_TEST_DATA", str(HERE.parents[1] / "shared" / "data")))
    ap.add_argument("--limit", type=int, default=None, help="first N clips only (a quick look)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each scaling scenario (median kept)")
    ap.add_argument("--skip-4x", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results" / "throughput.json"))
    args = ap.parse_args()

    from flows.engine.prefect_server import prefect_api
    from ser_tasks.config import FeatureConfig, PipelineConfig
    from ser_tasks.signal.features import feature_names

    work = Path(tempfile.mkdtemp(prefix="ser-throughput-"))
    ravdess = Path(args.data, "ravdess")
    paths = sorted(p for p in ravdess.rglob("*") if p.suffix in (".wav", ".flac"))
    if args.limit:  # spread over every actor, so the split has speakers to work with
        paths = paths[::max(1, len(paths) // args.limit)][:args.limit]
    root = link_tree(paths, work / "ravdess")  # the (possibly limited) corpus, linked, never copied
    # 2 copies per training clip, as in every round so far: the seed loop makes 2 copies too
    cfg = PipelineConfig().with_overrides({"augment.variants": 2}).model_dump(mode="json")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                            capture_output=True, text=True).stdout.strip()
    # what the figures ran on: the default store's features (F0 or not) move the per-core ratio
    results: dict = {"date": time.strftime("%Y-%m-%d"), "commit": commit,
                     "features": list(feature_names(FeatureConfig(**cfg["features"]))),
                     "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]}, "clips": len(paths),
                     "repeats": args.repeats}

    # Every scenario runs once per repeat, in turn, so that a machine that drifts over the run
    # (this VM's plain loop went from 15.1 to 17.1 s within one) weighs on both sides of a ratio.
    seed, plain, pair = [], [], []
    one, two, cold1, cold2 = [], [], [], []
    with prefect_api():
        for k in range(args.repeats):
            print(f"seed loop on {len(paths)} clips, run {k + 1} of {args.repeats} ...", flush=True)
            seed.append(in_child("seed_loop", [str(p) for p in paths]))
            print(json.dumps(seed[-1]), flush=True)
            print(f"plain loop, run {k + 1} of {args.repeats} ...", flush=True)
            plain.append(in_child("plain_loop", str(root), str(work / f"plain{k}.zarr"), cfg))
            print(json.dumps(plain[-1]), flush=True)
            print("plain loop as two processes at once, half the actors each (the machine's ceiling) ...", flush=True)
            (work / f"pair{k}").mkdir()
            pair.append(machine_ceiling(paths, work / f"pair{k}", cfg))
            print(json.dumps(pair[-1]), flush=True)
            print(f"pipeline, 1 worker, run {k + 1} of {args.repeats} ...", flush=True)
            one.append(run_flow(str(root), str(work / f"w1-{k}.zarr"), cfg, 1)[0])
            print(json.dumps(one[-1]), flush=True)
            print(f"pipeline, 2 workers, run {k + 1} of {args.repeats}" + (", then a no-op rerun" if k == 0 else ""),
                  "...", flush=True)
            runs = run_flow(str(root), str(work / f"w2-{k}.zarr"), cfg, 2, runs=2 if k == 0 else 1)
            two.append(runs[0])
            if k == 0:  # against the run it repeats
                results["noop_rerun"] = {**runs[1], "first_run_wall_s": runs[0]["wall_s"]}
            print(*(json.dumps(r) for r in runs), flush=True)
            for n, cold in ((1, cold1), (2, cold2)):
                print(f"pipeline from a cold start, {n} worker(s), run {k + 1} of {args.repeats} ...", flush=True)
                cold.append(run_flow_cold(str(root), str(work / f"cold{n}-{k}.zarr"), cfg, n))
                print(json.dumps(cold[-1]), flush=True)
        results["seed_loop"] = median_run(seed)
        results["per_core_speedup_runs"] = [round((w["rows"] / w["cpu_s"]) / (s_["rows"] / s_["cpu_s"]), 2)
                                            for s_, w in zip(seed, one, strict=True)]
        results["plain_loop"], results["plain_loop_2_processes"] = median_run(plain), median_run(pair)
        results["pipeline_1_worker"], results["pipeline_2_workers"] = median_run(one), median_run(two)
        results["cold_1_worker"], results["cold_2_workers"] = median_run(cold1), median_run(cold2)
        print("training input: Zarr loader against the model's training step ...", flush=True)
        results["loader"] = loader_vs_model(str(work / "w2-0.zarr"))
        print(json.dumps(results["loader"]), flush=True)
        if not args.skip_4x:
            print("pipeline, 2 workers, 1x and 4x corpus in folder layout ...", flush=True)
            one = corpus_copies(paths, work / "x1", 1)
            four = corpus_copies(paths, work / "x4", 4)
            results["memory_1x"] = run_flow(str(one), str(work / "x1.zarr"), cfg, 2, corpus="folders")[0]
            results["memory_4x"] = run_flow(str(four), str(work / "x4.zarr"), cfg, 2, corpus="folders")[0]
            print(json.dumps(results["memory_1x"]), json.dumps(results["memory_4x"]), flush=True)

    results["figures"] = figures(results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results["figures"], indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
