"""Batch inference on Dask: files per second with 1 and 2 worker processes, and each worker's peak RSS.

    .venv/bin/python benchmarks/batch_predict.py --mlflow-uri sqlite:///mlflow.db [--model models:/ser-emotion@champion]
        [--data ../shared/data] [--files 240] [--out benchmarks/results/batch_predict.json]

What ``ser predict DIR --out preds.parquet`` does (:func:`ser_tasks.serve.bulk.run_batch`: chunks of 32
files, one single-threaded LocalCluster worker process per core, each chunk's rows one Parquet
part), timed on ``--files`` clips spread evenly over the shared RAVDESS and CREMA-D folders under
``--data`` (half each). For each worker count, a fresh cluster first scores one chunk per worker
(untimed: the workers import TensorFlow and load the model), then the timed run scores the clips
into an empty dataset. Peak RSS is each worker's ``ru_maxrss`` after the run.

Writes ``--out`` (``date``, ``commit``, ``model_uri``, ``files``, ``files_per_second`` per worker
count, ``batch_predict_two_worker_speedup``, ``peak_rss_mib_per_worker``) and prints it.
:func:`measure` is also what ``benchmarks/serve_load.py`` compares the served model with.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def real_clips(data: Path, n: int) -> list[str]:
    """``n`` clips spread evenly over RAVDESS and CREMA-D under ``data`` (half each, sorted paths)."""
    out = []
    for corpus, count in (("ravdess", n - n // 2), ("crema-d", n // 2)):
        files = sorted(str(p) for p in (data / corpus).rglob("*") if p.suffix.lower() in (".wav", ".flac"))
        if not files:
            sys.exit(f"no clips under {data / corpus}: set --data or SER_TEST_DATA to the shared data folder")
        step = max(1, len(files) // count)
        out += files[::step][:count]
    return out


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(model_uri: str, files: list[str], workers: int, warm: list[str]) -> dict:
    """Files per second of :func:`ser_tasks.serve.bulk.run_batch` on a fresh LocalCluster of ``workers``.

    ``warm`` (other clips, one chunk per worker) is scored first, untimed.
    """
    from ser_tasks.serve import bulk

    with tempfile.TemporaryDirectory() as tmp, bulk.batch_client(None, workers) as client:
        ref = bulk.resolve_model(model_uri, f"{tmp}/model")
        roots = sorted({os.path.dirname(f) for f in files + warm})
        bulk.run_batch(ref, warm, {}, f"{tmp}/warm", roots, client=client, threads=1,
                        chunk_files=max(1, len(warm) // workers))
        t0 = time.perf_counter()
        summary = bulk.run_batch(ref, files, {}, f"{tmp}/out", roots, client=client, threads=1)
        seconds = time.perf_counter() - t0
        rss = sorted(client.run(_peak_rss_mib).values())
    assert summary["scored"] == len(files), summary
    return {"workers": workers, "seconds": round(seconds, 2), "files_per_second": round(len(files) / seconds, 3),
            "failed": summary["failed"], "peak_rss_mib_per_worker": [round(r) for r in rss], "model_uri": ref.uri}


def main() -> None:
    """Time 1 and 2 workers on the same clips and write the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mlflow-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    ap.add_argument("--model", default="models:/ser-emotion@champion")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SER_TEST_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--files", type=int, default=240)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "batch_predict.json")
    args = ap.parse_args()
    from ser_tasks.learn import tracking

    tracking.use(args.mlflow_uri)
    clips = real_clips(args.data, args.files + 8)
    files, warm = clips[:args.files], clips[args.files:]
    runs = [measure(args.model, files, w, warm) for w in (1, 2)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout
    result = {"date": time.strftime("%Y-%m-%d"), "commit": commit.strip(), "model_uri": runs[0]["model_uri"],
              "files": len(files), "cpu_count": os.cpu_count(),
              "files_per_second": {str(r["workers"]): r["files_per_second"] for r in runs},
              "batch_predict_two_worker_speedup": round(runs[1]["files_per_second"] / runs[0]["files_per_second"], 3),
              "peak_rss_mib_per_worker": {str(r["workers"]): r["peak_rss_mib_per_worker"] for r in runs},
              "failed": {str(r["workers"]): r["failed"] for r in runs}, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
