"""The registered model takes raw audio: same answers as the evaluation on stored features, bytes
or paths, windows for long recordings, bad files as error rows, loading without importing the zoo."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from conftest import (
    SR,
    extracted_store,
    make_ravdess_like,
    mlflow_uris_restored,
    require_backend,
    sine,
    wait_for_ping,
    write_wav,
)
from ser_tasks.config import PipelineConfig
from ser_tasks.errors import InputError
from ser_tasks.learn import tracking
from ser_tasks.learn.data import ZarrSequence
from ser_tasks.learn.models import MODEL_INPUTS
from ser_tasks.learn.training import fit, predict
from ser_tasks.serve.predict import Preprocessing, log_emotion_model, predict_frame, preprocessing_of, window_bounds
from ser_tasks.store.zarr_store import read_strings

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_encoder_dir):
    """An ensemble of two default models (``layer_weighted`` on encoder states) trained briefly on tones
    (1.2 s of tone fits the 1.5 s clip), logged and registered; the store also holds F0, for every input.

    An ensemble, as the recipe trains, so that every test here also loads the members nested in one model.
    The encoder is conftest's tiny random Whisper: these tests are about prediction and serving, and
    the registered model bundles its encoder, which for Whisper base is 145 MB copied at every load.
    (The scale-out test registers and serves a model with Whisper base itself.)
    """
    tmp = tmp_path_factory.mktemp("predict")
    root = make_ravdess_like(tmp / "corpus", actors=tuple(range(1, 9)), emotions=("01", "05", "04"), takes=4)
    cfg = PipelineConfig().with_overrides({"audio.duration": 1.5, "augment.variants": 1, "extract.batch_rows": 16,
                                           "features.f0": True, "features.encoder": str(tiny_encoder_dir),
                                           "train.epochs": 8, "train.batch_size": 16, "train.ensemble": 2})
    store = extracted_store(root, cfg, str(tmp / "f.zarr"))
    result = fit(store.view(), cfg.train, tmp / "out", verbose=0)
    g = store.open()
    prep = Preprocessing(cfg.audio, cfg.features, MODEL_INPUTS[cfg.train.model], tuple(g.attrs["vocabulary"]),
                         cfg.train.model)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    with mlflow_uris_restored():  # a module fixture: the per-test restoring would keep these URIs
        tracking.setup(uri, "predict")
        with mlflow.start_run():
            info = log_emotion_model(result.model_path, result.normalizer_path, prep, "tones")
    return {"store": store, "cfg": cfg, "fit": result, "uri": uri, "model_uri": info.model_uri, "tmp": tmp,
            "root": root, "version": int(info.registered_model_version)}


@pytest.fixture
def model(trained, tmp_path):
    """The registered model, loaded by a trusted caller that allows paths under the corpus and the test's folder."""
    tracking.use(trained["uri"])
    return mlflow.pyfunc.load_model(trained["model_uri"],
                                    model_config={"allowed_paths": [str(trained["tmp"]), str(tmp_path)]})


def test_raw_test_files_get_the_classes_and_probabilities_of_the_stored_feature_evaluation(trained, model):
    view = trained["store"].view()
    rows = view.rows("test", originals_only=True)
    keras_model = model.unwrap_python_model().keras_model
    stored = predict(keras_model, ZarrSequence(view, rows, MODEL_INPUTS[trained["cfg"].train.model], 64))
    g = view.group
    paths = list(read_strings(g["path"], slice(None))[rows])
    out = model.predict(pd.DataFrame({"path": paths}))
    assert (out["error"] == "").all() and (out["windows"] == 1).all()
    raw = out[[f"p_{c}" for c in g.attrs["vocabulary"]]].to_numpy()
    assert np.abs(raw - stored).max() < 1e-4
    assert list(out["emotion"]) == [g.attrs["vocabulary"][i] for i in stored.argmax(axis=1)]
    assert np.allclose(raw.sum(axis=1), 1.0, atol=1e-5)


