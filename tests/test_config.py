import json

import pytest

from ser_tasks.config import FeatureConfig, PipelineConfig, load_config


def test_defaults_are_valid_and_consistent():
    cfg = PipelineConfig()
    assert cfg.audio.n_samples == 48_000
    assert cfg.features.fmax <= cfg.audio.sample_rate / 2
    assert abs(cfg.split.train + cfg.split.val + cfg.split.test - 1) < 1e-9


def test_fingerprint_tracks_extraction_settings_only():
    base = PipelineConfig()
    assert base.extraction_fingerprint() == PipelineConfig().extraction_fingerprint()
    assert base.with_overrides({"features.n_mels": 40}).extraction_fingerprint() != base.extraction_fingerprint()
    assert base.with_overrides({"augment.variants": 3}).extraction_fingerprint() != base.extraction_fingerprint()
    # training and fan-out settings do not change what the store holds
    assert base.with_overrides({"train.epochs": 3, "extract.workers": 7}).extraction_fingerprint() == \
        base.extraction_fingerprint()


def test_the_f0_contour_changes_the_store_only_when_on():
    with_f0 = PipelineConfig().with_overrides({"features.f0": True, "train.model": "tdnn_prosody"})
    assert with_f0.features.f0 and with_f0.extraction_dict()["features"]["f0"] is True
    base = with_f0.with_overrides({"features.f0": False, "train.model": "tdnn"})
    assert "f0" not in base.extraction_dict()["features"]  # stores written before it keep their names
    assert with_f0.extraction_fingerprint() != base.extraction_fingerprint()
    with pytest.raises(ValueError, match="reads the F0 contour: set features.f0"):
        base.with_overrides({"train.model": "tdnn_prosody"})


def test_the_f0_stride_changes_the_store_only_when_set_and_f0_is_on():
    base = PipelineConfig().with_overrides({"features.f0": True})
    assert "f0_stride" not in base.extraction_dict()["features"]  # stores written before it keep their names
    coarse = base.with_overrides({"features.f0_stride": 4})
    assert coarse.extraction_dict()["features"]["f0_stride"] == 4
    assert coarse.extraction_fingerprint() != base.extraction_fingerprint()
    plain = {"features.f0": False, "train.model": "tdnn"}
    assert coarse.with_overrides(plain).extraction_fingerprint() == base.with_overrides(plain).extraction_fingerprint()
    # what older stores and models recorded (no stride) reads as YIN on every frame, whatever the default
    assert FeatureConfig.stored({"f0": True}).f0_stride == 1


@pytest.mark.parametrize("override, message", [
    ({"features.fmax": 12_000.0}, "Nyquist"),
    ({"split.test": 0.5}, "sum"),
    ({"augment.snr_db": (30, 10)}, "above high"),
    ({"features.n_mfcc": 80}, "exceeds n_mels"),
    ({"train.nope": 1}, "unknown configuration key"),
    ({"train.model": "compact_cnn", "train.width": 64}, "width is a setting of tdnn"),
    ({"train.model": "tdnn", "train.width": 0}, "greater than or equal to 1"),
    ({"train.model": "compact_cnn", "train.dropout": 0.5}, "dropout is a setting of tdnn"),
    ({"train.model": "tdnn", "train.dropout": 1.0}, "less than 1"),
    ({"train.model": "compact_cnn", "train.pooling": "attentive"}, "pooling is a setting of tdnn"),
    ({"train.model": "tdnn", "train.pooling": "max"}, "'stats' or 'attentive'"),
    ({"train.model": "notebook_cnn2d", "train.frame_pool": 8}, "frame_pool is a setting of tdnn"),
    ({"train.model": "tdnn", "train.frame_pool": 0}, "greater than or equal to 1"),
    ({"train.model": "compact_cnn", "train.clip_norm": True}, "clip_norm is a setting of tdnn"),
    ({"train.model": "compact_cnn", "train.dropout": 0.0}, "dropout is a setting of tdnn"),  # 0.0 is set, not unset
    ({"train.corpus_norm": True, "train.speaker_norm": True}, "normalises by corpus"),
    # measured worse and removed (docs/benchmarks.md keeps their results)
    ({"train.voice_swap": 0.5}, "unknown configuration key 'train.voice_swap'"),
    ({"train.speaker_adversary": 0.3}, "unknown configuration key 'train.speaker_adversary'"),
])
def test_invalid_settings_raise(override, message):
    with pytest.raises(ValueError, match=message):
        PipelineConfig().with_overrides(override)


