"""`ser run` end to end on real speech: 4 RAVDESS actors, 2 Dask worker processes, a temporary
Prefect server and a temporary sqlite MLflow store."""

import json
import os

import mlflow
import numpy as np
import pytest
from typer.testing import CliRunner

from ser_tasks.cli import app
from ser_tasks.store import FeatureStore, read_strings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ACTORS = ("01", "02", "03", "04")


@pytest.fixture
def four_actors(shared_data, tmp_path):
    root = tmp_path / "ravdess4"
    root.mkdir()
    for actor in ACTORS:  # link, never copy, the shared data
        os.symlink(shared_data / "ravdess" / f"Actor_{actor}", root / f"Actor_{actor}")
    return root


def test_ser_run_on_four_ravdess_actors(four_actors, tmp_path, prefect_harness, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store_url = str(tmp_path / "features.zarr")
    summary_path = tmp_path / "summary.json"
    result = CliRunner().invoke(app, [
        "run", str(four_actors), "--store", store_url, "--mlflow-uri", uri, "--workers", "2",
        "--epochs", "2", "--variants", "1", "--summary-json", str(summary_path), "--out-dir", str(tmp_path / "out"),
    ])
    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads(summary_path.read_text())

    # the store: 240 clips; training clips once augmented; nothing failed
    ext = summary["extract"]
    assert (ext["clips"], ext["skipped"], ext["failed_rows"], ext["speakers"]) == (240, 0, 0, 4)
    g = FeatureStore.locate(store_url).open()
    n_train = int(((g["split"][:] == 0) & (g["variant"][:] == 0)).sum())
    assert g["log_mel"].shape == (240 + n_train, 64, 301) and ext["rows"] == 240 + n_train
    assert np.isfinite(g["log_mel"][:]).all() and (g["status"][:] == 1).all()
    assert g.attrs["vocabulary"] == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]

    # the split: actor-disjoint, 2 / 1 / 1 actors, augmented rows only in train
    speakers, split = read_strings(g["speaker"]), g["split"][:]
    sides = {s: set(split[speakers == s].tolist()) for s in set(speakers)}
    assert all(len(v) == 1 for v in sides.values())
    assert sorted(len([s for s in sides if sides[s] == {k}]) for k in (0, 1, 2)) == [1, 1, 2]
    assert set(split[g["variant"][:] > 0].tolist()) == {0}

    # the MLflow run: params, per-epoch and test metrics, artifacts, tags, registered model
    mlflow.set_tracking_uri(uri)
    run = mlflow.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["features.n_mels"] == "64" and run.data.params["train.epochs"] == "2"
    assert run.data.params["device"] in ("CPU", "GPU")
    for key in ("test_ua", "test_wa", "test_macro_f1", "extract_clips_per_second"):
        assert key in run.data.metrics
    assert run.data.metrics["test_ua"] == pytest.approx(summary["ua"])
    client = mlflow.MlflowClient()
    assert len(client.get_metric_history(run.info.run_id, "val_ua")) == 2
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 2
    assert run.data.tags["manifest_fingerprint"] == ext["manifest_fingerprint"]
    assert run.data.tags["store"] == store_url and run.data.tags["git_commit"]
    files = {a.path for d in ("data", "evaluation") for a in client.list_artifacts(run.info.run_id, d)}
    assert {"data/split.csv", "data/failures.csv", "data/manifest.csv", "evaluation/confusion_matrix.png",
            "evaluation/training_curves.png", "evaluation/classification_report.txt",
            "evaluation/test_metrics.json"} <= files
    split_csv = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/data/split.csv")
    assert split_csv.count("ravdess:") == 4
    version = client.get_model_version("ser-emotion", str(summary["model_version"]))
    assert version.run_id == run.info.run_id
    model = mlflow.pyfunc.load_model(f"models:/ser-emotion/{summary['model_version']}")
    x = np.zeros((1, 64, 301, 1), dtype=np.float32)
    assert model.predict(x).shape == (1, 8)

    # `ser train` on the same store: a new run and the next model version, no extraction
    result = CliRunner().invoke(app, ["train", store_url, "--mlflow-uri", uri, "--epochs", "1",
                                      "--model", "notebook_cnn1d", "--out-dir", str(tmp_path / "out2"),
                                      "--summary-json", str(tmp_path / "train.json")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    again = json.loads((tmp_path / "train.json").read_text())
    assert again["model_version"] == summary["model_version"] + 1
    assert again["mlflow_run_id"] != summary["mlflow_run_id"] and again["rows"]["test"] == 60  # 1 actor x 60
    assert mlflow.get_run(again["mlflow_run_id"]).data.params["train.model"] == "notebook_cnn1d"