def test_the_plain_python_classifier_answers_as_the_registered_model_it_was_loaded_from(trained, model, tmp_path):
    """``EmotionClassifier``: a file, or decoded waveforms at any rate, give the registered model's
    probabilities; a waveform with no speech gets its own error and loses nothing else."""
    from ser_tasks.serve.classifier import EmotionClassifier

    tracking.use(trained["uri"])
    classifier = EmotionClassifier.load(trained["model_uri"])
    assert classifier.labels == tuple(trained["store"].open().attrs["vocabulary"])
    paths = [str(p) for p in read_strings(trained["store"].open()["path"], slice(0, 3))]
    table = model.predict(pd.DataFrame({"path": paths}))
    expected = table[[f"p_{c}" for c in classifier.labels]].to_numpy()

    one = classifier.classify_file(paths[0])
    assert one.error == "" and one.windows == 1 and one.emotion == table["emotion"][0]
    assert np.abs(np.array(list(one.probabilities.values())) - expected[0]).max() < 1e-5

    import soundfile as sf

    from ser_tasks.signal.audio import resample

    waves = [sf.read(p, dtype="float32")[0] for p in paths]
    rate = sf.info(paths[0]).samplerate
    at_44k = [resample(w, rate, 44100).astype(np.float32) for w in waves[:2]]
    batch = classifier.classify_batch([waves[0], np.zeros(rate, np.float32), waves[1], waves[2]], sample_rate=rate)
    assert [p.emotion for p in batch] == [table["emotion"][0], "", table["emotion"][1], table["emotion"][2]]
    assert "waveform 1: silent" in batch[1].error and batch[1].probabilities == {} and batch[1].windows == 0
    got = np.array([list(p.probabilities.values()) for p in (batch[0], batch[2], batch[3])])
    assert np.abs(got - expected).max() < 1e-5
    resampled = classifier.classify_batch(at_44k, sample_rate=44100)
    assert [p.emotion for p in resampled] == list(table["emotion"][:2])
    with pytest.raises(InputError, match="2 speakers for 1 waveforms"):
        classifier.classify_batch([waves[0]], speakers=["a", "b"])
    assert "not a 1-D waveform" in classifier.classify_batch([np.zeros((2, 100), np.float32)])[0].error


def test_bytes_and_paths_agree_and_a_bad_file_fails_alone(trained, model, tmp_path):
    g = trained["store"].open()
    good = str(read_strings(g["path"], slice(0, 1))[0])
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF....WAVEfmt nothing here")
    silent = write_wav(tmp_path / "silent.wav", np.zeros(SR, np.float32))
    short = write_wav(tmp_path / "short.wav", sine(300, 0.01))
    frame = pd.DataFrame({"path": [good, str(garbage), str(silent), str(short), str(tmp_path / "missing.wav"), good],
                          "audio": [None, None, None, None, None, Path(good).read_bytes()]})
    out = model.predict(frame)
    assert len(out) == 6
    assert out["error"][0] == "" and out["error"][5] == "" and out["emotion"][0] == out["emotion"][5]
    assert np.allclose(out.filter(like="p_").iloc[0], out.filter(like="p_").iloc[5], atol=1e-6)
    errors = list(out["error"][1:5])
    assert "garbage.wav: cannot decode audio" in errors[0] and " at 0x" not in errors[0]
    assert "silent.wav: silent" in errors[1] and "dBFS" in errors[1]
    assert "short.wav" in errors[2] and "minimum" in errors[2]
    assert errors[3] == "row 4: path not allowed or not readable"  # whether it exists is not told
    assert (out["emotion"][1:5] == "").all() and out.filter(like="p_").iloc[1:5].isna().all().all()


def test_bytes_alone_are_named_by_row_and_base64_text_decodes(trained, model):
    g = trained["store"].open()
    data = Path(str(read_strings(g["path"], slice(0, 1))[0])).read_bytes()
    out = model.predict(pd.DataFrame({"audio": [data, b"not audio", base64.b64encode(data).decode()]}))
    assert out["error"][0] == "" and out["error"][2] == "" and out["emotion"][0] == out["emotion"][2]
    assert out["error"][1].startswith("row 1: cannot decode audio")


