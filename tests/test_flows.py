"""The extraction flow on Dask worker processes under a real (temporary) Prefect server."""

import json
import os
from pathlib import Path

import mlflow
import numpy as np
import pytest
from distributed import Client, LocalCluster
from typer.testing import CliRunner

from conftest import make_ravdess_like, sine, write_wav
from flows.engine.prefect_server import prefect_api
from flows.extract import dask_runner, extract_features
from ser_cli.app import app
from ser_tasks.config import PipelineConfig
from ser_tasks.store.zarr_store import FeatureStore

pytestmark = pytest.mark.slow


def test_extract_flow_on_a_scheduler_address_collects_failures_and_resumes(tmp_path, prefect_harness, mlflow_uri):
    root = make_ravdess_like(tmp_path / "c", actors=(1, 2, 3, 4), takes=2)
    bad = root / "Actor_03" / "03-01-05-01-01-01-03.wav"
    bad.write_bytes(b"not audio at all")
    (root / "Actor_03" / "03-01-99-01-01-01-03.wav").write_bytes(b"")  # name does not parse
    silent = write_wav(root / "Actor_04" / "03-01-01-01-01-01-04.wav", np.zeros(16_000, np.float32))
    click = write_wav(root / "Actor_02" / "03-01-05-01-02-01-02.wav", sine(300, 0.01))  # 10 ms
    cfg = PipelineConfig().with_overrides({"audio.duration": 1.0, "augment.variants": 1, "extract.batch_rows": 4})
    url = str(tmp_path / "f.zarr")
    # an existing cluster, reached by address as with --dask-address
    with prefect_api(), LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=":0") as cluster:
        first = extract_features.with_options(task_runner=dask_runner(cluster.scheduler_address))(
            str(root), url, cfg, show_progress=False)
        # process_env (applied in conftest, as by the CLI) reaches the workers: no stack sampling
        with Client(cluster) as client:
            import dask

            assert set(client.run(dask.config.get, "distributed.worker.profile.enabled").values()) == {False}
    assert first["clips"] == 16 and first["skipped"] == 1
    n_train_clips = first["rows"] - first["clips"]  # one augmented copy per training clip
    assert first["computed_rows"] == first["rows"] == 16 + n_train_clips
    reasons = {Path(f["path"]).name: f["reason"] for f in first["failures"]}
    assert set(reasons) == {bad.name, silent.name, click.name} and first["failed_rows"] >= 3
    assert reasons[bad.name].startswith(f"{bad}: cannot decode audio (") and " at 0x" not in reasons[bad.name]
    assert reasons[silent.name] == f"{silent}: silent (peak -inf dBFS, below the -60 dBFS floor)"
    assert "s of sound, under the 0.25 s minimum" in reasons[click.name]
    assert first["clips_per_second"] > 0
    store = FeatureStore(url, first["group"])
    counts = store.counts()
    assert counts["pending"] == 0 and counts["failed"] == first["failed_rows"]
    assert store.open().attrs["complete"] is True

    # the same again through `ser extract`: up to date, answered without a flow, failures still reported
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg.model_dump(mode="json")))
    summary_path = tmp_path / "s.json"
    args = ["extract", str(root), "--store", url, "--config", str(cfg_file), "--workers", "1",
            "--summary-json", str(summary_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "up to date" in result.output
    second = json.loads(summary_path.read_text())
    assert second["computed_rows"] == 0 and second["group"] == first["group"] and second["rows"] == first["rows"]
    assert second["failed_rows"] == first["failed_rows"]
    assert {Path(f["path"]).name for f in second["failures"]} == set(reasons)
    assert second["manifest_fingerprint"] == first["manifest_fingerprint"] and "mlflow_run_id" not in second

    # a new clip: the flow runs (LocalCluster of 1), computes only its rows and logs an MLflow run
    write_wav(root / "Actor_01" / "03-01-05-02-02-02-01.wav", sine(220, 1.0))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    third = json.loads(summary_path.read_text())
    assert third["computed_clips"] == 1 and third["appended_rows"] == third["computed_rows"] >= 1
    assert third["failed_rows"] == first["failed_rows"]
    mlflow.set_tracking_uri(mlflow_uri)
    run = mlflow.get_run(third["mlflow_run_id"])
    assert run.data.tags["stage"] == "extract" and run.data.metrics["extract_failed_rows"] == first["failed_rows"]
    failures_csv = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/data/failures.csv")
    assert "cannot decode" in failures_csv


@pytest.mark.parametrize("ready", [True, False])
def test_prefect_api_exports_the_configured_server_to_child_processes(prefect_harness, monkeypatch, ready):
    """A server configured in Prefect's settings (not the environment) is used; with ready=False the
    temporary server spawned before the settings were read is stopped at once."""
    import subprocess

    from prefect.settings import PREFECT_API_URL

    spawned, real_popen = [], subprocess.Popen

    def popen(*args, **kwargs):
        spawned.append(real_popen(*args, **kwargs))
        return spawned[-1]

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with prefect_api(ready=ready) as url:
        assert url == PREFECT_API_URL.value() and os.environ["PREFECT_API_URL"] == url
        assert all(p.poll() is not None for p in spawned)  # no second server runs beside the configured one
    assert len(spawned) == (0 if ready else 1)
    assert "PREFECT_API_URL" not in os.environ


def test_a_temporary_server_starts_during_the_block_records_the_flow_runs_and_stops(tmp_path):
    """Without a configured API, prefect_api(ready=False) starts a server in a child process; flows
    wait for it through await_api, their runs land on it, and it is gone after the block."""
    import subprocess
    import sys

    code = """
import os, sys
from flows.engine.prefect_server import await_api, prefect_api
with prefect_api(ready=False) as url:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from flows.engine.prefect_server import _PENDING
    server = _PENDING[-1]
    assert os.environ["PREFECT_API_URL"] == url == server.api_url
    @flow(name="probe")
    def probe(x: int) -> int:
        return x + 1
    await_api()
    assert probe(1) == 2
    from prefect.client.schemas.sorting import FlowRunSort
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=10, sort=FlowRunSort.ID_DESC)
    assert [r.state.name for r in runs] == ["Completed"], runs
assert server.process.poll() is not None and "PREFECT_API_URL" not in os.environ
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # its own database
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout + out.stderr


def test_an_early_server_is_taken_by_the_next_prefect_api_block_or_stopped_unused(tmp_path):
    """early_server() spawns the temporary server at once (ser extract, before it knows whether the
    store is complete): a prefect_api block inside takes that very server; one nobody took is
    stopped on exit; with PREFECT_API_URL in the environment nothing is spawned."""
    import subprocess
    import sys

    code = """
import os
from flows.engine.prefect_server import _EARLY, _PENDING, early_server, prefect_api
with early_server():
    unused = _EARLY[-1]
assert unused.process.poll() is not None and not _EARLY, "an untaken server outlived its block"
with early_server():
    early = _EARLY[-1]
    with prefect_api(ready=False) as url:
        assert _PENDING[-1] is early and url == early.api_url and not _EARLY
        assert os.environ["PREFECT_API_URL"] == url
assert early.process.poll() is not None and "PREFECT_API_URL" not in os.environ
os.environ["PREFECT_API_URL"] = "http://127.0.0.1:9/api"
with early_server():
    assert not _EARLY
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout + out.stderr


def test_flow_heartbeats_are_off_unless_the_user_sets_them(prefect_harness, monkeypatch):
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY as HEARTBEAT
    from prefect.settings import temporary_settings

    for name in ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY"):
        monkeypatch.delenv(name, raising=False)
    with prefect_api():
        assert HEARTBEAT.value() is None  # no heartbeat thread for flow runs to join on exit
    assert HEARTBEAT.value() is not None  # Prefect's own default again outside
    # A user who starts with the variable set: Prefect read it into its settings at start-up.
    monkeypatch.setenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "45")
    with temporary_settings(updates={HEARTBEAT: 45}), prefect_api():
        assert HEARTBEAT.value() == 45  # their choice is kept


def test_dask_workers_import_neither_keras_nor_mlflow():
    """A worker running an extraction task imports flows.extract (the flow run's context names the
    flow); TensorFlow alone would add about 450 MiB to every worker (measured: 965 against 510 MiB
    peak per worker), pandas 0.2 CPU-seconds of start-up that no task uses."""
    import subprocess
    import sys

    code = ("import sys, flows.extract, ser_tasks.store.extraction;"
            "heavy = [m for m in ('tensorflow', 'keras', 'mlflow', 'pandas') if m in sys.modules];"
            "print(heavy); sys.exit(1 if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(("warm_up", "extract_loaded", "vocoder_loaded"),
                         [("augment", True, True), ("features", True, False), ("none", False, False)])
def test_pipeline_workers_warm_up_for_extraction_before_their_first_task(warm_up, extract_loaded, vocoder_loaded):
    """dask_runner's LocalCluster forks its workers from a fresh forkserver that warmed up as asked
    (and preloads ser_tasks.runtime.worker_setup): the worker has librosa's lazily imported modules before
    it is sent any task. Without augmentation it never loads scipy.interpolate (the phase vocoder's);
    neither loads scipy.signal (the windows are built without it); a training cluster
    warms nothing up and does not import the extraction code."""
    from flows.engine import forkserver

    assert forkserver.stop()  # a server from an earlier test would have warmed up for its own run
    kwargs = dask_runner(workers=1, warm_up=warm_up).cluster_kwargs

    def warmed() -> dict:
        import sys
        import threading

        for thread in threading.enumerate():
            if thread.name == "ser-warm-up":
                thread.join(120)
        return {m: m in sys.modules for m in ("ser_tasks.store.extraction", "scipy.interpolate", "scipy.signal",
                                               "mlflow", "keras")}

    with LocalCluster(**kwargs) as cluster, Client(cluster) as client:
        loaded = list(client.run(warmed).values())
    assert loaded == [{"ser_tasks.store.extraction": extract_loaded, "scipy.interpolate": vocoder_loaded,
                       "scipy.signal": False, "mlflow": False, "keras": False}]


def test_extraction_runner_warms_up_for_what_the_run_computes():
    from flows.extract import extraction_runner
    from ser_tasks.config import PipelineConfig

    def env(cfg: dict) -> dict:
        return extraction_runner(PipelineConfig.model_validate(cfg)).cluster_kwargs["env"]["SER_WARM_UP"]

    assert env({"augment": {"variants": 2}}) == "augment"
    assert env({}) == env({"augment": {"variants": 0}}) == "features"  # the default recipe embeds originals only
    with pytest.raises(ValueError, match="warm_up 'all' is not one of augment, features, none"):
        dask_runner(warm_up="all")


def test_warm_up_runs_a_clip_through_and_leaves_nothing_behind():
    import fsspec

    from ser_tasks.config import AudioConfig
    from ser_tasks.store.extraction import warm_up

    assert warm_up(AudioConfig(duration=0.5)) > 0
    assert fsspec.filesystem("memory").glob("/ser-warm-up-*") == []


def test_a_task_waits_for_its_workers_warm_up(monkeypatch):
    """A task arriving mid-warm-up must not run librosa alongside it (numba compiles twice)."""
    import threading

    from ser_tasks.store import extraction

    entered = threading.Event()

    def stub_store(*args, **kwargs):
        entered.set()
        raise RuntimeError("stop here")

    monkeypatch.setattr(extraction, "FeatureStore", stub_store)
    task = threading.Thread(target=lambda: pytest.raises(RuntimeError, extraction.process_region, "u", "g", 0, 1))
    with extraction._WARMING:  # as warm_up holds it
        task.start()
        assert not entered.wait(0.5)
    assert entered.wait(30)
    task.join(30)


def test_the_extract_and_manifest_commands_load_no_tensorflow():
    """`ser extract` logs to MLflow through ser_tasks.learn.tracking; Keras (and TensorFlow, seconds of
    start-up) is imported by training only, scikit-learn by scoring only, Prefect's server
    application by its own process only."""
    import subprocess
    import sys

    code = ("import sys, ser_cli.app, flows.extract, flows.engine.prefect_server, ser_tasks.learn.tracking,"
            " ser_tasks.corpus.manifest, ser_tasks.store.plan;"
            "heavy = [m for m in ('tensorflow', 'keras', 'jax', 'sklearn', 'prefect.server.api.server')"
            " if m in sys.modules]; print(heavy);"
            "sys.exit(1 if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
