"""Batch inference: Parquet parts written whole per chunk, resumed after a kill with every file once, the
same rows from one process and from a LocalCluster, and the scheduled flow that scores only new recordings.

The model is a small from-scratch one (loading it is cheap): what is tested is the plumbing around it.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from conftest import small_registered_model
from ser_tasks.learn import tracking
from ser_tasks.serve.predict import log_emotion_model, preprocessing_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The small model, registered as ``tones`` (champion), with its corpus of 6 actors."""
    small = small_registered_model(tmp_path_factory.mktemp("batch"))
    return {**small, "model_uri": f"models:/tones/{small['version']}"}


def test_ser_predict_resumes_a_killed_run_and_a_cluster_scores_as_one_process(trained, tmp_path):
    """Parquet parts are written whole per chunk: SIGKILL mid-run, run again, and every file is there once;
    a 2-worker LocalCluster gives the rows one process gives."""
    import os
    import signal
    import time

    from typer.testing import CliRunner

    from ser_cli.app import app

    files = sorted(Path(trained["root"]).rglob("*.wav"))[:24]
    model = f"models:/tones/{trained['version']}"
    out = tmp_path / "preds"
    cmd = [sys.executable, "-c", "from ser_cli.app import main; main()", "predict", str(trained["root"]),
           "--model", model, "--mlflow-uri", trained["uri"], "--out", str(out), "--chunk-files", "2", "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    folder = out / f"model=tones-v{trained['version']}"
    deadline = time.monotonic() + 300
    while len(list(folder.glob("part-*.parquet"))) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no chunk written"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    parts = len(list(folder.glob("part-*.parquet")))
    every = len(list(Path(trained["root"]).rglob("*.wav")))
    assert parts < every / 2  # killed before the end
    again = CliRunner().invoke(app, cmd[3:])
    assert again.exit_code == 0, again.output + repr(again.exception)
    assert "scored before, kept" in again.output
    table = pd.read_parquet(folder)
    assert len(table) == every and table["path"].is_unique and (table["error"] == "").all()
    # nothing left to do: the third run scores nothing and reads the same rows
    third = CliRunner().invoke(app, cmd[3:])
    assert third.exit_code == 0 and f"({every} scored before, kept)" in third.output
    # the same files on two worker processes, from a CSV's point of view
    csv = tmp_path / "cluster.csv"
    result = CliRunner().invoke(app, ["predict", *map(str, files), "--model", model, "--mlflow-uri", trained["uri"],
                                      "--out", str(csv), "--chunk-files", "6", "--workers", "2"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    cluster = pd.read_csv(csv, keep_default_na=False).set_index("path")
    alone = table.set_index("path").loc[cluster.index]
    assert list(cluster["emotion"]) == list(alone["emotion"])
    np.testing.assert_allclose(cluster["p_angry"], alone["p_angry"], atol=1e-5)


def test_the_scoring_flow_scores_only_new_recordings_and_all_again_for_a_new_champion(trained, tmp_path,
                                                                                      prefect_harness):
    from flows.batch import score_new_recordings, scoring_deployment
    from ser_tasks.remote import parse_options
    from ser_tasks.serve import registry

    tracking.use(trained["uri"])
    registry.promote("tones", trained["version"])
    incoming = tmp_path / "incoming"
    clips = sorted(Path(trained["root"], "Actor_03").glob("*.wav"))
    for p in clips[:5]:
        (incoming / "day1").mkdir(parents=True, exist_ok=True)
        (incoming / "day1" / p.name).write_bytes(p.read_bytes())
    out = str(tmp_path / "scored")
    kwargs = {"model_uri": "models:/tones@champion", "mlflow_uri": trained["uri"], "workers": 1}
    first = score_new_recordings(str(incoming), out, **kwargs)
    assert (first["files"], first["skipped"], first["scored"]) == (5, 0, 5)
    for p in clips[5:8]:
        (incoming / "day2").mkdir(parents=True, exist_ok=True)
        (incoming / "day2" / p.name).write_bytes(p.read_bytes())
    second = score_new_recordings(str(incoming), out, **kwargs)
    assert (second["files"], second["skipped"], second["scored"]) == (8, 5, 3)
    assert second["model_uri"] == f"models:/tones/{trained['version']}"
    table = pd.read_parquet(second["out"])
    assert len(table) == 8 and table["path"].is_unique
    # a new champion: every recording again, in the new version's own partition
    with mlflow.start_run():
        info = log_emotion_model(trained["fit"].model_path, trained["fit"].normalizer_path,
                                 preprocessing_of(mlflow.pyfunc.load_model(trained["model_uri"])), "tones")
    registry.promote("tones", int(info.registered_model_version))
    third = score_new_recordings(str(incoming), out, **kwargs)
    assert (third["files"], third["skipped"], third["scored"]) == (8, 0, 8)
    assert third["model_uri"] == f"models:/tones/{info.registered_model_version}" != second["model_uri"]
    registry.promote("tones", trained["version"])  # the other tests use the fixture's version as champion
    with pytest.raises(ValueError, match="credentials"):
        scoring_deployment("n", "s3://b/in/", "s3://b/out", storage_options=parse_options('{"secret": "x"}'))
    dep = scoring_deployment("incoming", "s3://b/in/", "s3://b/out", cron="*/5 * * * *")
    assert dep.parameters["prefix"] == "s3://b/in/" and dep.parameters["model_uri"] == "models:/ser-emotion@champion"
    assert dep.schedules[0].schedule.cron == "*/5 * * * *"
    made = datetime.now(UTC)
    every = scoring_deployment("incoming", "s3://b/in/", "s3://b/out", every_seconds=90)
    assert every.schedules[0].schedule.interval.total_seconds() == 90
    first = every.schedules[0].schedule.anchor_date - made  # the first run soon, not one interval away
    assert timedelta(seconds=9) < first < timedelta(seconds=15)
    with pytest.raises(ValueError, match="positive"):
        scoring_deployment("n", "s3://b/in/", "s3://b/out", every_seconds=0)


def test_a_corpus_normalised_model_scores_its_files_in_one_call(tmp_path, monkeypatch):
    from ser_tasks.serve import bulk
    from ser_tasks.serve.bulk import ModelRef, corpus_normalised, predict_batch

    def model_dir(flag: bool | None) -> Path:
        folder = tmp_path / f"m{flag}"
        (folder / "artifacts").mkdir(parents=True)
        if flag is not None:
            (folder / "artifacts" / "preprocessing.json").write_text(f'{{"corpus_norm": {str(flag).lower()}}}')
        return folder

    folders = {flag: str(model_dir(flag)) for flag in (True, False, None)}
    assert corpus_normalised(folders[True])
    assert not corpus_normalised(folders[False]) and not corpus_normalised(folders[None])
    assert not corpus_normalised(None)
    speakers_seen = []
    monkeypatch.setattr(bulk, "done_paths", lambda *a: set())
    monkeypatch.setattr(bulk, "run_batch", lambda ref, paths, params, out, roots, speakers, *a: speakers_seen.append(
        speakers) or {})
    paths = [f"/data/{i}.wav" for i in range(5)]
    for flag in (True, False):
        monkeypatch.setattr(bulk, "resolve_model",
                            lambda uri, local, flag=flag: ModelRef(uri, "m-v1", "sqlite://", folders[flag]))
        predict_batch("models:/m/1", paths, {}, str(tmp_path / "out"), ["/data"], None, workers=1)
    assert speakers_seen == [["all"] * 5, None]  # one population in one chunk; else chunks of chunk_files
