"""The served model under load: 1, 4 and 16 concurrent clients against ``ser serve`` on loopback.

    .venv/bin/python benchmarks/serve_load.py --mlflow-uri sqlite:///mlflow.db [--model models:/ser-emotion@champion]
        [--data ../shared/data] [--clips 200] [--seconds 90] [--min-requests 2000] [--server-workers 1]
        [--out benchmarks/results/serve_load.json]

Starts ``ser serve MODEL --workers N`` on 127.0.0.1 (the default limits), sends ``--clips`` real
clips (spread over the shared RAVDESS and CREMA-D, as ``benchmarks/batch_predict.py`` picks them),
one clip per request as base64 in a ``dataframe_split``, round robin. After a warm-up that sends
every clip once (4 clients: each worker has seen the clips' lengths), for
each client count it runs for ``--seconds`` or until its share of ``--min-requests`` is sent, each
client a thread with its own HTTP connection sending its next request when the last is answered.
A request counts as an error unless it is answered 200 with an empty ``error``. The server's RSS
(the uvicorn process and its workers) is read after the warm-up and at the end.

Then the same clips through batch ``ser predict`` (:func:`batch_predict.measure`: the default
LocalCluster of one worker per core, warmed up) on the same machine, for
``serve_c4_vs_batch_throughput`` (served clips/s at 4 clients over batch's).

Writes ``--out``: per client count ``clips_per_second``, ``p50_ms``, ``p95_ms``, ``p99_ms``,
``requests``, ``errors``; ``serve_errors`` (all levels), ``serve_rss_mib_after_warm_up``,
``serve_rss_mib_end``, ``serve_rss_growth_fraction``, ``batch_clips_per_second``,
``serve_c4_vs_batch_throughput``, the server settings; and prints it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def _rss_mib(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def _level(url: str, bodies: list[bytes], clients: int, seconds: float, requests: int) -> dict:
    """Drive ``clients`` concurrent clients for ``seconds`` or ``requests`` requests."""
    import httpx

    latencies, errors, lock = [], [], threading.Lock()
    sent = [0]
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        with httpx.Client(timeout=120) as http:
            i = k
            while time.monotonic() < deadline:
                with lock:
                    if sent[0] >= requests:
                        return
                    sent[0] += 1
                t0 = time.perf_counter()
                try:
                    r = http.post(f"{url}/invocations", content=bodies[i % len(bodies)],
                                  headers={"content-type": "application/json"})
                    ok = r.status_code == 200 and r.json()["predictions"][0]["error"] == ""
                    why = "" if ok else f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    why = f"{type(exc).__name__}: {exc}"
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    if why:
                        errors.append(why)
                i += clients

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "seconds": round(wall, 2),
            "clips_per_second": round((len(latencies) - len(errors)) / wall, 3),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "errors": len(errors), "first_errors": errors[:3]}


def main() -> None:
    """Serve, drive the three client counts, measure batch on the same clips, write the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mlflow-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    ap.add_argument("--model", default="models:/ser-emotion@champion")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SER_TEST_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=90)
    ap.add_argument("--min-requests", type=int, default=2000)
    ap.add_argument("--server-workers", type=int, default=1)
    ap.add_argument("--skip-batch", action="store_true", help="Do not measure batch ser predict.")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "serve_load.json")
    args = ap.parse_args()
    import httpx
    from batch_predict import measure, real_clips

    from ser_tasks.learn import tracking

    tracking.use(args.mlflow_uri)
    clips = real_clips(args.data, args.clips + 8)
    files, warm = clips[:args.clips], clips[args.clips:]
    bodies = [json.dumps({"dataframe_split": {"columns": ["audio"], "data": [
        [base64.b64encode(Path(f).read_bytes()).decode()]]}}).encode() for f in files]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-c", "from ser_cli.app import main; main()", "serve", args.model, "--port", str(port),
         "--mlflow-uri", args.mlflow_uri, "--workers", str(args.server_workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            if server.poll() is not None:
                sys.exit("ser serve exited")
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        start_seconds = time.monotonic() - t0
        _level(url, bodies, 4, 900, len(bodies))  # warm-up: every clip once, on every worker
        rss_warm = _rss_mib(server.pid)
        per_level = max(1, args.min_requests // 3 + 1)
        levels = []
        for c in (1, 4, 16):
            levels.append(_level(url, bodies, c, args.seconds, per_level))
            levels[-1]["server_rss_mib"] = round(_rss_mib(server.pid))
        rss_end = _rss_mib(server.pid)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    batch = None if args.skip_batch else measure(args.model, files, os.cpu_count() or 1, warm)
    c4 = next(lv for lv in levels if lv["clients"] == 4)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout
    result = {"date": time.strftime("%Y-%m-%d"), "commit": commit.strip(), "model": args.model, "clips": len(files),
              "cpu_count": os.cpu_count(), "server": {
                  "command": f"ser serve --workers {args.server_workers}", "uvicorn_workers": args.server_workers,
                  "tensorflow_threads_per_worker": max(1, (os.cpu_count() or 1) // args.server_workers),
                  "malloc_arenas_per_worker": 2, "request_threads": "MLflow's scoring app: one pool thread a request",
                  "start_seconds": round(start_seconds, 1)},
              "levels": levels, "serve_requests": sum(lv["requests"] for lv in levels),
              "serve_errors": sum(lv["errors"] for lv in levels),
              "serve_rss_mib_after_warm_up": round(rss_warm), "serve_rss_mib_end": round(rss_end),
              "serve_rss_growth_fraction": round((rss_end - rss_warm) / rss_warm, 4),
              "batch_clips_per_second": batch and batch["files_per_second"],
              "batch_workers": batch and batch["workers"],
              "serve_c4_vs_batch_throughput": batch and round(c4["clips_per_second"] / batch["files_per_second"], 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