@pytest.mark.parametrize("suffix, text", [
    (".yaml", "train:\n  epochs: 3\nfeatures:\n  n_mels: 40\n"),
    (".json", json.dumps({"train": {"epochs": 3}, "features": {"n_mels": 40}})),
    (".toml", "[train]\nepochs = 3\n[features]\nn_mels = 40\n"),
])
def test_load_config_formats_and_overrides(tmp_path, suffix, text):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    cfg = load_config(path, {"train.model": "notebook_cnn1d", "train.batch_size": None})
    assert (cfg.train.epochs, cfg.features.n_mels, cfg.train.model) == (3, 40, "notebook_cnn1d")
    assert cfg.train.batch_size == 32  # None leaves the file's / default value


def test_unknown_key_in_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("features:\n  n_melz: 40\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_config(path)


def test_flat_params_cover_every_section():
    params = PipelineConfig().flat_params()
    assert params["features.n_mels"] == 64 and params["train.model"] == "layer_weighted"
    assert {k.split(".")[0] for k in params} == {"manifest", "audio", "augment", "features", "split", "extract",
                                                 "train", "tracking"}


def test_defaults_are_the_benchmarked_recipe():
    """`ser run` trains what benchmarks/encoder.yaml measured, on a fixed schedule."""
    from pathlib import Path

    recipe = load_config(Path(__file__).parents[1] / "benchmarks" / "encoder.yaml")
    default = PipelineConfig()
    assert default.train == recipe.train and default.augment == recipe.augment
    assert default.features == recipe.features and default.features.encoder == "whisper-base"
    assert default.train.schedule == "cosine" and default.train.model == "layer_weighted"


def test_the_from_scratch_recipe_still_loads():
    from pathlib import Path

    scratch = load_config(Path(__file__).parents[1] / "benchmarks" / "accuracy.yaml")
    assert scratch.train.model == "tdnn_prosody" and scratch.features.f0 and scratch.augment.variants == 4


def test_the_configuration_page_is_the_table_the_schema_generates(tmp_path):
    """docs/configuration.md's reference is generated from the fields' docstrings: a setting added,
    renamed or given another default without regenerating it fails here."""
    from pathlib import Path

    from ser_tasks.config import REFERENCE_BEGIN, REFERENCE_END, reference_markdown, write_reference

    page = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    table = page[page.index(REFERENCE_BEGIN):page.index(REFERENCE_END) + len(REFERENCE_END) + 1]
    assert table == reference_markdown(), "run: python -m ser_tasks.config docs/configuration.md"
    keys = [line.split("`")[1] for line in table.splitlines() if line.startswith("| `")]
    tdnn = PipelineConfig().with_overrides({"train.model": "tdnn"})
    assert keys == list(tdnn.flat_params())  # every setting, once, in order (tdnn's section has them all)
    assert "| `train.ensemble` | 3 | integer ≥ 1 |" in table
    assert "| `train.schedule` | cosine | `plateau` or `cosine` |" in table
    assert "| `audio.trim_top_db` | 30 | number > 0, or none |" in table
    stale = tmp_path / "page.md"
    stale.write_text(f"intro\n{REFERENCE_BEGIN}\n| old |\n{REFERENCE_END}\noutro\n")
    assert write_reference(stale) and stale.read_text() == f"intro\n{reference_markdown()}outro\n"
    assert not write_reference(stale)
    plain = tmp_path / "plain.md"
    plain.write_text("no table here\n")
    with pytest.raises(ValueError, match="no generated-table markers"):
        write_reference(plain)


def test_the_train_section_is_the_models_own():
    """train is a tagged union on train.model: each model has the settings that apply to it, and only
    those are logged."""
    from ser_tasks.config import SpectrogramTrainConfig, TdnnTrainConfig, TrainConfig, train_config, train_section
    from ser_tasks.zoo import MODEL_SPECS

    assert {m: train_section(m).__name__ for m in MODEL_SPECS} == {
        "compact_cnn": "SpectrogramTrainConfig", "tdnn": "TdnnTrainConfig", "notebook_cnn2d": "SpectrogramTrainConfig",
        "notebook_cnn1d": "TrainConfig", "notebook_deep_cnn1d": "TrainConfig", "utterance_mlp": "TrainConfig",
        "tdnn_prosody": "TdnnTrainConfig", "layer_weighted": "TrainConfig", "layer_concat": "TrainConfig",
        "linear_probe": "TrainConfig"}
    default = PipelineConfig()
    assert type(default.train) is TrainConfig and not default.train.spec_augment
    assert not {"train.width", "train.spec_freq_masks"} & set(default.flat_params())
    tdnn = default.with_overrides({"train.model": "tdnn", "train.width": 96})
    assert type(tdnn.train) is TdnnTrainConfig and tdnn.train.spec_augment
    assert tdnn.flat_params()["train.width"] == 96 and tdnn.flat_params()["train.frame_pool"] == 4
    assert TdnnTrainConfig(model="tdnn").body_options()["width"] == 128
    assert tdnn.train.body_options() == {"width": 96, "dropout": 0.3, "pooling": "stats", "pool": 4, "clip_norm": False}
    # another model through --model: the old section's settings go when at their defaults, are refused when set
    cnn = default.with_overrides({"train.model": "tdnn"}).with_overrides({"train.model": "compact_cnn"})
    assert type(cnn.train) is SpectrogramTrainConfig and cnn.train.body_options() == {}
    with pytest.raises(ValueError, match="train.width is a setting of tdnn, tdnn_prosody only, not compact_cnn"):
        tdnn.with_overrides({"train.model": "compact_cnn"})
    assert tdnn.with_overrides({"train.model": "tdnn_prosody", "features.f0": True}).train.width == 96
    with pytest.raises(ValueError, match="spec_time_masks is a setting of compact_cnn, tdnn, notebook_cnn2d, "
                                         "tdnn_prosody only, not layer_weighted"):
        load_config(None, {"train.spec_time_masks": 0})
    with pytest.raises(ValueError, match="takes the settings of TrainConfig, not SpectrogramTrainConfig"):
        SpectrogramTrainConfig(model="layer_weighted")
    assert train_config(model="tdnn_prosody", width=64).width == 64
    assert PipelineConfig.model_validate(tdnn.model_dump()) == tdnn  # a dump reads back as the same section


@pytest.mark.parametrize("model", ["layer_weighted", "compact_cnn", "tdnn_prosody"])
def test_the_json_schema_takes_each_sections_dump_as_that_section_only(model):
    """Prefect validates a deployment's parameters against the schema: a train mapping must match one
    branch of its oneOf, not all three (every section's settings have defaults)."""
    import jsonschema

    cfg = PipelineConfig().with_overrides({"train.model": model, "features.f0": True})
    schema = PipelineConfig.model_json_schema()
    jsonschema.validate(cfg.model_dump(mode="json"), schema)
    jsonschema.validate({"train": {"epochs": 3}}, schema)  # no model: the default's section
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"train": {"model": model, "nope": 1}}, schema)


def test_a_flat_train_section_written_before_the_sections_still_loads():
    """Deployments and files of before the sections carry every train key, the ones their model did
    not take at their old unset values: those are dropped, a real setting is still refused."""
    flat = {"model": "layer_weighted", "epochs": 5, "width": None, "dropout": None, "pooling": None,
            "frame_pool": None, "clip_norm": False, "spec_freq_masks": 1, "spec_freq_width": 8,
            "spec_time_masks": 1, "spec_time_width": 25}
    old = PipelineConfig.model_validate({"train": flat})
    assert old.train == PipelineConfig().train.model_copy(update={"epochs": 5})
    tdnn = PipelineConfig.model_validate({"features": {"encoder": None}, "train": {**flat, "model": "tdnn"}})
    assert tdnn.train.width == 128 and tdnn.train.spec_freq_masks == 1  # None was "the default"
    with pytest.raises(ValueError, match="train.width is a setting of tdnn"):
        PipelineConfig.model_validate({"train": {**flat, "width": 96}})
