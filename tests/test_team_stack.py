"""The team stack for real: the MLflow and Prefect servers on PostgreSQL, with credentials.

A PostgreSQL server (Debian's package; ``.ci/run`` installs it) is started on loopback with the
compose file's initialisation (``infra/postgres/``), the Prefect server on its ``prefect`` database
(asyncpg) requiring an API auth string, the MLflow server on its ``mlflow`` database (psycopg2)
with its basic-auth app, and a Dask scheduler and two workers over TLS with the certificates of
``infra/dask-certs.py``. A request without credentials gets 401 from MLflow and Prefect; a Dask
client without a certificate of the cluster's CA is refused; a pipeline user made by the admin
runs ``ser run`` through all three; the rows are then read from PostgreSQL itself. Then a scheduled
deployment (``ser deploy-scoring --every 600``, first run in 10 s) scores the corpus with the champion while four
``ser train`` write at once: every run is recorded, every version distinct, one champion where the
rule puts it, and the scheduled run completes with every file scored once. No secret appears in the
outputs, the summary, MLflow parameters or tags, or Prefect's parameters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ser_tasks.runtime.devstack import LocalStack, postgres_bin, read_env_file, tls_security

pytestmark = pytest.mark.slow


def test_a_run_with_credentials_through_the_team_stack_on_postgresql_and_no_way_in_without(tmp_path, ravdess_like):
    if postgres_bin() is None:
        pytest.skip("PostgreSQL's server programs are not installed (apt-get install postgresql; .ci/run does)")
    import secrets

    import httpx
    import mlflow
    import psycopg2

    # made here, as a team's secret store would: none is in the repository
    admin_password, pipeline_password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    prefect_auth = f"ser:{secrets.token_urlsafe(16)}"
    with LocalStack(tmp_path / "stack") as stack:
        pg = stack.start_postgres()
        stack.start_s3()
        api = stack.start_prefect(pg.replace("postgresql://", "postgresql+asyncpg://") + "/prefect", prefect_auth)
        url = stack.start_mlflow(pg.replace("postgresql://", "postgresql+psycopg2://") + "/mlflow", admin_password)
        # no credentials, no way in
        assert httpx.get(f"{url}/api/2.0/mlflow/experiments/search?max_results=1").status_code == 401
        assert httpx.post(f"{url}/api/2.0/mlflow/registered-models/alias",
                          json={"name": "ser-emotion", "alias": "champion", "version": "1"}).status_code == 401
        assert httpx.post(f"{api}/deployments/filter", json={}).status_code == 401
        assert httpx.post(f"{api}/deployments/filter", json={}, auth=tuple(prefect_auth.split(":"))).status_code == 200
        # Dask over TLS: the certificates of the documented script; a peer without one of its CA is refused
        certs = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "infra" / "dask-certs.py"),
                                str(tmp_path / "certs")], capture_output=True, text=True)
        assert certs.returncode == 0, certs.stderr
        tls = read_env_file(tmp_path / "certs" / "dask-tls.env")
        dask = stack.start_dask(2, tls_env=tls)
        assert dask.startswith("tls://")
        _refused(dask, None)  # plain client
        _refused(dask, _security_without_client_cert(tls))  # trusts the cluster, has no certificate
        from distributed import Client

        with Client(dask, security=tls_security(tls), timeout=30) as dask_client:
            assert dask_client.submit(sum, [1, 2]).result() == 3
        # one user per pipeline, made by the admin
        from mlflow.server.auth.client import AuthServiceClient

        os.environ.update({"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": admin_password})
        try:
            AuthServiceClient(url).create_user("nightly", pipeline_password)
        finally:
            for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                os.environ.pop(key)
        config = tmp_path / "small.yaml"  # the from-scratch recipe, small: this is about where runs land
        config.write_text("features: {encoder: null, f0: false}\naugment: {variants: 0}\n"
                          "train: {model: utterance_mlp, epochs: 2, ensemble: 1}\n")
        summary_path = tmp_path / "run.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PREFECT_API_URL", "MLFLOW_"))}
        out = subprocess.run([str(Path(sys.executable).parent / "ser"), "run", str(ravdess_like), "--store",
                              str(tmp_path / "f.zarr"), "--mlflow-uri", url, "--config", str(config),
                              "--dask-address", dask,
                              "--summary-json", str(summary_path), "--out-dir", str(tmp_path / "out")],
                             env={**env, **tls, "PREFECT_API_URL": api, "PREFECT_API_AUTH_STRING": prefect_auth,
                                  "MLFLOW_TRACKING_USERNAME": "nightly", "MLFLOW_TRACKING_PASSWORD": pipeline_password},
                             cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        summary = json.loads(summary_path.read_text())
        os.environ.update({"MLFLOW_TRACKING_USERNAME": "nightly", "MLFLOW_TRACKING_PASSWORD": pipeline_password})
        try:
            client = mlflow.MlflowClient(url, url)
            run = client.get_run(summary["mlflow_run_id"])
            version = client.get_model_version("ser-emotion", str(summary["model_version"]))
        finally:
            for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                os.environ.pop(key)
        assert run.info.status == "FINISHED" and run.data.metrics["test_ua"] == pytest.approx(summary["ua"])
        assert version.aliases == ["champion"] and version.status == "READY"
        # the rows themselves, in PostgreSQL
        with psycopg2.connect(f"{pg}/mlflow") as conn, conn.cursor() as cur:
            cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (summary["mlflow_run_id"],))
            assert cur.fetchall() == [("FINISHED",)]
            cur.execute("SELECT name, version FROM model_versions")
            assert cur.fetchall() == [("ser-emotion", summary["model_version"])]
        runs = _flow_runs(pg)
        assert {"ser_pipeline", "extract_features", "train_model"} <= {name for name, *_ in runs}
        assert {state for _, state, *_ in runs} == {"COMPLETED"}
        base = {**env, **tls, "PREFECT_API_URL": api, "PREFECT_API_AUTH_STRING": prefect_auth,
                "MLFLOW_TRACKING_USERNAME": "nightly", "MLFLOW_TRACKING_PASSWORD": pipeline_password}
        # a scheduled deployment: the champion scores the corpus in 10 s, then every 10 minutes
        scoring = subprocess.Popen(
            [str(Path(sys.executable).parent / "ser"), "deploy-scoring", str(ravdess_like), "--out",
             str(tmp_path / "scored"), "--every", "600", "--mlflow-uri", url, "--workers", "1"],
            env={**base, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}, cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            # the four writers start while its first run is running
            _wait_for(lambda: "RUNNING" in _states(pg, "score-new-recordings"), 120, scoring,
                      lambda: f"{_states(pg, 'score-new-recordings')}")
            writers_started = datetime.now(timezone.utc)
            outputs = _concurrent_trainers(tmp_path, config, url, base)
            _wait_for(lambda: "COMPLETED" in _states(pg, "score-new-recordings"), 180, scoring,
                      lambda: f"{_states(pg, 'score-new-recordings')}")
        except AssertionError as exc:
            scoring.terminate()
            raise AssertionError(f"{exc}\nthe runner said: {scoring.communicate(timeout=60)[0][-5000:]}") from None
        scoring.terminate()
        scoring_out = scoring.communicate(timeout=60)[0]
        scored = [r for r in _flow_runs(pg) if r[0] == "score-new-recordings"]
        assert not {"FAILED", "CRASHED"} & {state for _, state, *_ in scored}, scoring_out[-3000:]
        assert any(start < writers_started < end for _, state, _, start, end in scored if state == "COMPLETED")
        import pandas as pd

        rows = pd.read_parquet(tmp_path / "scored" / "model=ser-emotion-v1")  # v1 was champion when it ran
        assert sorted(rows["path"]) == sorted(str(p) for p in ravdess_like.rglob("*.wav"))  # every file once
        assert (rows["error"] == "").all()
        trained = [json.loads((tmp_path / f"train{seed}.json").read_text()) for seed in range(4)]
        assert sorted(t["model_version"] for t in trained) == [2, 3, 4, 5]
        os.environ.update({"MLFLOW_TRACKING_USERNAME": "nightly", "MLFLOW_TRACKING_PASSWORD": pipeline_password})
        try:
            for t in trained:
                done = client.get_run(t["mlflow_run_id"])
                assert done.info.status == "FINISHED" and "test_ua" in done.data.metrics
                assert {"evaluation/confusion_matrix.png"} <= {
                    a.path for a in client.list_artifacts(t["mlflow_run_id"], "evaluation")}
            versions = client.search_model_versions("name='ser-emotion'")
            aliases = client.get_registered_model("ser-emotion").aliases
        finally:
            for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                os.environ.pop(key)
        ranked = max(versions, key=lambda v: (float(v.tags["test_ua"]), -int(v.version)))
        assert str(aliases["champion"]) == str(ranked.version)  # one alias, where the rule puts it
        haystacks = [out.stdout, out.stderr, *outputs, scoring_out, summary_path.read_text(),
                     json.dumps(run.data.params), json.dumps(run.data.tags), *(r[2] for r in _flow_runs(pg))]
        for secret in (admin_password, pipeline_password, prefect_auth.split(":")[1]):
            assert all(secret not in h for h in haystacks)


def _concurrent_trainers(tmp_path: Path, config: Path, url: str, env: dict[str, str]) -> list[str]:
    """Four `ser train` at once on the same store and split, seeds 1 to 4; their outputs, once all exit 0."""
    procs = []
    for seed in range(4):
        cfg = tmp_path / f"seed{seed}.yaml"
        cfg.write_text(config.read_text() + f"split: {{seed: 0}}\ntrain: {{model: utterance_mlp, epochs: 2, "
                                              f"ensemble: 1, seed: {seed + 1}}}\n")
        procs.append(subprocess.Popen(
            [str(Path(sys.executable).parent / "ser"), "train", str(tmp_path / "f.zarr"), "--mlflow-uri", url,
             "--config", str(cfg), "--summary-json", str(tmp_path / f"train{seed}.json"),
             "--out-dir", str(tmp_path / f"train{seed}")], env=env, cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(o[-2000:] for o in outputs)
    return outputs


def _flow_runs(pg: str) -> list[tuple]:
    """Every Prefect flow run, read from PostgreSQL: ``(flow name, state type, parameters, start, end)``."""
    import psycopg2

    with psycopg2.connect(f"{pg}/prefect") as conn, conn.cursor() as cur:
        cur.execute("SELECT f.name, r.state_type, r.parameters::text, r.start_time, r.end_time FROM flow_run r "
                    "JOIN flow f ON f.id = r.flow_id")
        return cur.fetchall()


def _states(pg: str, flow: str) -> set[str]:
    """The state types of ``flow``'s runs."""
    return {state for name, state, *_ in _flow_runs(pg) if name == flow}


def _wait_for(condition, seconds: float, proc: subprocess.Popen, seen=lambda: "") -> None:
    """Poll ``condition`` each second until it holds; fail after ``seconds`` (with ``seen()``) or if ``proc`` exits."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, "the runner exited"
        assert time.monotonic() < deadline, f"not within {seconds} s: {seen()}"
        time.sleep(1)


def _security_without_client_cert(tls: dict[str, str]):
    from distributed import Security

    return Security(tls_ca_file=tls["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"], require_encryption=True)


def _refused(address: str, security) -> None:
    """A client of ``address`` with ``security`` cannot connect (or its TLS set-up fails first)."""
    from distributed import Client

    with pytest.raises((OSError, TypeError, TimeoutError)):
        with Client(address, security=security, timeout=10) as client:
            client.submit(sum, [1, 2]).result(timeout=10)