def test_long_recordings_are_scored_in_windows(trained, model, tmp_path):
    # 0.5 s silence, then 6 s of the "angry" tone: speech from 0.5 s, windows of 1.5 s every 0.75 s
    y = np.concatenate([np.zeros(SR // 2, np.float32), sine(700, 6.0, amp=0.6)])
    path = write_wav(tmp_path / "long.wav", y)
    mean = model.predict(pd.DataFrame({"path": [str(path)]}))
    each = model.predict(pd.DataFrame({"path": [str(path)]}), params={"per_window": True})
    assert mean["windows"][0] == len(each) == 7
    assert each["start"].tolist() == pytest.approx([0.5 + 0.75 * k for k in range(7)], abs=0.02)
    assert (each["end"] - each["start"]).tolist() == pytest.approx([1.5] * 7)
    assert each["end"].iloc[-1] == pytest.approx(6.5, abs=0.02) and (each["input"] == 0).all()
    probs = [c for c in mean.columns if c.startswith("p_")]
    assert np.allclose(mean[probs].to_numpy()[0], each[probs].to_numpy().mean(axis=0), atol=1e-6)
    # longer windows, and scoring as training saw clips (one crop around the centre)
    assert model.predict(pd.DataFrame({"path": [str(path)]}), params={"window_seconds": 3.0})["windows"][0] == 3
    assert model.predict(pd.DataFrame({"path": [str(path)]}), params={"windows": False})["windows"][0] == 1


@pytest.mark.parametrize("input_name", ["log_mel", "mfcc", "zcr_rms", "frames", "log_mel_prosody", "encoder_stats"])
def test_a_raw_clip_becomes_the_model_input_its_stored_row_gives(trained, input_name):
    """Every model input, the frame vectors of notebook_deep_cnn1d and utterance_mlp included, is
    built from raw audio as training read it from the store."""
    from ser_tasks.learn.data import assemble
    from ser_tasks.signal import audio
    from ser_tasks.signal.features import feature_names

    view, cfg = trained["store"].view(), trained["cfg"]
    row = int(view.rows("test", originals_only=True)[0])
    stored = assemble(input_name, {k: view.features(k)[row:row + 1] for k in feature_names(cfg.features)})
    path = str(view.column("path")[row])
    y = audio.speech(audio.load_audio(path, cfg.audio.sample_rate), cfg.audio, path)  # padded inside, as stored
    prep = Preprocessing(cfg.audio, cfg.features, input_name, tuple(view.vocabulary), "m")
    got = prep.model_input(y)
    assert got.shape == stored.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, stored, rtol=1e-5, atol=1e-5)


def test_window_bounds_cover_the_speech_with_whole_windows():
    assert window_bounds(100, 300, 150) == [(0, 100)]
    assert window_bounds(300, 300, 150) == [(0, 300)]
    assert window_bounds(320, 300, 150) == [(0, 300)]  # a 20-sample tail, under a quarter hop
    assert window_bounds(340, 300, 150) == [(0, 300), (40, 340)]
    assert window_bounds(600, 300, 150) == [(0, 300), (150, 450), (300, 600)]
    with pytest.raises(ValueError):
        window_bounds(600, 300, 0)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_registered_model_predicts_the_same_under_another_keras_backend(trained, model, backend):
    """The model registered from a TensorFlow run, loaded by MLflow under KERAS_BACKEND=jax or torch."""
    import os

    require_backend(backend)
    view = trained["store"].view()
    paths = [str(p) for p in view.column("path")[view.rows("test", originals_only=True)][:6]]
    expected = model.predict(pd.DataFrame({"path": paths}))
    code = ("import json, sys, keras, mlflow, pandas as pd; mlflow.set_tracking_uri(sys.argv[1]);"
            "m = mlflow.pyfunc.load_model(sys.argv[2]); out = m.predict(pd.DataFrame({'path': sys.argv[3:]}));"
            "print(json.dumps({'backend': keras.backend.backend(), 'out': out.to_dict('list')}))")
    proc = subprocess.run([sys.executable, "-c", code, trained["uri"], trained["model_uri"], *paths],
                          env={**os.environ, "KERAS_BACKEND": backend, "SER_ALLOWED_PATHS": str(trained["tmp"])},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["backend"] == backend
    got = pd.DataFrame(res["out"])
    assert list(got["emotion"]) == list(expected["emotion"]) and (got["error"] == "").all()
    probs = [c for c in expected.columns if c.startswith("p_")]
    np.testing.assert_allclose(got[probs].to_numpy(), expected[probs].to_numpy(), atol=1e-4)


def _stored_files(view, rows, tmp):
    """The files of store ``rows`` as a ``path``/``speaker`` frame, the ``p_<label>`` columns, and
    :func:`predict_frame` allowed to open them (``score(model, prep, frame)``)."""
    import functools

    from ser_tasks.serve.predict import allowed_roots

    frame = pd.DataFrame({"path": list(read_strings(view.group["path"])[rows]),
                          "speaker": list(read_strings(view.group["speaker"])[rows])})
    return (frame, [f"p_{c}" for c in view.vocabulary],
            functools.partial(predict_frame, allowed_paths=allowed_roots([str(tmp)])))


def test_a_speaker_normalised_model_sees_each_voice_from_raw_files_as_scoring_saw_it(trained):
    import keras

    from ser_tasks.learn.data import SpeakerNorm

    view, cfg, tmp = trained["store"].view(), trained["cfg"], trained["tmp"]
    fitted = fit(view, cfg.train.model_copy(update={"epochs": 2, "ensemble": 1, "speaker_norm": True}),
                 tmp / "per_speaker", verbose=0)
    keras_model = keras.models.load_model(fitted.model_path, compile=False)
    name = MODEL_INPUTS[cfg.train.model]
    prep = Preprocessing(cfg.audio, cfg.features, name, tuple(view.vocabulary), cfg.train.model, speaker_norm=True)
    assert Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict()))).speaker_norm
    rows = view.rows("test", originals_only=True)  # every original of the test speakers
    stored = predict(keras_model, ZarrSequence(view, rows, name, 64, speaker_norm=SpeakerNorm(view, name)))
    frame, vocab, score = _stored_files(view, rows, tmp)
    raw = score(keras_model, prep, frame)[vocab].to_numpy()
    assert np.abs(raw - stored).max() < 1e-4
    # without speakers each clip is normalised by itself: other inputs, other probabilities
    alone = score(keras_model, prep, frame.drop(columns="speaker"))[vocab].to_numpy()
    assert np.abs(alone - stored).max() > 1e-3
    # a model trained without it ignores the column
    plain = Preprocessing(cfg.audio, cfg.features, name, tuple(view.vocabulary), cfg.train.model)
    np.testing.assert_allclose(score(keras_model, plain, frame)[vocab].to_numpy(),
                               score(keras_model, plain, frame.drop(columns="speaker"))[vocab].to_numpy())


