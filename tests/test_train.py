"""Training learns: on tones whose classes differ in pitch and level, held-out speakers are classified."""

import json

import keras
import numpy as np
import pytest

from conftest import extracted_store, make_ravdess_like, require_backend
from ser_tasks.config import PipelineConfig, TrainConfig, train_config
from ser_tasks.corpus.manifest import build_manifest
from ser_tasks.corpus.split import assign_split
from ser_tasks.learn.training import fit, score_split, training_loss
from ser_tasks.store.extraction import process_region
from ser_tasks.store.plan import plan_rows
from ser_tasks.store.zarr_store import FeatureStore


@pytest.fixture(scope="module")
def tone_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tones")
    root = make_ravdess_like(tmp / "c", actors=tuple(range(1, 9)), emotions=("01", "05", "04"), takes=4)
    # the from-scratch recipe's model (benchmarks/accuracy.yaml): these tests are about its training options
    cfg = PipelineConfig.model_validate({"features": {"encoder": None, "f0": True},
                                         "train": {"model": "tdnn_prosody"}}).with_overrides({
        "audio.duration": 1.0, "augment.variants": 1, "extract.batch_rows": 16, "train.epochs": 12,
        "train.batch_size": 16, "train.early_stopping_patience": 12, "train.learning_rate": 3e-3})
    return extracted_store(root, cfg, str(tmp / "f.zarr")), cfg, tmp


@pytest.mark.slow
def test_fit_learns_and_evaluation_scores_held_out_speakers(tone_store):
    store, cfg, tmp = tone_store
    result = fit(store.view(), cfg.train, tmp / "out", verbose=0)
    assert result.model_path.exists() and result.device in ("CPU", "GPU")
    assert result.rows["train"] > 0 and result.rows["test"] == 24  # 2 of 8 actors x 12 clips
    assert "val_ua" in result.history and len(result.history["loss"]) <= cfg.train.epochs
    assert result.history["loss"][-1] < result.history["loss"][0]
    norm = json.loads(result.normalizer_path.read_text())
    assert norm["rows"] == result.rows["train"] and len(norm["mean"]) == cfg.features.n_mels + 2  # + F0, energy
    scores = score_split(store.view(), result.model_path, tmp / "out")
    assert scores["n"] == 24 and scores["vocabulary"] == ["neutral", "sad", "angry"]
    assert scores["ua"] >= 0.9, scores  # chance is 1/3
    assert (tmp / "out" / "confusion_matrix.png").exists()


@pytest.mark.parametrize("setting", [{"mixup_alpha": 0.4}, {"label_smoothing": 0.2},
                                     {"mixup_alpha": 0.4, "label_smoothing": 0.2}], ids=["mixup", "smoothing", "both"])
def test_mixup_and_label_smoothing_train_on_soft_targets(tone_store, setting):
    store, cfg, tmp = tone_store
    soft = cfg.train.model_copy(update={"epochs": 2, "schedule": "cosine", "ensemble": 1, **setting})
    out = tmp / "-".join(setting)
    result = fit(store.view(), soft, out, verbose=0)
    assert len(result.history["loss"]) == 2 and all(0 < v < 10 for v in result.history["loss"])
    assert score_split(store.view(), result.model_path, out)["n"] == 24


def test_smoothed_loss_is_the_cross_entropy_against_smoothed_one_hot_targets():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype="float32")
    labels = np.array([0, 2])
    targets = np.full((2, 3), 0.3 / 3) + 0.7 * np.eye(3)[labels]
    expected = -(targets * np.log(probs)).sum(axis=1).mean()
    assert float(training_loss(3, 0.3, soft_labels=False)(labels, probs)) == pytest.approx(expected, rel=1e-5)
    plain = -np.log(probs[[0, 1], labels]).mean()
    off = keras.losses.get(training_loss(3, 0.0, soft_labels=False))
    assert float(np.mean(off(labels, probs))) == pytest.approx(plain, rel=1e-5)
    assert expected > plain  # smoothing penalises the confident right answers


def test_unknown_model_raises(tone_store):
    store, cfg, tmp = tone_store
    with pytest.raises(ValueError, match="unknown model"):
        fit(store.view(), cfg.train.model_copy(update={"model": "transformer"}), tmp / "x")


