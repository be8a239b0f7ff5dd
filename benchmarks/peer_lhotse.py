"""Peer benchmark: lhotse's feature extraction against ``ser extract``, on the same RAVDESS clips.

    .venv/bin/python benchmarks/peer_lhotse.py [--data ../shared/data] [--limit N] [--repeats 1]
        [--bench-venv .venv-bench] [--out benchmarks/results/peer.json]

Runs in the project's virtual environment; the lhotse side runs as a child process in a virtual
environment of its own (``--bench-venv``, default ``$SER_BENCH_VENV`` or ``.venv-bench`` in the repo
root). When that environment cannot import lhotse (or lilcom, torch, torchaudio, urllib3), this
script creates it (``python -m venv`` with this script's interpreter, the project venv's)
and pip-installs the requirements of pyproject.toml's ``bench`` extra into it, and only those:
never the project. lhotse, torch and torchaudio are installed here only, never by the package,
its tests or CI. Clips: every ``ravdess/**/*.wav`` or ``*.flac`` under ``--data`` (default
``$SER_TEST_DATA`` or ``../shared/data``), sorted (1,440; the shared copy is FLAC); ``--limit N``
keeps N of them spread evenly over the sorted list, as benchmarks/throughput.py does (the first N
would all be ``Actor_01``'s, and ser's actor-disjoint split needs at least 2 speakers).

The two sides, each with 1 and 2 processes, interleaved (lhotse 1, ser 1, lhotse 2, ser 2) and
repeated ``--repeats`` times; every figure below is the median of its runs (``runs`` holds each):

* **lhotse** (1.33): one child command, ``python peer_lhotse.py --lhotse-child``, that builds a
  ``RecordingSet`` (``Recording.from_file`` per clip, each ``.resample(16000)``: lhotse's own copy of
  torchaudio's sinc resampler, applied lazily while the audio loads), ``CutSet.from_manifests``,
  then ``cuts.compute_and_store_features(extractor=Fbank(FbankConfig(num_filters=64)),
  storage_path=..., num_jobs=N, storage_type=LilcomChunkyWriter)``. With ``num_jobs=2`` and no
  ``executor`` lhotse makes its default, a ``ProcessPoolExecutor(2)`` with the ``spawn`` start method,
  each worker taking every 2nd cut into its own ``feats-K`` archive; the worker processes start,
  and import lhotse and torch, inside the timed call. The child and its workers run with
  ``OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1`` (and ``torch.set_num_threads(1)``), so
  2 jobs use 2 cores, as ser's 2 single-threaded Dask workers do.
* **ser**: ``./ser extract ROOT --variants 0 --workers N --store S --mlflow-uri sqlite:///.../mlflow.db
  --summary-json ...``, ROOT being the RAVDESS folder (or, with ``--limit``, a folder of links to the
  chosen clips), S a fresh store each run. The MLflow database is created before the first timed
  run, and ``./ser --help`` runs once untimed first, so that a pending bootstrap reinstall is not
  timed.

Keys of ``benchmarks/results/peer.json`` (``--out``), also printed:

* ``date``, ``commit`` (``git rev-parse HEAD``), ``uncommitted_changes`` (tracked files outside
  ``benchmarks/results/`` differ from it),
  ``machine`` (CPU count, platform, Python), ``clips``, ``repeats``, ``versions`` (lhotse, torch,
  torchaudio, lilcom from the child; librosa from this venv);
* ``lhotse_feature_s_1`` / ``_2``: seconds of the ``compute_and_store_features`` call alone, with 1 and
  2 jobs, clocked inside the child; ``lhotse_command_s_1`` / ``_2``: the child command, from the
  interpreter's start to its exit, clocked by this script; ``lhotse_clips_per_s_1`` / ``_2``: clips
  over the feature step;
* ``ser_feature_s_1`` / ``_2``: the summary's ``seconds``, the extraction flow's own time (manifest,
  split, store plan, starting the LocalCluster, which the runner does at the first task, and
  its workers' warm-up, extraction, finalising; not closing the cluster);
  ``ser_command_s_1`` / ``_2``: the ``./ser extract`` command, clocked by this script;
  ``ser_clips_per_s_1`` / ``_2``: the summary's ``clips_per_second``;
* ``ser_noop_command_s`` (and ``ser_noop_feature_s``): ``./ser extract`` once more on the complete
  2-worker store, nothing left to compute;
* ``ser_vs_lhotse_feature_step`` = ``lhotse_feature_s_2 / ser_feature_s_2`` and ``ser_vs_lhotse_command``
  = ``lhotse_command_s_2 / ser_command_s_2`` (above 1: ser faster), and their ``_1`` variants;
* ``what_each_computes``: the two sides do different work, which these ratios do not correct for;
* ``checks``: cuts with features (lhotse) and rows written and failed (ser), per run;
* ``runs``: every run's figures, in the order they ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BENCH_MODULES = ("lhotse", "lilcom", "torch", "torchaudio", "urllib3")
# One BLAS/OpenMP thread per process, as a Dask nanny sets in ser's workers; inherited by the
# workers that lhotse spawns.
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
WHAT_EACH_COMPUTES = {
    "lhotse": "Kaldi-style fbank, 64 mel bands, 25 ms frames every 10 ms, on audio resampled to 16 kHz "
              "(lhotse's copy of torchaudio's sinc resampler); whole clip, no trimming; stored lilcom-compressed "
              "in LilcomChunkyWriter archives",
    "ser": "librosa log-mel (64 bands) + MFCC (40) + ZCR + RMS, 25 ms frames every 10 ms, on audio resampled to "
           "16 kHz (soxr), silence-trimmed (30 dB) and fixed to 3 s; plus the manifest, the actor-disjoint split "
           "and a resumable Zarr store",
}


# -- the lhotse side: runs in the bench venv, where only the standard library and lhotse exist ----
def lhotse_child(list_file: str, storage: str, jobs: int) -> dict:
    """Extract and store lhotse fbank features for the clips listed in ``list_file``; its figures.

    Args:
        list_file: text file with one audio path per line.
        storage: folder for the ``LilcomChunkyWriter`` archives (created).
        jobs: ``num_jobs`` for ``compute_and_store_features``.

    Returns:
        ``feature_s`` (the ``compute_and_store_features`` call alone), ``cuts`` (cuts with features),
        ``frames`` (their frames) and the versions of lhotse, torch, torchaudio and lilcom.
    """
    import torch

    torch.set_num_threads(1)
    from lhotse import CutSet, Fbank, FbankConfig, LilcomChunkyWriter, Recording, RecordingSet

    paths = Path(list_file).read_text().split("\n")
    recordings = RecordingSet.from_recordings(Recording.from_file(p).resample(16000) for p in paths if p)
    cuts = CutSet.from_manifests(recordings=recordings)
    t0 = time.perf_counter()
    with_feats = cuts.compute_and_store_features(extractor=Fbank(FbankConfig(num_filters=64)), storage_path=storage,
                                                 num_jobs=jobs, storage_type=LilcomChunkyWriter, progress_bar=False)
    feature_s = time.perf_counter() - t0
    with_feats = list(with_feats)
    return {"feature_s": round(feature_s, 3), "cuts": len(with_feats),
            "frames": sum(c.num_frames for c in with_feats),
            "versions": {m: metadata.version(m) for m in ("lhotse", "torch", "torchaudio", "lilcom")}}


# -- the bench venv --------------------------------------------------------------------------------
def bench_requirements() -> list[str]:
    """The requirement strings of pyproject.toml's ``bench`` extra."""
    with open(REPO / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]["optional-dependencies"]["bench"]