def test_a_corpus_normalised_model_normalises_the_files_of_one_call_together_as_scoring_did(trained):
    import keras

    from ser_tasks.learn.data import SpeakerNorm
    from ser_tasks.learn.training import trained_groups

    view, cfg, tmp = trained["store"].view(), trained["cfg"], trained["tmp"]
    fitted = fit(view, cfg.train.model_copy(update={"epochs": 2, "ensemble": 1, "corpus_norm": True}),
                 tmp / "per_corpus", verbose=0)
    assert trained_groups(fitted.model_path) == "corpus"
    keras_model = keras.models.load_model(fitted.model_path, compile=False)
    name = MODEL_INPUTS[cfg.train.model]
    prep = Preprocessing(cfg.audio, cfg.features, name, tuple(view.vocabulary), cfg.train.model, corpus_norm=True)
    assert Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict()))).corpus_norm
    rows = np.flatnonzero(view.done() & (view.column("variant") == 0))  # the corpus: every original
    stored = predict(keras_model, ZarrSequence(view, rows, name, 64, speaker_norm=SpeakerNorm(view, name, "corpus")))
    frame, vocab, score = _stored_files(view, rows, tmp)
    together = score(keras_model, prep, frame)[vocab].to_numpy()
    assert np.abs(together - stored).max() < 1e-4
    # a smaller call is another population, with other statistics; speakers play no part
    part = score(keras_model, prep, frame.iloc[:12])[vocab].to_numpy()
    assert np.abs(part - together[:12]).max() > 1e-3
    np.testing.assert_allclose(score(keras_model, prep, frame.iloc[:12].drop(columns="speaker"))[vocab].to_numpy(),
                               part)
    # one file is no population: normalised by itself it would be all zeros, a constant answer
    with pytest.raises(InputError, match="at least 2 readable files"):
        score(keras_model, prep, frame.iloc[:1])
    # the plain classifier: the same population, the same answers; one file alone refused
    from ser_tasks.serve.classifier import EmotionClassifier
    from ser_tasks.signal.audio import load_audio

    classifier = EmotionClassifier(keras_model, prep)
    waves = [load_audio(p, cfg.audio.sample_rate) for p in frame["path"][:12]]
    batch = classifier.classify_batch(waves)
    assert np.abs(np.array([list(p.probabilities.values()) for p in batch]) - part).max() < 1e-5
    with pytest.raises(InputError, match="at least 2 readable files"):
        classifier.classify_file(frame["path"][0])


