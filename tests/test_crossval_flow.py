"""`ser evaluate`: extraction of every clip with its copies, folds as nested MLflow runs, one table."""

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_ravdess_like
from flows.crossval import cross_validate  # imports Dask, which binds log handlers: here, not in CliRunner
from ser_cli.app import app
from ser_tasks.config import PipelineConfig
from ser_tasks.store.zarr_store import FeatureStore

pytestmark = pytest.mark.slow


def config_text(encoder, extract: str, train: str, extra: str = "") -> str:
    """A config file's text: 1 s clips, one augmented copy, the default model on ``encoder``.

    The tiny random Whisper encoder of conftest: these tests are about the flows, not the encoder.
    """
    return (f"features: {{encoder: '{encoder}'}}\naudio: {{duration: 1.0}}\naugment: {{variants: 1}}\n"
            f"extract: {extract}\ntrain: {train}\n{extra}")


def test_ablation_nests_protocols_and_folds_and_scores_held_out_clips(tmp_path, prefect_harness, monkeypatch,
                                                                      tiny_encoder_dir):
    monkeypatch.chdir(tmp_path)
    root = make_ravdess_like(tmp_path / "c", actors=tuple(range(1, 7)), emotions=("01", "05", "04"), takes=2)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store_url, summary_path = str(tmp_path / "f.zarr"), tmp_path / "s.json"
    config = tmp_path / "c.yaml"
    config.write_text(config_text(tiny_encoder_dir, "{batch_rows: 16}", "{batch_size: 8, epoch_rows: one_per_clip}"))
    # A child process, as a user runs it: in-process, TensorFlow's and Prefect's log handlers would
    # bind to CliRunner's stream, which is closed afterwards, and break later tests' capture.
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    result = subprocess.run([
        sys.executable, "-m", "ser_cli.app", "evaluate", str(root), "--store", store_url, "--mlflow-uri", uri,
        "--protocol", "ablation", "--folds", "3", "--max-folds", "2", "--epochs", "2", "--workers", "1",
        "--config", str(config), "--summary-json", str(summary_path), "--out-dir", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Cross-validated scores" in result.stderr and "cv-actor" in result.stderr
    summary = json.loads(summary_path.read_text())

    # Every clip (36) got its original and one copy, whatever the store's own holdout split says.
    g = FeatureStore.locate(store_url).open()
    assert g["variant"].shape[0] == 72 and (np.bincount(g["variant"][:]) == 36).all()
    assert summary["extract"]["rows"] == 72 and summary["extract"]["failed_rows"] == 0

    protocols = summary["evaluation"]["protocols"]
    assert set(protocols) == {"cv-actor", "clip-split", "row-split"}
    cv = protocols["cv-actor"]
    assert cv["folds"] == 2 and cv["n_folds"] == 3
    assert [r["test_speakers"] for r in cv["fold_results"]] == [["ravdess:01", "ravdess:02"],
                                                                ["ravdess:03", "ravdess:04"]]
    assert all(r["n"] == 12 for r in cv["fold_results"])  # 2 actors x 6 originals, no copies scored
    assert all(r["train_rows"] == 48 for r in cv["fold_results"])  # 4 actors x 6 clips x 2 rows
    ua = [r["ua"] for r in cv["fold_results"]]
    assert cv["ua_mean"] == pytest.approx(np.mean(ua)) and cv["ua_std"] == pytest.approx(np.std(ua, ddof=1))
    assert protocols["row-split"]["fold_results"][0]["n"] == 24  # a third of all 72 rows, copies included
    assert [row["protocol"] for row in summary["evaluation"]["table"]] == ["cv-actor", "clip-split", "row-split"]

    client = mlflow.MlflowClient(uri)
    parent = client.get_run(summary["evaluation"]["mlflow_run_id"])
    assert parent.data.metrics["ablation_cv_actor_ua"] == pytest.approx(cv["ua_mean"])
    exp = parent.info.experiment_id
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.info.run_name for r in children) == ["clip-split", "cv-actor", "row-split"]
    cv_run = next(r for r in children if r.info.run_name == "cv-actor")
    assert cv_run.data.metrics["test_ua"] == pytest.approx(cv["ua_mean"])
    assert "actor-disjoint" in cv_run.data.tags["evaluation"]
    folds = client.search_runs([exp], f"tags.mlflow.parentRunId = '{cv_run.info.run_id}'")
    assert sorted(r.info.run_name for r in folds) == ["cv-actor-fold1", "cv-actor-fold2"]
    assert {r.data.params["test_speakers"] for r in folds} == {"ravdess:01,ravdess:02", "ravdess:03,ravdess:04"}
    assert all("fold_ua" in r.data.metrics and "test_ua" not in r.data.metrics for r in folds)
    assert cv_run.data.params["train.schedule"] == "cosine" and cv_run.data.params["augment.scope"] == "all"

    # One protocol alone: its run is the top-level parent of its folds, carrying the store's tags.
    cfg = PipelineConfig().with_overrides({"features.encoder": str(tiny_encoder_dir), "train.epochs": 1,
                                           "train.batch_size": 8, "train.schedule": "cosine"})
    alone = cross_validate(store_url, "cv-actor", cfg, None, uri, 3, 1,
                           out_dir=str(tmp_path / "alone"))
    top = client.get_run(alone["mlflow_run_id"])
    assert ("mlflow.parentRunId" not in top.data.tags
            and top.data.tags["store_group"] == FeatureStore.locate(store_url).group)
    assert alone["folds"] == 1 and "test_ua" in top.data.metrics
    (fold,) = client.search_runs([exp], f"tags.mlflow.parentRunId = '{top.info.run_id}'")
    assert fold.info.run_name == "cv-actor-fold1"


def test_evaluate_refuses_an_unknown_protocol_before_any_work(tmp_path, prefect_harness, ravdess_like, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["evaluate", str(ravdess_like), "--store", str(tmp_path / "f.zarr"),
                                      "--protocol", "leave-one-in", "--mlflow-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    assert result.exit_code == 2 and "unknown protocol 'leave-one-in'" in result.output
    assert not (tmp_path / "f.zarr").exists()


def test_cross_corpus_leaves_each_corpus_out_and_a_folds_file_sets_cv_actor(tmp_path, prefect_harness, monkeypatch,
                                                                            tiny_encoder_dir):
    from conftest import sine, write_wav

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    make_ravdess_like(data / "ravdess", actors=(1, 2, 3, 4), emotions=("01", "05", "04"), takes=1)
    for spk in ("03", "08", "09"):  # EmoDB names: angry, sad, neutral, boredom (RAVDESS has no boredom)
        for i, letter in enumerate("WTNL"):
            write_wav(data / "emodb" / f"{spk}a0{i}{letter}a.wav", sine(250 + 40 * i, 1.2))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store_url, summary_path = str(tmp_path / "f.zarr"), tmp_path / "s.json"
    config = tmp_path / "c.yaml"
    config.write_text(config_text(tiny_encoder_dir, "{batch_rows: 16}", "{batch_size: 8}"))
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    result = subprocess.run([
        sys.executable, "-m", "ser_cli.app", "evaluate", str(data), "--store", store_url, "--mlflow-uri", uri,
        "--protocol", "cross-corpus", "--epochs", "1", "--workers", "1", "--config", str(config),
        "--summary-json", str(summary_path), "--out-dir", str(tmp_path / "out")],
        env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Per held-out corpus" in result.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["extract"]["corpus"] == "emodb+ravdess"
    ev = summary["evaluation"]
    assert ev["protocol"] == "cross-corpus" and ev["folds"] == ev["n_folds"] == 2
    by_corpus = {r["held_out"]: r for r in ev["fold_results"]}
    assert set(by_corpus) == {"emodb", "ravdess"}
    assert by_corpus["emodb"]["n"] == 9  # 3 speakers x angry, sad, neutral: boredom is EmoDB's alone
    assert by_corpus["ravdess"]["n"] == 12  # 4 actors x 3 classes, all shared with EmoDB
    client = mlflow.MlflowClient(uri)
    parent = client.get_run(ev["mlflow_run_id"])
    assert parent.data.metrics["test_ua_emodb"] == pytest.approx(by_corpus["emodb"]["ua"])
    assert "leave one corpus out" in parent.data.tags["evaluation"]
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.info.run_name for r in children) == ["cross-corpus-emodb", "cross-corpus-ravdess"]
    assert {r.data.tags["held_out_corpus"] for r in children} == {"emodb", "ravdess"}

    # cv-actor on a partition from a file, on the same store
    folds_csv = tmp_path / "folds.csv"
    folds_csv.write_text("fold,speaker\n1,ravdess:01\n1,emodb:03\n2,ravdess:02\n2,emodb:08\n")
    cfg = PipelineConfig().with_overrides({"features.encoder": str(tiny_encoder_dir), "train.epochs": 1,
                                           "train.batch_size": 8, "train.schedule": "cosine"})
    on_file = cross_validate(store_url, "cv-actor", cfg, None, uri, max_folds=1, out_dir=str(tmp_path / "file"),
                             folds_file=str(folds_csv))
    assert on_file["n_folds"] == 2 and on_file["folds"] == 1
    assert on_file["fold_results"][0]["test_speakers"] == ["emodb:03", "ravdess:01"]
    assert f"on the {folds_csv} partition" in on_file["evaluation"]


def test_folds_and_the_model_train_as_tasks_on_a_two_worker_cluster(tmp_path, prefect_harness, monkeypatch,
                                                                    tiny_encoder_dir):
    from flows.extract import dask_runner
    from flows.train import train_model

    monkeypatch.chdir(tmp_path)
    root = make_ravdess_like(tmp_path / "c", actors=tuple(range(1, 7)), emotions=("01", "05"), takes=2)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store_url, summary_path = str(tmp_path / "f.zarr"), tmp_path / "s.json"
    config = tmp_path / "c.yaml"
    config.write_text(config_text(tiny_encoder_dir, "{batch_rows: 16, workers: 2}", "{batch_size: 8, where: cluster}"))
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    result = subprocess.run([
        sys.executable, "-m", "ser_cli.app", "evaluate", str(root), "--store", store_url, "--mlflow-uri", uri,
        "--folds", "3", "--max-folds", "2", "--epochs", "2", "--config", str(config),
        "--summary-json", str(summary_path), "--out-dir", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ev = json.loads(summary_path.read_text())["evaluation"]
    assert [r["test_speakers"] for r in ev["fold_results"]] == [["ravdess:01", "ravdess:02"],
                                                                ["ravdess:03", "ravdess:04"]]
    client = mlflow.MlflowClient(uri)
    folds = client.search_runs([client.get_run(ev["mlflow_run_id"]).info.experiment_id],
                               f"tags.mlflow.parentRunId = '{ev['mlflow_run_id']}'")
    assert sorted(r.info.run_name for r in folds) == ["cv-actor-fold1", "cv-actor-fold2"]
    workers = {r.data.params["worker"] for r in folds}
    assert len(workers) == 2, workers  # both folds at once, one per worker process
    assert all(r.data.params["threads"] == str(max(1, (os.cpu_count() or 1) // 2)) for r in folds)
    for run in folds:  # the epochs trained on a worker are in the fold's run, step by step
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [0, 1]
        assert "fold_ua" in run.data.metrics
    assert not list((tmp_path / "f.zarr" / ".ser-runs").iterdir())  # the models were fetched, then removed

    # ser run's model: fit and test scoring as one cluster task; the model comes back and is registered
    cfg = PipelineConfig().with_overrides({"features.encoder": str(tiny_encoder_dir), "audio.duration": 1.0,
                                           "augment.variants": 1, "augment.scope": "all",
                                           "extract.batch_rows": 16, "train.epochs": 1, "train.batch_size": 8,
                                           "train.where": "cluster"})
    trained = train_model.with_options(task_runner=dask_runner(None, 2, 1))(
        store_url, cfg, None, uri, out_dir=str(tmp_path / "model"), verbose=0)
    run = client.get_run(trained["mlflow_run_id"])
    assert run.data.params["train_worker"] != f"{os.uname().nodename}:{os.getpid()}"
    assert (tmp_path / "model" / "model.keras").exists() and trained["model_version"] >= 1
    assert run.data.metrics["test_ua"] == pytest.approx(trained["ua"]) and trained["epochs"] == 1


def test_a_sweep_trains_each_combination_in_parallel_and_compare_shows_what_differs(tmp_path, prefect_harness,
                                                                                    monkeypatch, tiny_encoder_dir):
    monkeypatch.chdir(tmp_path)
    root = make_ravdess_like(tmp_path / "c", actors=tuple(range(1, 7)), emotions=("01", "05"), takes=2)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    grid = tmp_path / "grid.yaml"
    # the encoder model takes no SpecAugment (its section has none): vary its seed
    grid.write_text("train.learning_rate: [0.003, 0.001]\ntrain.seed: [0, 1]\n")
    config = tmp_path / "c.yaml"
    config.write_text(config_text(tiny_encoder_dir, "{batch_rows: 16, workers: 2}", "{batch_size: 8, where: cluster}",
                                  "tracking: {experiment: sweep-test}\n"))
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "COLUMNS": "100"}
    summary_path = tmp_path / "s.json"
    result = subprocess.run([
        sys.executable, "-m", "ser_cli.app", "sweep", str(root), "--grid", str(grid),
        "--store", str(tmp_path / "f.zarr"), "--mlflow-uri", uri, "--epochs", "1", "--config", str(config),
        "--summary-json", str(summary_path), "--out-dir", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    combos = json.loads(summary_path.read_text())["sweep"]["combinations"]
    assert [c["name"] for c in combos] == [f"learning_rate={lr} seed={m}"
                                           for lr in ("0.003", "0.001") for m in (0, 1)]
    assert all(0 <= c["ua"] <= 1 and c["val_ua"] == c["val_ua"] for c in combos)
    client = mlflow.MlflowClient(uri)
    parent = client.get_run(json.loads(summary_path.read_text())["sweep"]["mlflow_run_id"])
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 4 and len({r.data.params["train_worker"] for r in children}) == 2
    assert {r.data.params["train.learning_rate"] for r in children} == {"0.003", "0.001"}
    shown = CliRunner().invoke(app, ["compare", "sweep-test", "--mlflow-uri", uri, "--plot", str(tmp_path / "p.png")],
                               env={"COLUMNS": "100"})
    assert shown.exit_code == 0, shown.output
    assert "train.learning_rate=0.001" in shown.output and "train.seed=1" in shown.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("features.n_mels: [40, 64]\n")
    refused = CliRunner().invoke(app, ["sweep", str(root), "--grid", str(bad)])
    assert refused.exit_code == 2 and "only train.* settings" in refused.output