def ensure_bench_venv(venv: Path) -> Path:
    """The bench venv's Python, creating the venv and installing the ``bench`` extra when needed.

    A venv that imports every one of :data:`BENCH_MODULES` is used as it is (and that import, run
    here, also warms the file cache before the first timed run).
    """
    python = venv / "bin" / "python"
    probe = f"import {', '.join(BENCH_MODULES)}"
    if python.exists() and subprocess.run([str(python), "-c", probe], env={**os.environ, **SINGLE_THREAD},
                                          capture_output=True).returncode == 0:
        return python
    if not python.exists():
        # this interpreter is the project venv's (>= 3.12); a venv made from it shares its base Python
        print(f"creating the bench venv {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    reqs = bench_requirements()
    print(f"installing into {venv}: {' '.join(reqs)} (torch is large: minutes the first time)", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *reqs], check=True)
    subprocess.run([str(python), "-c", probe], check=True)
    return python


# -- one run of each side ----------------------------------------------------------------------------
def run_lhotse(python: Path, list_file: Path, storage: Path, jobs: int) -> dict:
    """One lhotse child command with ``jobs`` processes: its figures plus ``command_s`` (clocked here)."""
    cmd = [str(python), str(Path(__file__).resolve()), "--lhotse-child", str(list_file), str(storage), str(jobs)]
    print(f"lhotse, {jobs} job(s) ...", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, **SINGLE_THREAD}, stdout=subprocess.PIPE, text=True)
    command_s = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"the lhotse child exited with {proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["command_s"] = round(command_s, 3)
    print(json.dumps({k: v for k, v in result.items() if k != "versions"}), flush=True)
    return result