def test_files_of_one_speaker_share_a_call_and_come_back_in_order(tmp_path):
    from ser_tasks.serve.predict import predict_files, speaker_batches, speakers_of

    assert speaker_batches(["a", "b", "a", ""], 2) == [[0, 2], [1, 3]]
    assert speaker_batches(["a"] * 3 + ["b"], 2) == [[0, 1, 2], [3]]  # a speaker is never split
    assert speakers_of(["s3://b/x/1.wav", "/d/y/2.wav", "3.wav"], "folder") == ["s3://b/x", "/d/y", "."]
    assert speakers_of(["1.wav", "2.wav"], "all") == ["all", "all"] and speakers_of(["1.wav"], "file") == [""]
    named = ["/x/03-01-05-01-02-01-12.wav", "s3://b/1001_DFA_ANG_XX.flac", "/z/03a01Fa.wav", "/s/DC/a01.wav",
             "/s/JE_sa03.wav", "/t/OAF_back_angry.wav", "/u/hello.wav"]  # the manifest's naming schemes, one unknown
    assert speakers_of(named, "name") == ["ravdess:12", "crema_d:1001", "emodb:03", "savee:DC", "savee:JE", "tess:OAF",
                                          ""]
    with pytest.raises(ValueError, match="unknown speaker grouping 'voice'"):
        speakers_of(["1.wav"], "voice")
    calls = []

    class Echo:
        def predict(self, frame, params=None):
            calls.append(list(frame["speaker"]))
            return pd.DataFrame({"emotion": frame["speaker"], "windows": 1, "error": ""})

    paths = [str(tmp_path / f"{i}.wav") for i in range(5)]
    out = predict_files(Echo(), paths, batch=2, speakers=["a", "b", "a", "", "b"])
    assert calls == [["a", "a"], ["b", "b"], [""]]
    assert list(out["path"]) == paths and list(out["emotion"]) == ["a", "b", "a", "", "b"]


def test_input_needs_a_path_or_audio_column(trained, model):
    keras_model = model.unwrap_python_model().keras_model
    with pytest.raises(ValueError, match="'path' or an 'audio' column"):
        predict_frame(keras_model, preprocessing_of(model), pd.DataFrame({"file": ["x.wav"]}))


def test_signature_declares_optional_path_and_binary_audio_and_the_parameters(trained):
    tracking.use(trained["uri"])
    info = mlflow.models.get_model_info(trained["model_uri"])
    inputs = {c["name"]: c for c in info.signature.inputs.to_dict()}
    assert inputs["path"]["type"] == "string" and inputs["audio"]["type"] == "binary"
    assert inputs["speaker"]["type"] == "string"
    assert not inputs["path"]["required"] and not inputs["audio"]["required"] and not inputs["speaker"]["required"]
    outputs = [c["name"] for c in info.signature.outputs.to_dict()]
    assert outputs == ["emotion", "p_neutral", "p_sad", "p_angry", "windows", "error"]
    assert {p.name for p in info.signature.params} == {"windows", "per_window", "window_seconds", "hop_seconds"}


def test_a_fresh_process_loads_the_registered_model_with_nothing_imported_first(trained):
    g = trained["store"].open()
    path = str(read_strings(g["path"], slice(0, 1))[0])
    code = ("import json, sys, mlflow, pandas as pd\n"
            f"mlflow.set_tracking_uri({trained['uri']!r})\n"
            f"m = mlflow.pyfunc.load_model('models:/tones/{trained['version']}')\n"
            f"out = m.predict(pd.DataFrame({{'path': [{path!r}]}}))\n"
            "print(json.dumps({'emotion': out['emotion'][0], 'error': out['error'][0],"
            " 'zoo_imported_by_loading': 'ser_tasks.learn.models' in sys.modules}))\n")
    import os

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=trained["tmp"], env={**os.environ, "SER_ALLOWED_PATHS": str(trained["tmp"])})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["error"] == "" and result["emotion"] in ("neutral", "sad", "angry")
    assert result["zoo_imported_by_loading"]  # the model imported the zoo itself


