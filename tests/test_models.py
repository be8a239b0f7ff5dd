import keras
import numpy as np
import pytest

from ser_tasks.learn.models import (
    MODEL_INPUTS,
    AttentiveStatisticsPooling,
    ClipMeanNorm,
    Normalizer,
    SpecAugment,
    StatisticsPooling,
    build_model,
)


def normalizer(name, bands):
    return Normalizer(name, np.full(bands, 5.0), np.full(bands, 4.0), 10)


@pytest.mark.parametrize("name, shape, bands", [
    ("compact_cnn", (16, 40, 1), 16), ("tdnn", (16, 41, 1), 16), ("notebook_cnn2d", (16, 40, 1), 16),
    ("notebook_cnn1d", (40, 2), 2), ("notebook_deep_cnn1d", (40, 10), 10), ("utterance_mlp", (40, 10), 10),
    ("tdnn_prosody", (18, 41, 1), 18)])
def test_models_output_class_probabilities(name, shape, bands):
    model = build_model(name, shape, 5, normalizer(MODEL_INPUTS[name], bands))
    x = np.random.default_rng(0).normal(5, 2, (3, *shape)).astype("float32")
    p = model.predict_on_batch(x)
    assert p.shape == (3, 5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)


def test_normalization_layer_uses_the_fitted_statistics():
    model = build_model("compact_cnn", (8, 12, 1), 3, normalizer("log_mel", 8))
    out = model.get_layer("normalize")(np.full((1, 8, 12, 1), 7.0, dtype="float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), 1.0, rtol=1e-5)  # (7 - 5) / sqrt(4)


def test_saved_model_reloads_with_identical_predictions(tmp_path):
    model = build_model("compact_cnn", (16, 40, 1), 4, normalizer("log_mel", 16))
    x = np.random.default_rng(1).normal(size=(2, 16, 40, 1)).astype("float32")
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(model.predict_on_batch(x), again.predict_on_batch(x), rtol=1e-6)
    assert again.name == "compact_cnn"


def test_unknown_model_and_mismatched_normalizer_raise():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet", (8, 8, 1), 2, normalizer("log_mel", 8))
    with pytest.raises(ValueError, match="normalizer is for"):
        build_model("notebook_cnn1d", (8, 2), 2, normalizer("log_mel", 8))


@pytest.mark.parametrize("width", [None, 24])
def test_tdnn_reads_bands_as_channels_at_a_quarter_of_the_frame_rate(width):
    model = build_model("tdnn", (16, 301, 1), 8, normalizer("log_mel", 16), width=width)
    pooled = next(layer for layer in model.layers if isinstance(layer, keras.layers.AveragePooling1D))
    assert tuple(pooled.output.shape) == (None, 76, 16)  # ceil(301 / 4) frames of 16 bands
    channels = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv1D)]
    w = width or 128  # the measured default
    assert channels == [w, w, w, 2 * w]
    assert model.get_layer("stats_pool").output.shape[-1] == 4 * w
    with pytest.raises(ValueError, match="take a width"):
        build_model("compact_cnn", (16, 40, 1), 4, normalizer("log_mel", 16), width=w)


@pytest.mark.parametrize("pool, frames", [(8, 38), (1, 301)])
def test_tdnn_frame_pool_sets_the_frame_rate_the_convolutions_see(pool, frames):
    model = build_model("tdnn_prosody", (18, 301, 1), 4, normalizer("log_mel_prosody", 18), pool=pool)
    pooled = next(layer for layer in model.layers if isinstance(layer, keras.layers.AveragePooling1D))
    assert tuple(pooled.output.shape) == (None, frames, 18)  # ceil(301 / pool) frames
    for bad_name, bad_pool in (("compact_cnn", 8), ("tdnn", 0)):
        with pytest.raises(ValueError, match="average frames"):
            build_model(bad_name, (18, 301, 1), 4, normalizer(MODEL_INPUTS[bad_name], 18), pool=bad_pool)


@pytest.mark.parametrize("dropout, expected", [(None, 0.3), (0.5, 0.5), (0.0, 0.0)])
def test_tdnn_dropout_rate_is_set_on_both_layers(dropout, expected):
    model = build_model("tdnn_prosody", (18, 41, 1), 4, normalizer("log_mel_prosody", 18), dropout=dropout)
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [expected, expected]


@pytest.mark.parametrize("name, dropout, message", [("compact_cnn", 0.5, "take a dropout rate, not compact_cnn"),
                                                     ("tdnn", 1.0, r"in \[0, 1\)"), ("tdnn", -0.1, r"in \[0, 1\)")])