def test_spec_augment_width_and_pooling_settings_reach_the_saved_model(tone_store):
    import keras

    store, cfg, tmp = tone_store
    view = store.view()
    masked = cfg.train.model_copy(update={"model": "tdnn", "epochs": 2, "schedule": "cosine", "spec_freq_masks": 2,
                                          "spec_time_masks": 1, "spec_time_width": 7, "ensemble": 1})
    masked_model = keras.models.load_model(fit(view, masked, tmp / "masked", verbose=0).model_path)
    assert masked_model.get_layer("stats_pool").output.shape[-1] == 4 * 128  # the default width
    assert type(masked_model.get_layer("stats_pool")).__name__ == "StatisticsPooling"  # the default pooling
    layer = masked_model.get_layer("spec_augment")
    assert {k: layer.get_config()[k] for k in ("freq_masks", "freq_width", "time_masks", "time_width")} == \
        {"freq_masks": 2, "freq_width": 8, "time_masks": 1, "time_width": 7}
    plain = keras.models.load_model(fit(view, masked.model_copy(update={"spec_freq_masks": 0, "spec_time_masks": 0,
                                                                        "width": 16, "pooling": "attentive",
                                                                        "frame_pool": 2, "clip_norm": True}),
                                        tmp / "plain", verbose=0).model_path)
    assert "spec_augment" not in [layer.name for layer in plain.layers]
    assert plain.get_layer("stats_pool").output.shape[-1] == 4 * 16
    assert type(plain.get_layer("stats_pool")).__name__ == "AttentiveStatisticsPooling"
    assert [layer.pool_size for layer in plain.layers if isinstance(layer, keras.layers.AveragePooling1D)] == [(2,)]
    assert plain.get_layer("clip_mean_norm").bands == plain.input_shape[1]  # tdnn: every row is a band
    assert "clip_mean_norm" not in [layer.name for layer in masked_model.layers]  # off by default
    # the default masks are on; a model that reads no spectrogram trains without them
    assert cfg.train.spec_augment
    common = cfg.train.model_dump(include=set(TrainConfig.model_fields))
    cnn1d = keras.models.load_model(fit(view, train_config(common, model="notebook_cnn1d", epochs=1, ensemble=1),
                                        tmp / "cnn1d", verbose=0).model_path)
    assert "spec_augment" not in [layer.name for layer in cnn1d.layers]


def test_test_speakers_of_several_corpora_are_also_scored_per_corpus(tmp_path):
    from conftest import sine, write_wav

    data = tmp_path / "data"
    make_ravdess_like(data / "ravdess", actors=tuple(range(1, 7)), emotions=("01", "05"), takes=2)
    for spk in ("03", "08", "09", "10", "11", "12"):
        for i, letter in enumerate("WNL"):  # angry, neutral, boredom
            write_wav(data / "emodb" / f"{spk}a0{i}{letter}a.wav", sine(250 + 60 * i, 1.2))
    cfg = PipelineConfig().with_overrides({"audio.duration": 1.0, "augment.variants": 0, "extract.batch_rows": 16,
                                           "train.epochs": 1, "train.batch_size": 8})
    clips, _ = assign_split(build_manifest(str(data)).clips, cfg.split)
    assert set(clips.loc[clips["split"] == "test", "corpus"]) == {"ravdess", "emodb"}  # stratified by corpus
    store = FeatureStore.create_or_resume(str(tmp_path / "f.zarr"), cfg, plan_rows(clips, cfg))
    for s, e in store.pending_regions():
        process_region(store.url, store.group, s, e)
    view = store.view()
    result = fit(view, cfg.train, tmp_path / "out", verbose=0)
    scores = score_split(view, result.model_path, tmp_path / "out")
    per = scores["per_corpus"]
    assert set(per) == {"emodb", "ravdess"}
    assert per["emodb"]["n"] + per["ravdess"]["n"] == scores["n"]
    assert per["ravdess"]["classes"] == ["neutral", "angry"]  # UA over RAVDESS's own classes
    assert per["emodb"]["classes"] == ["neutral", "angry", "boredom"]