def test_ser_predict_scores_folders_recursively_into_a_csv_with_counts(trained, tmp_path):
    from typer.testing import CliRunner

    from ser_cli.app import app

    src = sorted(Path(trained["root"], "Actor_01").glob("*.wav"))[:3]
    (tmp_path / "in" / "deeper").mkdir(parents=True)
    for i, p in enumerate(src):
        (tmp_path / "in" / ("deeper" if i else "") / p.name).write_bytes(p.read_bytes())
    (tmp_path / "in" / "deeper" / "broken.wav").write_bytes(b"not a wav")
    out = tmp_path / "preds.csv"
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "in"), "--model", f"models:/tones/{trained['version']}",
                                      "--mlflow-uri", trained["uri"], "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    preds = pd.read_csv(out, keep_default_na=False)
    assert list(preds.columns) == ["path", "model_uri", "emotion", "p_neutral", "p_sad", "p_angry", "windows", "error"]
    assert set(preds["model_uri"]) == {f"models:/tones/{trained['version']}"}
    assert len(preds) == 4 and sum(preds["error"] != "") == 1
    assert preds.loc[preds["error"] != "", "path"].iloc[0].endswith("broken.wav")
    assert "failed" in result.output and "broken.wav: cannot decode audio" in result.output
    grouped = CliRunner().invoke(app, ["predict", str(tmp_path / "in"), "--model",
                                       f"models:/tones/{trained['version']}", "--mlflow-uri", trained["uri"],
                                       "--speaker-by", "folder"])
    assert grouped.exit_code == 0, grouped.output  # a model trained without speaker_norm ignores the grouping
    assert pd.read_csv(io.StringIO(grouped.stdout.split("model models:")[0]), keep_default_na=False).equals(preds)
    named = CliRunner().invoke(app, ["predict", str(tmp_path / "in"), "--model", f"models:/tones/{trained['version']}",
                                     "--mlflow-uri", trained["uri"], "--speaker-by", "name", "--out", str(out)])
    assert named.exit_code == 0, named.output
    assert "1 of 4 files: no corpus naming scheme gives their speaker" in " ".join(named.output.split())  # broken.wav
    assert pd.read_csv(out, keep_default_na=False).equals(preds)
    unknown = CliRunner().invoke(app, ["predict", str(tmp_path / "in"), "--speaker-by", "voice",
                                       "--mlflow-uri", trained["uri"]])
    assert unknown.exit_code != 0 and "unknown speaker grouping 'voice'" in unknown.output
    windows = CliRunner().invoke(app, ["predict", str(src[0]), "--model", f"models:/tones/{trained['version']}",
                                       "--mlflow-uri", trained["uri"], "--windows"])
    assert windows.exit_code == 0, windows.output
    assert windows.stdout.splitlines()[0] == "path,model_uri,start,end,emotion,p_neutral,p_sad,p_angry,windows,error"


