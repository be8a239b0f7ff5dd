"""The pipeline scaled out, every part real and on loopback: audio and the Zarr store on an
S3-compatible server (moto), a separately started Dask scheduler with two worker processes, a
Prefect server with a scheduled deployment served by `ser deploy`, and an MLflow server whose
artifacts live on the same S3 server. No mocks: each service is a process started from its package.

Phase 1 runs `ser run` against the stack with credentials in --storage-options (which must never
show up in output, MLflow or Prefect). Phase 2 adds files to the bucket, triggers the scheduled
deployment through the Prefect server, and checks that only the new files were extracted and
appended, and that a new model version was registered.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import mlflow
import numpy as np
import pandas as pd
import pytest
from prefect.client.schemas.sorting import FlowRunSort, LogSort, TaskRunSort

from conftest import make_ravdess_like
from ser_tasks.learn import tracking
from ser_tasks.remote import parse_options
from ser_tasks.runtime.devstack import DEV_KEY, LocalStack
from ser_tasks.store.zarr_store import FeatureStore, read_strings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "ser-test-secret-7f3a9c"  # moto accepts any key pair; this one must never be logged
ROOT = "s3://ser/corpus/ravdess"
STORE = "s3://ser/features.zarr"


def _clips(tmp_path: Path) -> dict[str, list[Path]]:
    """Per actor, the clips to upload: real RAVDESS when SER_TEST_DATA is set, else synthetic tones.

    Every 5th file of an actor covers all 8 emotions in 12 clips."""
    data = os.environ.get("SER_TEST_DATA")
    if data and Path(data, "ravdess").is_dir():
        return {a: sorted(p for p in Path(data, "ravdess", f"Actor_{a}").iterdir() if p.suffix in (".wav", ".flac"))
                for a in ("01", "02", "03", "04")}
    root = make_ravdess_like(tmp_path / "synthetic", actors=(1, 2, 3, 4), takes=8, seconds=2.0)
    return {f"{a:02d}": sorted((root / f"Actor_{a:02d}").glob("*.wav")) for a in (1, 2, 3, 4)}


def _upload(s3, files: list[Path], actor: str) -> None:
    for f in files:
        s3.upload_file(str(f), "ser", f"corpus/ravdess/Actor_{actor}/{f.name}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with LocalStack(tmp_path_factory.mktemp("stack")) as st:
        st.start_all(dask_workers=2)
        yield st


def _ser(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run([str(Path(sys.executable).parent / "ser"), *args], env=env, cwd=cwd,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return out


def _prefect_client(api: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class _Client:
        def __enter__(self):
            self._settings = temporary_settings(updates={PREFECT_API_URL: api})
            self._settings.__enter__()
            self._client = get_client(sync_client=True)
            return self._client.__enter__()

        def __exit__(self, *exc):
            self._client.__exit__(*exc)
            self._settings.__exit__(*exc)

    return _Client()


def _wait_for(predicate, timeout: float, what: str, step: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_pipeline_on_s3_with_dask_prefect_and_mlflow_servers(stack, tmp_path):
    clips = _clips(tmp_path)
    s3 = boto3.client("s3", endpoint_url=stack.urls["s3"], aws_access_key_id=DEV_KEY,
                      aws_secret_access_key=SECRET, region_name="us-east-1")
    first = {a: clips[a][::5] for a in ("01", "02", "03")}
    for actor, files in first.items():
        _upload(s3, files, actor)
    n_first = sum(map(len, first.values()))
    # A client with no AWS variables: the credentials reach s3fs only through --storage-options.
    client_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    client_env |= {"PREFECT_API_URL": stack.urls["prefect"], "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    options = json.dumps({"key": DEV_KEY, "secret": SECRET})
    summary_path = tmp_path / "run.json"
    # Small chunks, so that an append leaves whole old chunks behind it even on the synthetic
    # corpus (9 clips, 12 rows: fewer than one chunk of 16).
    config = tmp_path / "ser.yaml"
    config.write_text("extract:\n  batch_rows: 4\n")

    # ---- phase 1: `ser run` with everything remote ------------------------------------------
    out = _ser(["run", ROOT, "--store", STORE, "--dask-address", stack.urls["dask"], "--mlflow-uri",
                stack.urls["mlflow"], "--endpoint-url", stack.urls["s3"], "--storage-options", options,
                "--epochs", "2", "--variants", "1", "--config", str(config), "--summary-json", str(summary_path),
                "--out-dir", str(tmp_path / "out")], client_env, tmp_path)
    summary = json.loads(summary_path.read_text())
    ext = summary["extract"]
    assert (ext["clips"], ext["skipped"], ext["failed_rows"], ext["speakers"]) == (n_first, 0, 0, 3)
    assert ext["computed_rows"] == ext["rows"] > n_first  # training clips were augmented

    opts = parse_options(options, stack.urls["s3"])
    store = FeatureStore.locate(STORE, storage_options=opts)
    g = store.open()
    assert store.counts() == {"rows": ext["rows"], "done": ext["rows"], "failed": 0, "pending": 0}
    assert np.isfinite(g["log_mel"][:]).all()
    assert all(p.startswith("s3://ser/corpus/ravdess/") for p in read_strings(g["path"]))

    # MLflow, read back through the server: the run, its artifacts (stored on S3) and the model.
    tracking.use(stack.urls["mlflow"])
    client = mlflow.MlflowClient(stack.urls["mlflow"], stack.urls["mlflow"])
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics["test_ua"] == pytest.approx(summary["ua"])
    files = {a.path for d in ("data", "evaluation") for a in client.list_artifacts(run.info.run_id, d)}
    assert {"data/split.csv", "evaluation/confusion_matrix.png", "evaluation/test_metrics.json"} <= files
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="ser", Prefix="mlflow/")["Contents"]]
    assert any(k.endswith("evaluation/confusion_matrix.png") for k in keys)
    version = client.get_model_version("ser-emotion", str(summary["model_version"]))
    assert version.run_id == run.info.run_id and version.status == "READY"
    assert version.aliases == ["champion"] and version.tags["manifest_fingerprint"] == ext["manifest_fingerprint"]
    # the registered model takes audio: a clip read from S3, its artifacts read through the MLflow server
    from ser_tasks.serve.predict import read_bytes

    model = mlflow.pyfunc.load_model(f"models:/ser-emotion/{summary['model_version']}")
    clip = str(read_strings(g["path"])[0])
    preds = model.predict(pd.DataFrame({"path": [clip], "audio": [read_bytes(clip, opts)]}))
    assert preds["error"][0] == "" and preds["emotion"][0] in g.attrs["vocabulary"]

    # batch inference on the same cluster: the bucket's clips in, a Parquet dataset on the bucket out,
    # the model read by the workers through the MLflow server; a re-run finds everything scored
    predict_args = ["predict", ROOT, "--out", "s3://ser/predictions", "--dask-address", stack.urls["dask"],
                    "--mlflow-uri", stack.urls["mlflow"], "--endpoint-url", stack.urls["s3"],
                    "--storage-options", options, "--chunk-files", "4"]
    predicted = _ser(predict_args, client_env, tmp_path)
    parts = [o["Key"] for o in s3.list_objects_v2(Bucket="ser", Prefix="predictions/")["Contents"]]
    partition = f"predictions/model=ser-emotion-v{summary['model_version']}/"
    assert sum(k.startswith(partition + "part-") for k in parts) == -(-n_first // 4)
    import fsspec

    from ser_tasks.remote import fs_options

    fs = fsspec.filesystem("s3", **fs_options("s3://ser", opts))
    with fs.open(f"ser/{[k for k in parts if 'part-' in k][0]}") as fh:
        assert set(pd.read_parquet(fh)["model_uri"]) == {f"models:/ser-emotion/{summary['model_version']}"}
    again = _ser(predict_args, client_env, tmp_path)
    assert f"({n_first} scored before, kept)" in again.stderr and "scored before" not in predicted.stderr

    # The secret is nowhere: output, summary, MLflow params/tags, Prefect parameters and logs.
    with _prefect_client(stack.urls["prefect"]) as pc:
        flow_runs = _all(lambda o: pc.read_flow_runs(limit=200, offset=o, sort=FlowRunSort.START_TIME_ASC))
        logs = _all(lambda o: pc.read_logs(limit=200, offset=o, sort=LogSort.TIMESTAMP_ASC))
        task_runs = _all(lambda o: pc.read_task_runs(limit=200, offset=o, sort=TaskRunSort.EXPECTED_START_TIME_DESC))
        assert {fr.state.type.value for fr in flow_runs} == {"COMPLETED"}
        names = {pc.read_flow(fr.flow_id).name for fr in flow_runs}
    assert {"ser_pipeline", "extract_features", "train_model"} <= names
    # a fresh store: every chunk pending and adjacent, so one task per run of chunks_per_task (4) chunks
    assert sum(tr.name.startswith("rows-") for tr in task_runs) == -(-len(store.regions()) // 4)
    sealed = [fr.parameters.get("storage_options") for fr in flow_runs if fr.parameters.get("storage_options")]
    assert sealed and all(o["secret"] == "**********" for o in sealed)
    haystacks = [out.stdout, out.stderr, predicted.stdout, predicted.stderr, summary_path.read_text(),
                 json.dumps(run.data.params),
                 json.dumps(run.data.tags), json.dumps([fr.parameters for fr in flow_runs], default=str),
                 "\n".join(log.message for log in logs)]
    assert all(SECRET not in h for h in haystacks)

    # ---- phase 2: a scheduled deployment on the Prefect server, run through it -------------
    deploy_env = {**stack.s3_env(), "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    deploy_env["AWS_SECRET_ACCESS_KEY"] = SECRET
    stack.spawn("ser-deploy", ["ser", "deploy", ROOT, "--store", STORE, "--name", "nightly", "--cron", "0 3 * * *",
                               "--dask-address", stack.urls["dask"], "--mlflow-uri", stack.urls["mlflow"],
                               "--epochs", "2", "--variants", "1", "--config", str(config),
                               "--out-dir", str(tmp_path / "scheduled")],
                env=deploy_env)
    with _prefect_client(stack.urls["prefect"]) as pc:
        deployment = _wait_for(lambda: _deployment(pc, "ser_pipeline/nightly"), 180, "the deployment")
        assert [(s.schedule.cron, s.active) for s in deployment.schedules] == [("0 3 * * *", True)]
        assert deployment.parameters["store_url"] == STORE

    # the bucket gains a new speaker and more takes of an old one
    rows_before = store.counts()["rows"]
    chunks_before = _chunk_times(s3, store.group)
    second = {"04": clips["04"][::5], "01": clips["01"][1::5][:4]}
    for actor, files in second.items():
        _upload(s3, files, actor)
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: stack.urls["prefect"]}):
        flow_run = run_deployment("ser_pipeline/nightly", timeout=0)
    with _prefect_client(stack.urls["prefect"]) as pc:
        final = _wait_for(lambda: _final(pc, flow_run.id), 600, "the scheduled flow run", step=3)
    assert final.type.value == "COMPLETED", (final, (stack.workdir / "ser-deploy.log").read_text()[-4000:])

    # only the new clips were computed, appended after the old rows, whose chunks were not rewritten
    g = store.open()
    n_new_clips = sum(map(len, second.values()))
    counts = store.counts()
    assert counts["pending"] == 0 and counts["failed"] == 0
    new_rows = np.arange(rows_before, counts["rows"])
    assert len(set(read_strings(g["clip_id"])[new_rows])) == n_new_clips
    after = _chunk_times(s3, store.group)
    b = g.attrs["batch_rows"]
    untouched = [k for k in chunks_before if int(k.rsplit("/", 3)[-3]) < rows_before // b]
    assert untouched and all(after[k] == chunks_before[k] for k in untouched)
    scheduled = client.search_runs([run.info.experiment_id], "tags.stage = 'pipeline'", order_by=["start_time DESC"])[0]
    assert scheduled.info.run_id != run.info.run_id
    assert (scheduled.data.metrics["extract_computed_rows"] == len(new_rows)
            == scheduled.data.metrics["extract_appended_rows"])
    versions = client.search_model_versions("name='ser-emotion'")
    assert max(int(v.version) for v in versions) == summary["model_version"] + 1


def _all(page) -> list:
    """Every item of a paged Prefect API read (the server returns at most 200 at a time)."""
    out = []
    while batch := page(len(out)):
        out += batch
    return out


def _deployment(pc, name):
    try:
        return pc.read_deployment_by_name(name)
    except Exception:  # not registered yet
        return None


def _final(pc, flow_run_id):
    state = pc.read_flow_run(flow_run_id).state
    return state if state is not None and state.is_final() else None


def _chunk_times(s3, group: str) -> dict[str, object]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="ser", Prefix=f"features.zarr/{group}/log_mel/c/")
    return {o["Key"]: o["LastModified"] for page in pages for o in page.get("Contents", [])}
