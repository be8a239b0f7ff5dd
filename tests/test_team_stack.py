"""The team stack for real: the MLflow and Prefect servers on PostgreSQL, as docker-compose.yml runs them.

A PostgreSQL server (Debian's package; ``.ci/run`` installs it) is started on loopback with the
compose file's initialisation (``infra/postgres/``), the Prefect server on its ``prefect`` database
(asyncpg) and the MLflow server on its ``mlflow`` database (psycopg2), and a ``ser run`` goes
through both; the rows are then read from PostgreSQL itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ser_tasks.devstack import LocalStack, postgres_bin

pytestmark = pytest.mark.slow


def test_a_run_through_mlflow_and_prefect_servers_is_recorded_in_postgresql(tmp_path, ravdess_like):
    if postgres_bin() is None:
        pytest.skip("PostgreSQL's server programs are not installed (apt-get install postgresql; .ci/run does)")
    import mlflow
    import psycopg2

    with LocalStack(tmp_path / "stack") as stack:
        pg = stack.start_postgres()
        stack.start_s3()
        api = stack.start_prefect(pg.replace("postgresql://", "postgresql+asyncpg://") + "/prefect")
        url = stack.start_mlflow(pg.replace("postgresql://", "postgresql+psycopg2://") + "/mlflow")
        config = tmp_path / "small.yaml"  # the from-scratch recipe, small: this is about where runs land
        config.write_text("features: {encoder: null, f0: false}\naugment: {variants: 0}\n"
                          "train: {model: utterance_mlp, epochs: 2, ensemble: 1}\n")
        summary_path = tmp_path / "run.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PREFECT_API_URL", "MLFLOW_"))}
        out = subprocess.run([str(Path(sys.executable).parent / "ser"), "run", str(ravdess_like), "--store",
                              str(tmp_path / "f.zarr"), "--mlflow-uri", url, "--config", str(config),
                              "--summary-json", str(summary_path), "--out-dir", str(tmp_path / "out")],
                             env={**env, "PREFECT_API_URL": api}, cwd=tmp_path, capture_output=True, text=True,
                             timeout=900)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        summary = json.loads(summary_path.read_text())
        client = mlflow.MlflowClient(url, url)
        run = client.get_run(summary["mlflow_run_id"])
        assert run.info.status == "FINISHED" and run.data.metrics["test_ua"] == pytest.approx(summary["ua"])
        version = client.get_model_version("ser-emotion", str(summary["model_version"]))
        assert version.aliases == ["champion"] and version.status == "READY"
        # the rows themselves, in PostgreSQL
        with psycopg2.connect(f"{pg}/mlflow") as conn, conn.cursor() as cur:
            cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (summary["mlflow_run_id"],))
            assert cur.fetchall() == [("FINISHED",)]
            cur.execute("SELECT name, version FROM model_versions")
            assert cur.fetchall() == [("ser-emotion", summary["model_version"])]
        with psycopg2.connect(f"{pg}/prefect") as conn, conn.cursor() as cur:
            cur.execute("SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id")
            runs = cur.fetchall()
        assert {"ser_pipeline", "extract_features", "train_model"} <= {name for name, _ in runs}
        assert {state for _, state in runs} == {"COMPLETED"}