def test_ser_score_reports_shared_classes_lists_the_others_and_logs_a_run(trained, tmp_path):
    from typer.testing import CliRunner

    from ser_cli.app import app
    from ser_tasks.serve import registry

    tracking.use(trained["uri"])
    registry.promote("tones", trained["version"])
    root = tmp_path / "other"
    for p in sorted(Path(trained["root"], "Actor_07").glob("*.wav")):  # a held-out actor of the fixture
        (root / "Actor_07").mkdir(parents=True, exist_ok=True)
        (root / "Actor_07" / p.name).write_bytes(p.read_bytes())
    write_wav(root / "Actor_07" / "03-01-08-01-01-01-07.wav", sine(500, 1.0))  # surprised: not in the model
    summary = tmp_path / "score.json"
    result = CliRunner().invoke(app, ["score", "models:/tones@champion", str(root), "--mlflow-uri", trained["uri"],
                                      "--summary-json", str(summary), "--out-dir", str(tmp_path / "score")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    s = json.loads(summary.read_text())
    assert s["ignored"] == {"surprised": 1} and s["n"] == 12 and s["failed"] == 0
    assert s["classes"] == ["neutral", "sad", "angry"] and 0 <= s["ua"] <= 1 and 0 <= s["macro_f1"] <= 1
    run = mlflow.get_run(s["mlflow_run_id"])
    assert run.data.tags["model_version"] == str(trained["version"]) and run.data.tags["model_name"] == "tones"
    assert run.data.metrics["score_ua"] == pytest.approx(s["ua"])
    files = {a.path for a in mlflow.MlflowClient().list_artifacts(s["mlflow_run_id"], "evaluation")}
    assert {"evaluation/confusion_matrix.png", "evaluation/predictions.csv"} <= files


def test_ser_score_takes_a_manifest_csv_and_emotions_and_keeps_each_corpus_in_its_own_folder(
        trained, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ser_cli.app import app
    from ser_tasks.serve import registry

    tracking.use(trained["uri"])
    registry.promote("tones", trained["version"])
    monkeypatch.chdir(tmp_path)  # the default --out-dir is relative
    clips = sorted(Path(trained["root"], "Actor_08").glob("*.wav"))
    emotion = {"01": "neutral", "05": "angry", "04": "sad"}
    manifest = pd.DataFrame({"path": [f"clips/{p.name}" for p in clips],  # relative to the CSV's folder
                             "emotion": [emotion[p.name.split("-")[2]] for p in clips],
                             "speaker": ["voice-a" if i % 2 else "voice-b" for i in range(len(clips))],
                             "corpus": "mine"})
    (tmp_path / "set" / "clips").mkdir(parents=True)
    for p in clips:
        (tmp_path / "set" / "clips" / p.name).write_bytes(p.read_bytes())
    manifest.to_csv(tmp_path / "set" / "manifest.csv", index=False)
    runner = CliRunner()
    summary = tmp_path / "s.json"
    csv = str(tmp_path / "set" / "manifest.csv")
    result = runner.invoke(app, ["score", "models:/tones@champion", "--manifest", csv,
                                 "--emotions", "neutral,angry", "--mlflow-uri", trained["uri"],
                                 "--summary-json", str(summary)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    s = json.loads(summary.read_text())
    assert s["n"] == int(manifest["emotion"].isin(["neutral", "angry"]).sum()) and s["failed"] == 0
    assert s["classes"] == ["neutral", "angry"] and s["corpus"] == "mine"
    assert Path(s["out_dir"]) == Path("ser-out/score") / f"mine-tones-v{trained['version']}"
    assert (tmp_path / s["out_dir"] / "predictions.csv").is_file()
    # a second corpus lands beside it, not over it
    root = tmp_path / "ravdess"
    for p in clips:
        (root / "Actor_08").mkdir(parents=True, exist_ok=True)
        (root / "Actor_08" / p.name).write_bytes(p.read_bytes())
    result = runner.invoke(app, ["score", "models:/tones@champion", str(root), "--mlflow-uri", trained["uri"],
                                 "--summary-json", str(summary)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert json.loads(summary.read_text())["out_dir"] == f"ser-out/score/ravdess-tones-v{trained['version']}"
    assert (tmp_path / "ser-out" / "score" / f"mine-tones-v{trained['version']}" / "predictions.csv").is_file()
    bad = tmp_path / "bad.csv"
    bad.write_text("path,emotion\nx.wav,joyful\n")
    result = runner.invoke(app, ["score", "models:/tones@champion", "--manifest", str(bad), "--mlflow-uri",
                                 trained["uri"]])
    assert result.exit_code != 0 and "row 2 has emotion 'joyful'" in result.output


def test_the_served_model_answers_base64_clips_as_ser_predict_does(trained, tmp_path):
    import os
    import signal
    import socket

    import httpx
    from typer.testing import CliRunner

    from ser_cli.app import app
    from ser_tasks.serve import registry

    tracking.use(trained["uri"])
    registry.promote("tones", trained["version"])
    real = Path(os.environ.get("SER_TEST_DATA", "/nonexistent"), "ravdess", "Actor_01")
    clips = (sorted(real.glob("*.flac"))[:2] if real.is_dir()
             else sorted(Path(trained["root"], "Actor_02").glob("*.wav"))[:2])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/tones@champion", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "MLFLOW_TRACKING_URI": trained["uri"],
             "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},  # uvicorn is started by name
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for_ping(server, port, "model server")
        body = {"dataframe_split": {"columns": ["audio"],
                                    "data": [[base64.b64encode(p.read_bytes()).decode()] for p in clips]}}
        answer = httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=120)
        assert answer.status_code == 200, answer.text
        served = answer.json()["predictions"]
        # a client naming server-side files gets one answer, whether they exist or not
        probe = {"dataframe_split": {"columns": ["path"], "data": [["/etc/passwd"], ["/no/such.wav"], [str(clips[0])]]}}
        refused = httpx.post(f"http://127.0.0.1:{port}/invocations", json=probe, timeout=120)
        refused = json.loads(refused.text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))["predictions"]
        assert [r["error"] for r in refused] == [f"row {i}: path not allowed or not readable" for i in range(3)]
        assert [r["p_angry"] for r in refused] == [None] * 3  # strict JSON: null, not NaN
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(app, ["predict", *map(str, clips), "--mlflow-uri", trained["uri"], "--out", str(out),
                                      "--model", "models:/tones@champion"])
    assert result.exit_code == 0, result.output
    local = pd.read_csv(out, keep_default_na=False)
    assert [r["error"] for r in served] == ["", ""]
    assert [r["emotion"] for r in served] == list(local["emotion"])
    assert [r["p_angry"] for r in served] == pytest.approx(list(local["p_angry"]), abs=1e-5)


def test_inputs_expand_remote_prefixes_and_folders_and_keep_files_as_given(tmp_path):
    import fsspec

    from ser_tasks.serve.predict import expand_inputs, read_bytes

    fs = fsspec.filesystem("memory")
    for name in ("bucket/a/x.wav", "bucket/a/b/y.flac", "bucket/a/notes.txt"):
        with fs.open(name, "wb") as fh:
            fh.write(b"RIFF")
    local = write_wav(tmp_path / "d" / "z.wav", sine(200, 0.3))
    try:
        found = expand_inputs(["memory://bucket/a", str(tmp_path / "d"), str(tmp_path / "missing.wav"), str(local)])
        assert found == ["memory:///bucket/a/b/y.flac", "memory:///bucket/a/x.wav", str(local),
                         str(tmp_path / "missing.wav")]
        assert read_bytes("memory://bucket/a/x.wav") == b"RIFF" and read_bytes(str(tmp_path / "missing.wav")) is None
    finally:
        fs.rm("bucket", recursive=True)


def test_a_model_loaded_plainly_opens_no_path_a_request_names(trained, tmp_path, monkeypatch):
    """Requests are untrusted: by default no path is opened, whatever it names; one answer for all."""
    from ser_tasks.signal import audio

    tracking.use(trained["uri"])
    monkeypatch.delenv("SER_ALLOWED_PATHS", raising=False)
    plain = mlflow.pyfunc.load_model(trained["model_uri"])
    opened = []
    real = audio.load_audio
    monkeypatch.setattr(audio, "load_audio", lambda p, *a, **k: opened.append(p) or real(p, *a, **k))
    good = str(read_strings(trained["store"].open()["path"], slice(0, 1))[0])
    hostile = [good, "/etc/passwd", "/etc/shadow", "/no/such/file.wav", "/etc", "../../../../etc/passwd",
               "file:///etc/passwd", "http://127.0.0.1:1/x.wav", "memory://x.wav"]
    out = plain.predict(pd.DataFrame({"path": hostile}))
    assert opened == []
    assert list(out["error"]) == [f"row {i}: path not allowed or not readable" for i in range(len(hostile))]
    assert (out["emotion"] == "").all()
    # bytes are always welcome
    data = Path(good).read_bytes()
    assert plain.predict(pd.DataFrame({"audio": [data]}))["error"][0] == ""


def test_allowed_roots_admit_their_files_only(trained, tmp_path, monkeypatch):
    from ser_tasks.errors import InputError
    from ser_tasks.serve.predict import allowed_roots, path_allowed

    inside = tmp_path / "allowed"
    inside.mkdir()
    clip = write_wav(inside / "a.wav", sine(200.0, 1.0))
    (tmp_path / "secret.wav").write_bytes(clip.read_bytes())
    (inside / "link.wav").symlink_to(tmp_path / "secret.wav")
    roots = allowed_roots([str(inside), "s3://bucket/in/"])
    assert path_allowed(str(clip), roots) and path_allowed(f"file://{clip}", roots)
    assert not path_allowed(str(inside / ".." / "secret.wav"), roots)
    assert not path_allowed(str(inside / "link.wav"), roots)  # a symlink out of the root
    assert not path_allowed(str(inside) + "-sibling/a.wav", roots)
    assert path_allowed("s3://bucket/in/x.wav", roots) and not path_allowed("s3://bucket/in/../out/x.wav", roots)
    assert not path_allowed("s3://bucket/other/x.wav", roots) and not path_allowed("/etc/passwd", roots)
    with pytest.raises(InputError, match="not absolute"):
        allowed_roots(["relative/dir"])

    tracking.use(trained["uri"])
    monkeypatch.setenv("SER_ALLOWED_PATHS", str(inside))  # what an operator of `mlflow models serve` sets
    served = mlflow.pyfunc.load_model(trained["model_uri"])
    out = served.predict(pd.DataFrame({"path": [str(clip), str(tmp_path / "secret.wav"), str(inside / "gone.wav")]}))
    assert out["error"][0] == "" and out["emotion"][0] != ""
    assert list(out["error"][1:]) == [f"row {i}: path not allowed or not readable" for i in (1, 2)]