OTHER_BACKEND_FIT = """
import json, sys
from pathlib import Path
import keras
from ser_tasks.config import train_config
from ser_tasks.store.zarr_store import FeatureStore
from ser_tasks.learn.training import fit, score_split, training_loss
view = FeatureStore.locate(sys.argv[1]).view()
cfg = train_config(json.loads(sys.argv[2]))  # the section of its model
out = Path(sys.argv[3])
result = fit(view, cfg, out, verbose=0)
scores = score_split(view, result.model_path, out)
print(json.dumps({"backend": keras.backend.backend(), "device": result.device, "ua": scores["ua"],
                  "epochs": len(result.history["loss"])}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_training_runs_under_another_backend_and_its_model_loads_under_tensorflow(tone_store, backend):
    import os
    import subprocess
    import sys

    import keras

    require_backend(backend)
    store, cfg, tmp = tone_store
    train_cfg = cfg.train.model_copy(update={"epochs": 12, "schedule": "cosine", "model": "tdnn"})
    out = tmp / backend
    proc = subprocess.run([sys.executable, "-c", OTHER_BACKEND_FIT, store.url, train_cfg.model_dump_json(), str(out)],
                          env={**os.environ, "KERAS_BACKEND": backend}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["backend"] == backend and res["device"] in ("CPU", "GPU") and res["epochs"] == 12
    assert res["ua"] >= 0.8, res  # tones: chance is 1/3
    if keras.backend.backend() == "tensorflow":  # the .keras file is the backend's own business no more
        again = score_split(store.view(), out / "model.keras", tmp / f"{backend}-tf")
        assert again["ua"] == pytest.approx(res["ua"], abs=0.05)


def test_a_gpu_the_backend_does_not_see_is_reported(monkeypatch, caplog):
    from ser_tasks.learn import training

    monkeypatch.setattr(training, "accelerator", lambda: "CPU")
    monkeypatch.setattr(training, "gpu_hardware", lambda: True)
    assert training.check_device() == "CPU"
    assert "has an NVIDIA GPU, but the Keras backend" in caplog.text and "KERAS_BACKEND=jax" in caplog.text
    caplog.clear()
    monkeypatch.setattr(training, "gpu_hardware", lambda: False)
    assert training.check_device() == "CPU" and caplog.text == ""


def test_an_ensemble_is_one_model_averaging_its_members(tone_store, capsys):
    import keras
    import numpy as np

    from ser_tasks.learn.data import ZarrSequence
    from ser_tasks.learn.models import MODEL_INPUTS

    store, cfg, tmp = tone_store
    view = store.view()
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(set(logs))

    two = cfg.train.model_copy(update={"epochs": 2, "ensemble": 2, "seed": 5, "schedule": "cosine"})
    result = fit(view, two, tmp / "ens", extra_callbacks=[Record()], verbose=2)
    out = capsys.readouterr().out
    # Keras's "Epoch 1/2" restarts with each member: a marker says which member follows
    assert out.index("ensemble member 1 of 2 (seed 5)") < out.index("ensemble member 2 of 2 (seed 6)")
    assert out.count("Epoch 1/2") == 2
    assert result.best_epoch == 2  # 1-based, as Keras counts: a cosine schedule keeps the last of 2
    model = keras.models.load_model(result.model_path, compile=False)
    members = [keras.models.load_model(tmp / "ens" / f"member{i}" / "model.keras", compile=False) for i in (0, 1)]
    assert model.name == cfg.train.model  # scored and served as the zoo model it averages
    x = ZarrSequence(view, view.rows("test"), MODEL_INPUTS[cfg.train.model], 64)[0][0]
    p0, p1 = (np.asarray(m.predict_on_batch(x)) for m in members)
    assert not np.allclose(p0, p1, atol=1e-3)  # the seeds differ
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(x)), (p0 + p1) / 2, atol=1e-5)
    assert len(result.history["loss"]) == len(result.history["member1_loss"]) == 2
    assert seen[0] >= {"loss", "val_ua"} and seen[-1] >= {"member1_loss", "member1_val_ua"}
    assert score_split(view, result.model_path, tmp / "ens")["n"] == 24


def test_tdnn_prosody_trains_on_pitch_and_energy_rows_that_serving_rebuilds(tmp_path):
    """A store extracted with ``features.f0`` feeds ``tdnn_prosody`` the log-mel plus two rows (F0, energy),
    a raw clip becomes the same input at serving time, and a store without F0 is refused by name."""
    import numpy as np

    from ser_tasks.errors import InputError
    from ser_tasks.learn.data import assemble, input_shape
    from ser_tasks.serve.predict import Preprocessing
    from ser_tasks.signal import audio
    from ser_tasks.signal.features import feature_names

    root = make_ravdess_like(tmp_path / "c", actors=tuple(range(1, 7)), emotions=("01", "05"), takes=2)
    cfg = PipelineConfig().with_overrides({"audio.duration": 1.0, "augment.variants": 0, "extract.batch_rows": 16,
                                           "features.f0": True, "train.model": "tdnn_prosody",
                                           "train.epochs": 2, "train.batch_size": 8})
    store = extracted_store(root, cfg, str(tmp_path / "f.zarr"))
    view = store.view()
    assert view.attrs["features"] == list(feature_names(cfg.features)) and "f0" in view.attrs["features"]
    assert input_shape(view, "log_mel_prosody") == (cfg.features.n_mels + 2, 101, 1)
    result = fit(view, cfg.train, tmp_path / "out", verbose=0)
    norm = json.loads(result.normalizer_path.read_text())
    assert len(norm["mean"]) == cfg.features.n_mels + 2  # the F0 and energy rows keep their own statistics
    assert score_split(view, result.model_path, tmp_path / "out")["n"] > 0

    emotion = view.column("emotion")
    # a neutral clip: its 168-202 Hz tone is inside YIN's range (the angry 700 Hz tones are above it)
    row = next(int(r) for r in view.rows("test", originals_only=True) if view.vocabulary[emotion[r]] == "neutral")
    stored = assemble("log_mel_prosody", {k: view.features(k)[row:row + 1] for k in ("log_mel", "f0", "rms")})
    from conftest import SYNTH_CLASSES

    tones = np.log2([SYNTH_CLASSES["01"][0] * (1 + 0.03 * (a - 3)) for a in range(1, 7)])
    assert np.abs(tones - np.median(stored[0, -2, :, 0])).min() < 0.03  # the F0 row is the clip's tone, in octaves
    path = str(view.column("path")[row])
    y = audio.fix_length(audio.speech(audio.load_audio(path, cfg.audio.sample_rate), cfg.audio, path),
                         cfg.audio.n_samples)
    prep = Preprocessing(cfg.audio, cfg.features, "log_mel_prosody", tuple(view.vocabulary), "tdnn_prosody")
    np.testing.assert_allclose(prep.model_input(y), stored, rtol=1e-6, atol=1e-6)

    plain = cfg.with_overrides({"features.f0": False, "train.model": "tdnn"})
    other = extracted_store(root, plain, str(tmp_path / "f.zarr"))
    with pytest.raises(InputError, match="no feature 'f0'.*features.f0: true"):
        input_shape(other.view(), "log_mel_prosody")


def test_a_speaker_normalised_model_is_scored_on_speaker_normalised_rows(tone_store):
    from ser_tasks.learn.data import SpeakerNorm, ZarrSequence
    from ser_tasks.learn.models import MODEL_INPUTS
    from ser_tasks.learn.training import score_rows, trained_per_speaker

    store, cfg, tmp = tone_store
    view = store.view()
    per_speaker = cfg.train.model_copy(update={"epochs": 2, "ensemble": 2, "speaker_norm": True})
    result = fit(view, per_speaker, tmp / "spk", verbose=0)
    assert trained_per_speaker(result.model_path)  # the ensemble keeps its members' flag
    assert not trained_per_speaker(tmp / "nowhere" / "model.keras")
    name = MODEL_INPUTS[cfg.train.model]
    test = view.rows("test", originals_only=True)
    model = keras.models.load_model(result.model_path, compile=False)
    normalised = ZarrSequence(view, test, name, 64, speaker_norm=SpeakerNorm(view, name))[0][0]
    raw = ZarrSequence(view, test, name, 64)[0][0]
    expected = np.asarray(model.predict_on_batch(normalised)).argmax(axis=1)
    assert not np.allclose(normalised, raw)
    _, pred = score_rows(view, result.model_path, test)
    np.testing.assert_array_equal(pred, expected)