def run_ser(root: Path, store: Path, workers: int, work: Path, name: str) -> dict:
    """One ``./ser extract`` with ``workers`` workers: its summary's figures plus ``command_s`` (clocked here)."""
    summary_json = work / f"{name}.json"
    cmd = [str(REPO / "ser"), "extract", str(root), "--variants", "0", "--workers", str(workers),
           "--store", str(store), "--mlflow-uri", f"sqlite:///{work / 'mlflow.db'}",
           "--summary-json", str(summary_json)]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work)
    command_s = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"./ser extract exited with {proc.returncode}")
    s = json.loads(summary_json.read_text())
    result = {"feature_s": s["seconds"], "clips_per_s": s["clips_per_second"], "clips": s["clips"],
              "rows": s["rows"], "computed_rows": s["computed_rows"], "failed_rows": s["failed_rows"],
              "command_s": round(command_s, 3)}
    print(json.dumps(result), flush=True)
    return result


def prepare_ser(work: Path) -> None:
    """Untimed: ``./ser --help`` (a pending bootstrap reinstall happens here) and the MLflow database's creation."""
    subprocess.run([str(REPO / "ser"), "--help"], stdout=subprocess.DEVNULL, check=True)
    code = ("import sys, mlflow; mlflow.set_tracking_uri(sys.argv[1]); "
            "mlflow.MlflowClient().search_experiments()")
    subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", code, f"sqlite:///{work / 'mlflow.db'}"],
                   check=True, capture_output=True)


def link_tree(files: list[Path], dest: Path) -> Path:
    """Symbolic links to ``files`` under ``dest``, each in a folder named as its own (``Actor_NN``)."""
    for p in files:
        (dest / p.parent.name).mkdir(parents=True, exist_ok=True)
        os.symlink(p, dest / p.parent.name / p.name)
    return dest


# -- results --------------------------------------------------------------------------------------------
def figures(runs: dict[str, list[dict]], clips: int) -> dict:
    """The medians per side and process count, clips per second and the ser-over-lhotse ratios."""
    out: dict = {}
    for n in (1, 2):
        lh, ser = runs[f"lhotse_{n}"], runs[f"ser_{n}"]
        out[f"lhotse_feature_s_{n}"] = round(statistics.median(r["feature_s"] for r in lh), 3)
        out[f"lhotse_command_s_{n}"] = round(statistics.median(r["command_s"] for r in lh), 3)
        out[f"lhotse_clips_per_s_{n}"] = round(clips / out[f"lhotse_feature_s_{n}"], 2)
        out[f"ser_feature_s_{n}"] = round(statistics.median(r["feature_s"] for r in ser), 3)
        out[f"ser_command_s_{n}"] = round(statistics.median(r["command_s"] for r in ser), 3)
        out[f"ser_clips_per_s_{n}"] = round(statistics.median(r["clips_per_s"] for r in ser), 2)
    noop = runs["ser_noop"][0]
    out["ser_noop_command_s"], out["ser_noop_feature_s"] = noop["command_s"], noop["feature_s"]
    for n, suffix in ((2, ""), (1, "_1")):
        out[f"ser_vs_lhotse_feature_step{suffix}"] = round(out[f"lhotse_feature_s_{n}"] / out[f"ser_feature_s_{n}"], 3)
        out[f"ser_vs_lhotse_command{suffix}"] = round(out[f"lhotse_command_s_{n}"] / out[f"ser_command_s_{n}"], 3)
    return out