def test_dropout_refused_outside_tdnn_or_range(name, dropout, message):
    with pytest.raises(ValueError, match=message):
        build_model(name, (16, 40, 1), 4, normalizer("log_mel", 16), dropout=dropout)


def test_attentive_pooling_is_plain_statistics_under_equal_scores_and_follows_the_scores():
    x = np.random.default_rng(2).normal(size=(3, 7, 5)).astype("float32")
    layer = AttentiveStatisticsPooling(units=4)
    layer.build(x.shape)
    layer.score.kernel.assign(np.zeros((4, 1), "float32"))  # every frame scores the same
    expected = keras.ops.convert_to_numpy(StatisticsPooling()(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-4)
    # a score that grows with channel 0 puts the weight on the one frame per example where it peaks
    x = 0.3 * x
    frame = np.array([1, 4, 6])
    x[np.arange(3), frame, 0] = 3.0
    layer.hidden.kernel.assign(np.eye(5, 4, dtype="float32"))
    layer.score.kernel.assign(np.array([[50.0], [0], [0], [0]], "float32"))
    out = keras.ops.convert_to_numpy(layer(x))
    peak = x[np.arange(3), frame]  # (3, 5)
    np.testing.assert_allclose(out[:, :5], peak, atol=1e-2)
    assert (out[:, 5:] < 0.05).all()  # one frame: no spread
    with pytest.raises(ValueError, match="units >= 1"):
        AttentiveStatisticsPooling(units=0)


def test_attentive_tdnn_saves_and_reloads_with_identical_predictions(tmp_path):
    model = build_model("tdnn_prosody", (18, 41, 1), 4, normalizer("log_mel_prosody", 18), pooling="attentive")
    assert isinstance(model.get_layer("stats_pool"), AttentiveStatisticsPooling)
    assert model.get_layer("stats_pool").output.shape[-1] == 4 * 128
    x = np.random.default_rng(3).normal(5, 2, (2, 18, 41, 1)).astype("float32")
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(model.predict_on_batch(x), again.predict_on_batch(x), rtol=1e-5, atol=1e-6)
    assert isinstance(build_model("tdnn", (16, 41, 1), 4, normalizer("log_mel", 16)).get_layer("stats_pool"),
                      StatisticsPooling)  # the default
    with pytest.raises(ValueError, match="take one of stats, attentive, not compact_cnn"):
        build_model("compact_cnn", (16, 40, 1), 4, normalizer("log_mel", 16), pooling="attentive")
    with pytest.raises(ValueError, match="pooling 'max'"):
        build_model("tdnn", (16, 41, 1), 4, normalizer("log_mel", 16), pooling="max")


def test_clip_mean_norm_centres_the_bands_over_spoken_frames_and_leaves_prosody_rows():
    rng = np.random.default_rng(3)
    raw = rng.normal(0, 10, (2, 6, 9, 1)).astype("float32")  # 4 bands + F0 + energy, 9 frames
    raw[0, :4, 6:] = -80.0  # the store's padding: one floor value in every band
    x = rng.normal(size=raw.shape).astype("float32")
    out = keras.ops.convert_to_numpy(ClipMeanNorm(4)([raw, x]))
    live = x[0, :4, :6]
    np.testing.assert_allclose(out[0, :4, :6], live - live.mean(axis=1, keepdims=True), atol=1e-5)
    assert np.all(out[0, :4, 6:] == 0)  # padding carries no spectrum
    np.testing.assert_allclose(out[1, :4], x[1, :4] - x[1, :4].mean(axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_array_equal(out[:, 4:], x[:, 4:])  # F0 and energy keep their scale
    with pytest.raises(ValueError, match="bands >= 1"):
        ClipMeanNorm(0)


def test_clip_norm_tdnn_is_blind_to_a_clip_wide_band_offset_and_saves(tmp_path):
    model = build_model("tdnn_prosody", (18, 41, 1), 4, normalizer("log_mel_prosody", 18), clip_norm=True)
    x = np.random.default_rng(4).normal(5, 2, (2, 18, 41, 1)).astype("float32")
    tilted = x.copy()
    tilted[:, :16] += np.linspace(-6, 6, 16, dtype="float32")[None, :, None, None]  # another timbre or channel
    np.testing.assert_allclose(model.predict_on_batch(tilted), model.predict_on_batch(x), atol=1e-5)
    louder = x.copy()
    louder[:, 17] += 3.0  # the energy row is not centred: level still reaches the model
    assert not np.allclose(model.predict_on_batch(louder), model.predict_on_batch(x), atol=1e-4)
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "m.keras").predict_on_batch(x),
                               model.predict_on_batch(x), atol=1e-6)
    with pytest.raises(ValueError, match="clip_norm: only tdnn, tdnn_prosody"):
        build_model("compact_cnn", (16, 40, 1), 4, normalizer("log_mel", 16), clip_norm=True)


def test_spec_augment_masks_whole_bands_and_frames_in_training_only():
    layer = SpecAugment(freq_masks=1, freq_width=3, time_masks=1, time_width=5, seed=3)
    x = np.ones((64, 16, 40, 1), dtype="float32")
    assert np.array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    out = keras.ops.convert_to_numpy(layer(x, training=True))[..., 0]
    zero_bands = (out == 0).all(axis=2).sum(axis=1)  # per example: bands masked at every frame
    zero_frames = (out == 0).all(axis=1).sum(axis=1)  # frames masked in every band
    assert zero_bands.max() <= 3 and zero_frames.max() <= 5  # never wider than allowed
    assert len(set(zero_bands.tolist())) > 1 and len(set(zero_frames.tolist())) > 1  # widths are drawn
    # What is not masked is left alone: every zero lies in a masked band or a masked frame.
    masked = ((out == 0).all(axis=2)[:, :, None]) | ((out == 0).all(axis=1)[:, None, :])
    assert np.array_equal(out == 0, masked) and (out[~masked] == 1).all()
    starts = {int(np.argmax((out[i] == 0).all(axis=1))) for i in range(64) if zero_bands[i]}
    assert len(starts) > 3  # the masked band moves from example to example


def test_spec_augment_saves_with_the_model_and_refuses_non_spectrograms(tmp_path):
    masking = SpecAugment(2, 4, 2, 10, seed=0, name="spec_augment")
    model = build_model("tdnn", (16, 41, 1), 4, normalizer("log_mel", 16), masking)
    x = np.random.default_rng(2).normal(size=(2, 16, 41, 1)).astype("float32")
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(model.predict_on_batch(x), again.predict_on_batch(x), rtol=1e-6)
    assert again.get_layer("spec_augment").get_config()["time_width"] == 10
    with pytest.raises(ValueError, match="spectrograms"):
        build_model("notebook_cnn1d", (40, 2), 2, normalizer("zcr_rms", 2), SpecAugment())
    with pytest.raises(ValueError, match="non-negative"):
        SpecAugment(freq_masks=-1)


def test_a_new_input_kind_and_a_new_model_are_one_catalogue_entry_each(monkeypatch):
    """The zoo's catalogue is the only place to touch: the feed stacks the new input, the builder
    builds the new model, and the configuration accepts it and refuses options it does not take."""
    from ser_tasks import zoo
    from ser_tasks.config import PipelineConfig
    from ser_tasks.learn.data import assemble

    every_body = {name: spec.build_body() for name, spec in zoo.MODEL_SPECS.items()}
    assert all(callable(body) for body in every_body.values())
    spec = zoo.InputSpec("rms_curve", ("rms",), lambda a: a["rms"][..., np.newaxis].astype(np.float32),
                         lambda s: (s["rms"][0], 1), "sequence")
    monkeypatch.setitem(zoo.INPUT_SPECS, "rms_curve", spec)
    monkeypatch.setitem(zoo.MODEL_SPECS, "rms_mlp",
                        zoo.ModelSpec("rms_mlp", "rms_curve", "ser_tasks.learn.models:utterance_mlp"))
    x = assemble("rms_curve", {"rms": np.random.default_rng(0).uniform(0, 1, (3, 40))})
    assert x.shape == (3, 40, 1) and x.dtype == np.float32
    model = build_model("rms_mlp", (40, 1), 4, normalizer("rms_curve", 1))
    assert model.name == "rms_mlp" and model.predict_on_batch(x).shape == (3, 4)
    assert PipelineConfig().with_overrides({"train.model": "rms_mlp"}).train.model == "rms_mlp"
    with pytest.raises(ValueError, match="train.width is a setting of tdnn, tdnn_prosody only, not rms_mlp"):
        PipelineConfig().with_overrides({"train.model": "rms_mlp", "train.width": 64})
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        PipelineConfig().with_overrides({"train.model": "nope"})


def test_the_tdnn_sections_defaults_are_its_bodys():
    """train.width and the rest default to what tdnn's body takes when not given: one recipe, not two."""
    import inspect

    from ser_tasks.config import TdnnTrainConfig
    from ser_tasks.learn.models import tdnn

    body = {k: p.default for k, p in inspect.signature(tdnn).parameters.items() if p.default is not p.empty}
    options = TdnnTrainConfig(model="tdnn").body_options()
    assert options.pop("clip_norm") is False  # a layer before the body, off
    assert options == body
