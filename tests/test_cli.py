import os

from typer.testing import CliRunner

from conftest import make_ravdess_like
from ser_cli.app import app

runner = CliRunner()


def test_manifest_writes_csv_and_reports_counts_and_skips(tmp_path):
    root = make_ravdess_like(tmp_path / "c", actors=(1, 2, 3), takes=2)
    (root / "Actor_01" / "03-01-42-01-01-01-01.wav").write_bytes(b"")
    out = tmp_path / "m.csv"
    result = runner.invoke(app, ["manifest", str(root), "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert "read as ravdess: 12 clips, 3 speakers, 1 skipped" in text
    assert "emotion code '42'" in text and "ravdess:02" in text
    lines = out.read_text().splitlines()
    assert lines[0] == "clip_id,path,corpus,speaker,sex,emotion,intensity,sentence,split" and len(lines) == 13


def test_manifest_of_missing_root_fails_clearly(tmp_path):
    result = runner.invoke(app, ["manifest", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "not a folder" in result.output


def test_bad_config_is_a_usage_error(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochz: 3\n")
    result = runner.invoke(app, ["manifest", str(tmp_path), "--config", str(cfg)])
    assert result.exit_code == 2 and "c.yaml" in result.output


def test_storage_options_must_be_a_json_object(tmp_path):
    result = runner.invoke(app, ["manifest", str(tmp_path), "--storage-options", "[1, 2]"])
    assert result.exit_code == 2 and "JSON object" in result.output


def test_train_on_a_missing_store_fails_clearly(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "none.zarr")])
    assert result.exit_code == 2 and "ser extract" in result.output


def test_deploy_needs_a_prefect_server(tmp_path, monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with temporary_settings(updates={PREFECT_API_URL: None}):
        result = runner.invoke(app, ["deploy", str(tmp_path)], env={"PREFECT_API_URL": ""})
    assert result.exit_code == 2 and "PREFECT_API_URL" in result.output


def test_deploy_refuses_credentials_in_parameters():
    import pytest

    from flows.deploy import pipeline_deployment
    from ser_tasks.remote import parse_options

    with pytest.raises(ValueError, match=r"\['secret'\] are credentials"):
        pipeline_deployment("n", "s3://b/c", "s3://b/f.zarr", storage_options=parse_options('{"secret": "x"}'))
    dep = pipeline_deployment("nightly", "s3://b/c", "s3://b/f.zarr", cron="15 3 * * 1", timezone="Europe/Berlin",
                              storage_options=parse_options(None, "http://127.0.0.1:9000"))
    assert dep.entrypoint == "flows.pipeline.ser_pipeline"  # runs wherever the package is installed
    assert [(s.schedule.cron, s.schedule.timezone) for s in dep.schedules] == [("15 3 * * 1", "Europe/Berlin")]
    assert dep.parameters["storage_options"] == {"endpoint_url": "http://127.0.0.1:9000"}


def test_compare_lists_evaluated_runs_best_first_and_plots(tmp_path, mlflow_uri):
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(mlflow_uri)
    mlflow.set_experiment("cmp")
    for model, ua, variants in (("notebook_cnn1d", 0.31, "0"), ("compact_cnn", 0.52, "2")):
        with mlflow.start_run():
            mlflow.log_params({"train.model": model, "augment.variants": variants, "augment.noise_prob": 0.5,
                               "augment.pitch_prob": 0.0, "features.n_mels": 64})
            mlflow.log_metrics({"test_ua": ua, "test_wa": ua + 0.01, "test_macro_f1": ua - 0.02})
    with mlflow.start_run(run_name="cv-actor", tags={"evaluation": "actor-disjoint cross-validation"}):
        mlflow.log_params({"train.model": "tdnn", "augment.variants": "4", "augment.noise_prob": 0.5,
                           "features.n_mels": 64, "train.spec_freq_masks": 2, "train.spec_time_masks": 0})
        mlflow.log_metrics({"test_ua": 0.45, "test_ua_std": 0.05, "test_wa": 0.46, "test_macro_f1": 0.44})
        with mlflow.start_run(run_name="cv-actor-fold1", nested=True):
            mlflow.log_metrics({"fold_ua": 0.5})  # folds are not listed, their parent is
    with mlflow.start_run(run_name="extract-only"):
        mlflow.log_metric("rows", 10)
    for schedule, ua in (("cosine", 0.634), ("plateau", 0.459)):  # two runs that differ in one setting only
        with mlflow.start_run():
            mlflow.log_params({"train.model": "tdnn", "augment.variants": "4", "augment.noise_prob": 0.5,
                               "features.n_mels": 64, "train.schedule": schedule, "train_rows": 1000 + len(schedule)})
            mlflow.log_metrics({"test_ua": ua, "test_wa": ua, "test_macro_f1": ua})
    plot, csv = tmp_path / "cmp.png", tmp_path / "cmp.csv"
    result = runner.invoke(app, ["compare", "cmp", "--mlflow-uri", mlflow_uri, "--plot", str(plot), "--csv", str(csv)],
                           env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "train.schedule=cosine" in out and "train.schedule=plateau" in out  # what tells them apart, whole
    assert "train_rows" not in out  # bookkeeping is not a difference
    assert out.index("train.model=compact_cnn") < out.index("train.model=notebook_cnn1d")  # best UA first
    assert "0.634" in out and "0.520" in out and "0.450" in out and "0.050" in out
    assert "evaluation=actor-disjoint" in out
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
    table = pd.read_csv(csv)
    assert len(table) == 5  # the extraction-only run and the fold are left out
    assert {"log-mel 64", "ZCR+RMS"} <= set(table["features"]) and "2x noise" in set(table["augmentation"])
    assert "4x noise+SpecAugment" in set(table["augmentation"])
    missing = runner.invoke(app, ["compare", "nope", "--mlflow-uri", mlflow_uri])
    assert missing.exit_code == 2 and "no MLflow experiment 'nope'" in missing.output


def test_a_deployment_stores_the_configuration_as_json_and_its_runs_get_it_back():
    from flows.deploy import pipeline_deployment
    from flows.pipeline import ser_pipeline
    from ser_tasks.config import PipelineConfig

    cfg = PipelineConfig().with_overrides({"train.epochs": 3})
    dep = pipeline_deployment("nightly", "s3://b/c", "s3://b/f.zarr", config=cfg)
    assert dep.parameters["config"]["train"]["epochs"] == 3  # JSON on the server
    assert ser_pipeline.validate_parameters(dep.parameters)["config"] == cfg  # a PipelineConfig in the run


def test_manifest_of_several_roots_named_and_filtered(tmp_path):
    import pandas as pd

    from conftest import sine, write_wav

    rav = make_ravdess_like(tmp_path / "r", actors=(1, 2, 3, 4), emotions=("01", "04", "05"), takes=1)
    emo = tmp_path / "e"
    for spk in ("03", "08"):
        for i, letter in enumerate("WLN"):  # angry, boredom, neutral
            write_wav(emo / f"{spk}a0{i}{letter}a.wav", sine(300))
    out = tmp_path / "m.csv"
    result = runner.invoke(app, ["manifest", str(rav), "--corpus", f"emodb={emo}", "--emotions", "neutral,angry",
                                 "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "read as emodb+ravdess: 12 clips, 6 speakers, 6 skipped" in result.output
    clips = pd.read_csv(out)
    assert set(clips["emotion"]) == {"neutral", "angry"} and set(clips["corpus"]) == {"ravdess", "emodb"}
    assert clips.groupby("speaker")["split"].nunique().max() == 1
    bad = runner.invoke(app, ["manifest", str(rav), "--emotions", "joy"])
    assert bad.exit_code == 2 and "unknown emotion" in bad.output
    none = runner.invoke(app, ["manifest"])
    assert none.exit_code == 2 and "give at least one corpus root" in none.output


def test_the_manifest_settings_name_a_group_only_when_set():
    from ser_tasks.config import PipelineConfig

    default = PipelineConfig()
    assert "manifest" not in default.extraction_dict()  # the groups written before keep their names
    kept = default.with_overrides({"manifest.emotions": ["angry", "neutral"]})
    assert kept.extraction_dict()["manifest"] == {"emotions": ["neutral", "angry"]}
    assert kept.extraction_fingerprint() != default.extraction_fingerprint()


def test_the_console_script_keeps_its_output_and_exit_status_when_it_skips_the_teardown(tmp_path):
    """`ser` (ser_cli.app:main) ends with os._exit after the atexit handlers: stdout is flushed first,
    the command's status survives, and a bad root fails before any server or flow (no traceback)."""
    import subprocess
    import sys

    root = make_ravdess_like(tmp_path / "c", actors=(1, 2), takes=2)
    out = tmp_path / "m.csv"
    ok = subprocess.run([sys.executable, "-m", "ser_cli.app", "manifest", str(root), "--out", str(out)],
                        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert ok.returncode == 0, ok.stderr
    assert "read as ravdess: 8 clips, 2 speakers" in ok.stdout + ok.stderr and len(out.read_text().splitlines()) == 9
    bad = subprocess.run([sys.executable, "-m", "ser_cli.app", "extract", str(tmp_path / "nope"),
                          "--store", str(tmp_path / "f.zarr")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not a folder" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    assert not (tmp_path / "f.zarr").exists()