def main() -> None:
    """Run both sides, interleaved and repeated, then write the medians and ratios to ``--out`` and print them."""
    if len(sys.argv) == 5 and sys.argv[1] == "--lhotse-child":  # in the bench venv: stdlib + lhotse only
        print(json.dumps(lhotse_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))), flush=True)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SER_TEST_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--limit", type=int, default=None, help="N clips only, spread over every actor (a quick look)")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each side and process count (medians kept)")
    ap.add_argument("--bench-venv", type=Path, default=Path(os.environ.get("SER_BENCH_VENV", REPO / ".venv-bench")),
                    help="virtual environment for lhotse and torch (created when it lacks them)")
    ap.add_argument("--out", type=Path, default=RESULTS / "peer.json")
    args = ap.parse_args()

    ravdess = (args.data / "ravdess").resolve()
    paths = sorted(p for p in ravdess.rglob("*") if p.suffix in (".wav", ".flac"))
    if not paths:
        raise SystemExit(f"no RAVDESS clips under {ravdess}: set --data or SER_TEST_DATA")
    if args.limit:  # spread over every actor, so the split has speakers to work with
        paths = paths[::max(1, len(paths) // args.limit)][:args.limit]
    python = ensure_bench_venv(args.bench_venv.resolve())
    work = Path(tempfile.mkdtemp(prefix="ser-peer-"))
    try:
        # The same clips on both sides: the corpus folder itself, or links to the chosen clips.
        root = link_tree(paths, work / "ravdess") if args.limit else ravdess
        list_file = work / "clips.txt"
        list_file.write_text("\n".join(str(p) for p in paths) + "\n")
        prepare_ser(work)
        runs: dict[str, list[dict]] = {"lhotse_1": [], "ser_1": [], "lhotse_2": [], "ser_2": [], "ser_noop": []}
        for k in range(args.repeats):
            print(f"-- run {k + 1} of {args.repeats} on {len(paths)} clips", flush=True)
            for n in (1, 2):
                runs[f"lhotse_{n}"].append(run_lhotse(python, list_file, work / f"lhotse-{n}-{k}", n))
                runs[f"ser_{n}"].append(run_ser(root, work / f"ser-{n}-{k}.zarr", n, work, f"ser-{n}-{k}"))
        print("-- ser extract again on the complete 2-worker store (nothing to compute)", flush=True)
        runs["ser_noop"].append(run_ser(root, work / f"ser-2-{args.repeats - 1}.zarr", 2, work, "ser-noop"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    # results files are outputs, not code: a second run must not flag the first one's JSON
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 ":(exclude)benchmarks/results"], cwd=REPO,
                                capture_output=True, text=True).stdout.strip())
    versions = {**runs["lhotse_1"][0]["versions"], "librosa": metadata.version("librosa")}
    result = {"date": time.strftime("%Y-%m-%d"), "commit": commit, "uncommitted_changes": dirty,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
              "clips": len(paths), "repeats": args.repeats, "versions": versions,
              **figures(runs, len(paths)),
              "what_each_computes": WHAT_EACH_COMPUTES,
              "checks": {"lhotse_cuts": [r["cuts"] for side in ("lhotse_1", "lhotse_2") for r in runs[side]],
                         "ser_rows": [r["rows"] for side in ("ser_1", "ser_2") for r in runs[side]],
                         "ser_failed_rows": [r["failed_rows"] for side in ("ser_1", "ser_2") for r in runs[side]]},
              "runs": {side: [{k: v for k, v in r.items() if k != "versions"} for r in rs]
                       for side, rs in runs.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
