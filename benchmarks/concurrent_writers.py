"""Four ``ser train`` at once against one MLflow server and one Prefect server: sqlite or PostgreSQL behind them.

    .venv/bin/python benchmarks/concurrent_writers.py --backend sqlite|postgresql [--writers 4]
        [--out benchmarks/results/concurrent_writers_<backend>.json]

Starts the dev stack (:class:`ser_tasks.runtime.devstack.LocalStack`: an S3 server, the Prefect server and the
MLflow server, on sqlite files or on one PostgreSQL server), runs ``ser run`` once on a synthetic
6-actor corpus of tones (a small from-scratch model: the writes matter here, not the model), then
``--writers`` ``ser train`` processes on that store at the same moment, with different seeds. Reports
each writer's exit status and the errors in its output (``database is locked`` ...), the registered
versions, whether exactly one champion stands where the promotion rule puts it, and the wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    """Start the stack on the backend, run the writers, write the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), required=True)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import mlflow

    from conftest import make_ravdess_like
    from ser_tasks.runtime.devstack import LocalStack

    ser = str(Path(sys.executable).parent / "ser")
    with tempfile.TemporaryDirectory() as tmp_dir, LocalStack(Path(tmp_dir) / "stack") as stack:
        tmp = Path(tmp_dir)
        stack.start_s3()
        if args.backend == "postgresql":
            pg = stack.start_postgres()
            api = stack.start_prefect(pg.replace("postgresql://", "postgresql+asyncpg://") + "/prefect")
            url = stack.start_mlflow(pg.replace("postgresql://", "postgresql+psycopg2://") + "/mlflow")
        else:
            api, url = stack.start_prefect(), stack.start_mlflow()
        root = make_ravdess_like(tmp / "corpus")
        small = "features: {encoder: null, f0: false}\naugment: {variants: 0}\nsplit: {seed: 0}\n"
        (tmp / "run.yaml").write_text(small + "train: {model: utterance_mlp, epochs: 2, ensemble: 1}\n")
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_"))}
        env["PREFECT_API_URL"] = api
        first = subprocess.run([ser, "run", str(root), "--store", str(tmp / "f.zarr"), "--mlflow-uri", url,
                                "--config", str(tmp / "run.yaml"), "--out-dir", str(tmp / "out")],
                               env=env, cwd=tmp, capture_output=True, text=True)
        assert first.returncode == 0, first.stderr[-3000:]
        procs = []
        t0 = time.perf_counter()
        for i in range(args.writers):
            (tmp / f"w{i}.yaml").write_text(small + f"train: {{model: utterance_mlp, epochs: 2, ensemble: 1, "
                                                    f"seed: {i + 1}}}\n")
            procs.append(subprocess.Popen(
                [ser, "train", str(tmp / "f.zarr"), "--mlflow-uri", url, "--config", str(tmp / f"w{i}.yaml"),
                 "--summary-json", str(tmp / f"w{i}.json"), "--out-dir", str(tmp / f"w{i}")],
                env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        outputs = [p.communicate(timeout=1800)[0] for p in procs]
        seconds = time.perf_counter() - t0
        client = mlflow.MlflowClient(url, url)
        versions = client.search_model_versions("name='ser-emotion'")
        aliases = client.get_registered_model("ser-emotion").aliases
        ranked = max(versions, key=lambda v: (float(v.tags.get("test_ua", "nan")), -int(v.version)))
        writers = []
        for i, (p, out) in enumerate(zip(procs, outputs)):
            errors = sorted({line.strip()[:160] for line in out.splitlines()
                             if "locked" in line or "Error" in line or "error:" in line})
            done = (tmp / f"w{i}.json").exists()
            writers.append({"returncode": p.returncode, "summary": done, "errors": errors[:5]})
    result = {"date": time.strftime("%Y-%m-%d"), "backend": args.backend, "writers": args.writers,
              "seconds": round(seconds, 1), "succeeded": sum(w["returncode"] == 0 for w in writers),
              "versions": sorted(int(v.version) for v in versions),
              "champion": str(aliases.get("champion")), "rule_picks": str(ranked.version),
              "one_champion_where_the_rule_puts_it": str(aliases.get("champion")) == str(ranked.version),
              "per_writer": writers}
    out = args.out or REPO / "benchmarks" / "results" / f"concurrent_writers_{args.backend}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
