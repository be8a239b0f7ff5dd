"""`ser run` end to end on real speech: 4 RAVDESS actors, 2 Dask worker processes, a temporary
Prefect server and a temporary sqlite MLflow store."""

import json
import os

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ser_cli.app import app
from ser_tasks.config import PipelineConfig
from ser_tasks.learn import tracking
from ser_tasks.learn.data import ZarrSequence
from ser_tasks.learn.models import MODEL_INPUTS
from ser_tasks.learn.training import predict
from ser_tasks.store.zarr_store import FeatureStore, read_strings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ACTORS = ("01", "02", "03", "04")


@pytest.fixture
def four_actors(shared_data, tmp_path):
    root = tmp_path / "ravdess4"
    root.mkdir()
    for actor in ACTORS:  # link, never copy, the shared data
        os.symlink(shared_data / "ravdess" / f"Actor_{actor}", root / f"Actor_{actor}")
    return root


def test_ser_run_on_four_ravdess_actors(four_actors, shared_data, tmp_path, prefect_harness, monkeypatch):
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
    tracking.use(uri)
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
    # the registry's URI, as `ser score` tags its runs; the logged model's own beside it
    assert summary["train"]["model_uri"] == f"models:/ser-emotion/{summary['model_version']}"
    assert summary["train"]["logged_model_uri"].startswith("models:/m-")
    assert version.aliases == ["champion"] and summary["train"]["alias"] == "champion"
    assert version.tags["test_ua"] == f"{summary['ua']:.6f}" and version.tags["store_group"] == ext["group"]

    # the registered model on the test actor's raw files: the evaluation's classes and probabilities
    # the store's paths are links into the shared data; the model resolves them, so that is the root allowed
    model = mlflow.pyfunc.load_model("models:/ser-emotion@champion",
                                     model_config={"allowed_paths": [str(shared_data / "ravdess")]})
    view = FeatureStore.locate(store_url).view()
    rows = view.rows("test", originals_only=True)
    seq = ZarrSequence(view, rows, MODEL_INPUTS[PipelineConfig().train.model], 64)
    stored = predict(model.unwrap_python_model().keras_model, seq)
    paths = [str(p) for p in read_strings(g["path"])[rows]]
    as_stored = model.predict(pd.DataFrame({"path": paths}), params={"windows": False})
    probs = as_stored.filter(like="p_").to_numpy()
    assert (as_stored["error"] == "").all() and np.abs(probs - stored).max() < 1e-4
    assert list(as_stored["emotion"]) == [g.attrs["vocabulary"][i] for i in stored.argmax(axis=1)]
    windowed = model.predict(pd.DataFrame({"path": paths}))  # the default: speech over 3 s in windows
    one = (windowed["windows"] == 1).to_numpy()
    assert one.mean() > 0.9 and np.abs(windowed.filter(like="p_").to_numpy()[one] - stored[one]).max() < 1e-4

    # `ser predict` on the test actor's folder, with the champion
    test_actor = read_strings(g["speaker"])[rows[0]].split(":")[1]
    result = CliRunner().invoke(app, ["predict", str(four_actors / f"Actor_{test_actor}"), "--mlflow-uri", uri,
                                      "--out", str(tmp_path / "preds.csv")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    preds = pd.read_csv(tmp_path / "preds.csv", keep_default_na=False).sort_values("path")
    assert len(preds) == 60 and (preds["error"] == "").all()
    assert list(preds["emotion"]) == list(windowed.assign(path=paths).sort_values("path")["emotion"])

    # `ser train` on the same store: a new run and the next model version, no extraction
    result = CliRunner().invoke(app, ["train", store_url, "--mlflow-uri", uri, "--epochs", "1",
                                      "--model", "notebook_cnn1d", "--out-dir", str(tmp_path / "out2"),
                                      "--summary-json", str(tmp_path / "train.json")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    again = json.loads((tmp_path / "train.json").read_text())
    assert again["model_version"] == summary["model_version"] + 1 and again["alias"] in ("champion", "challenger")
    assert again["promotion"] == client.get_model_version("ser-emotion", str(again["model_version"])).tags["promotion"]
    assert again["mlflow_run_id"] != summary["mlflow_run_id"] and again["rows"]["test"] == 60  # 1 actor x 60
    assert mlflow.get_run(again["mlflow_run_id"]).data.params["train.model"] == "notebook_cnn1d"


def test_ser_score_of_a_ravdess_model_on_crema_d_clips(shared_data, tmp_path, mlflow_uri):
    """A RAVDESS-trained model scored on CREMA-D (two actors), on the six classes both corpora have."""
    crema = shared_data / "crema-d" / "AudioFLAC"
    if not crema.is_dir():
        pytest.skip("CREMA-D audio not in SER_TEST_DATA")
    root = tmp_path / "crema2"
    root.mkdir()
    for f in sorted(crema.glob("10[01][06]_*.flac")):  # actors 1006 and 1010 (female, male), linked
        os.symlink(f, root / f.name)
    os.symlink(shared_data / "crema-d" / "VideoDemographics.csv", root / "VideoDemographics.csv")
    # a RAVDESS-trained model, briefly: one actor per split, 2 epochs
    ravdess = tmp_path / "ravdess3"
    ravdess.mkdir()
    for actor in ("01", "02", "03"):
        os.symlink(shared_data / "ravdess" / f"Actor_{actor}", ravdess / f"Actor_{actor}")
    run = CliRunner().invoke(app, ["run", str(ravdess), "--store", str(tmp_path / "f.zarr"), "--mlflow-uri", mlflow_uri,
                                   "--epochs", "2", "--variants", "0", "--out-dir", str(tmp_path / "out")])
    assert run.exit_code == 0, run.output + repr(run.exception)
    summary = tmp_path / "score.json"
    result = CliRunner().invoke(app, ["score", "models:/ser-emotion@champion", str(root), "--mlflow-uri", mlflow_uri,
                                      "--summary-json", str(summary), "--out-dir", str(tmp_path / "score")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    s = json.loads(summary.read_text())
    n = len(list(root.glob("*.flac")))
    assert s["corpus"] == "crema_d" and s["clips"] == n and s["n"] + s["failed"] == n and s["ignored"] == {}
    assert s["classes"] == ["neutral", "happy", "sad", "angry", "fearful", "disgust"]
    assert 0 <= s["ua"] <= 1 and s["model_version"] == 1
    assert mlflow.get_run(s["mlflow_run_id"]).data.tags["model_version"] == "1"
