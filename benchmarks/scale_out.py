"""Wall time of one `ser run` embedded against the same run scaled out, on the same clips.

Embedded: local files, LocalCluster, temporary Prefect server, sqlite MLflow. Scaled out: audio and
store on an S3 server, a separately started Dask scheduler with two workers, a Prefect server, an
MLflow server with S3 artifacts.

    .venv/bin/python benchmarks/scale_out.py [--actors 01,02,03] [--every 5]

Uses the clips of tests/test_scale_out.py by default (every 5th clip of RAVDESS actors 01-03, from
$SER_TEST_DATA or ../shared/data). Prints and writes benchmarks/results/scale_out.json.
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

import boto3

from ser_tasks.runtime.devstack import DEV_KEY, DEV_SECRET, LocalStack

HERE = Path(__file__).resolve().parent
SER = str(Path(sys.executable).parent / "ser")


def timed(argv: list[str], env: dict, cwd: Path) -> float:
    """Run ``argv`` in ``cwd`` with ``env``; its wall time in seconds.

    A non-zero exit ends the benchmark (``SystemExit``) with the end of the command's output.
    """
    t0 = time.perf_counter()
    out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stdout[-3000:] + out.stderr[-3000:])
    return time.perf_counter() - t0


def main() -> None:
    """Time the run embedded, then scaled out on a :class:`ser_tasks.runtime.devstack.LocalStack`; print, write both."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("SER_TEST_DATA", str(HERE.parents[1] / "shared" / "data")))
    ap.add_argument("--actors", default="01,02,03")
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "results" / "scale_out.json"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ser-scale-out-"))
    local = work / "corpus"
    clips = 0
    for actor in args.actors.split(","):
        src = sorted(p for p in Path(args.data, "ravdess", f"Actor_{actor}").iterdir() if p.suffix in (".wav", ".flac"))
        (local / f"Actor_{actor}").mkdir(parents=True)
        for p in src[::args.every]:
            os.symlink(p, local / f"Actor_{actor}" / p.name)
            clips += 1
    (work / "ser.yaml").write_text("extract:\n  batch_rows: 16\n")
    common = ["--epochs", "2", "--variants", "1", "--config", str(work / "ser.yaml")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PREFECT_API_URL", "MLFLOW_"))}

    embedded_wall = timed([SER, "run", str(local), "--store", str(work / "features.zarr"), "--mlflow-uri",
                           f"sqlite:///{work / 'mlflow.db'}", "--workers", "2", *common,
                           "--summary-json", str(work / "embedded.json"), "--out-dir", str(work / "emb")], env, work)
    embedded = json.loads((work / "embedded.json").read_text())

    with LocalStack(work / "stack") as stack:
        t0 = time.perf_counter()
        stack.start_all(dask_workers=2)
        services_s = time.perf_counter() - t0
        s3 = boto3.client("s3", endpoint_url=stack.urls["s3"], aws_access_key_id=DEV_KEY,
                          aws_secret_access_key=DEV_SECRET, region_name="us-east-1")
        t0 = time.perf_counter()
        for f in local.rglob("*"):
            if f.is_file() or f.is_symlink():
                s3.upload_file(str(f.resolve()), "ser", f"corpus/{f.relative_to(local)}")
        upload_s = time.perf_counter() - t0
        remote_env = {**env, **stack.env()}
        scaled_wall = timed([SER, "run", "s3://ser/corpus", "--store", "s3://ser/features.zarr",
                             "--dask-address", stack.urls["dask"], "--mlflow-uri", stack.urls["mlflow"], *common,
                             "--summary-json", str(work / "scaled.json"), "--out-dir", str(work / "sc")],
                            remote_env, work)
        scaled = json.loads((work / "scaled.json").read_text())

    def parts(wall: float, s: dict) -> dict:
        return {"command_wall_s": round(wall, 1), "pipeline_flow_s": s["seconds"], "extract_s": s["extract"]["seconds"],
                "train_s": s["train"]["train_seconds"],
                "outside_flow_s": round(wall - s["seconds"], 1),
                "rest_of_flow_s": round(s["seconds"] - s["extract"]["seconds"] - s["train"]["train_seconds"], 1)}

    result = {"clips": clips, "rows": embedded["extract"]["rows"], "embedded": parts(embedded_wall, embedded),
              "scaled_out": {**parts(scaled_wall, scaled), "services_start_s": round(services_s, 1),
                             "upload_s": round(upload_s, 1)},
              "machine": f"{os.cpu_count()} cores"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
