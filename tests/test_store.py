import numpy as np
import pytest

from conftest import make_ravdess_like
from ser_tasks.config import PipelineConfig
from ser_tasks.extract import clip_features, process_region
from ser_tasks.manifest import build_manifest
from ser_tasks.split import assign_split
from ser_tasks.store import DONE, FAILED, FeatureStore, StoreConflictError, group_name, plan_rows, read_strings

CFG = PipelineConfig().with_overrides({"extract.batch_rows": 8, "audio.duration": 1.0, "augment.variants": 2})


def planned(root, cfg=CFG):
    m = build_manifest(str(root))
    clips, _ = assign_split(m.clips, cfg.split)
    return clips, plan_rows(clips, cfg)


def test_plan_augments_training_clips_only_and_orders_by_split(ravdess_like):
    clips, plan = planned(ravdess_like)
    n_train = (clips["split"] == "train").sum()
    assert len(plan) == len(clips) + 2 * n_train
    assert set(plan.loc[plan["variant"] > 0, "split"]) == {"train"}
    assert plan["split"].tolist() == sorted(plan["split"], key=["train", "val", "test"].index)
    assert plan.loc[plan["variant"] == 0, "pitch_semitones"].isna().all()
    first = plan.groupby("clip_id")["variant"].apply(list)
    assert all(v == list(range(len(v))) for v in first)  # a clip's variants are adjacent, in order


def test_extraction_fills_store_and_second_run_computes_nothing(ravdess_like, tmp_path):
    clips, plan = planned(ravdess_like)
    url = str(tmp_path / "f.zarr")
    store = FeatureStore.create_or_resume(url, CFG, plan)
    assert store.group == group_name(CFG)
    regions = store.pending_regions()
    assert regions == store.regions() and all((e - s) <= 8 for s, e in regions)
    for s, e in regions:
        out = process_region(url, store.group, s, e)
        assert out["failed"] == 0 and out["done"] == e - s
    store.finalize()
    assert store.counts() == {"rows": len(plan), "done": len(plan), "failed": 0, "pending": 0}
    g = store.open()
    assert g["log_mel"].shape == (len(plan), 64, 101) and np.isfinite(g["log_mel"][:]).all()
    assert g.attrs["vocabulary"] == ["neutral", "angry"] and g.attrs["complete"] is True
    assert read_strings(g["clip_id"]).tolist() == plan["clip_id"].tolist()
    # resume: same config and rows -> nothing pending, nothing rewritten
    before = {k: v for k, v in _mtimes(tmp_path / "f.zarr").items() if "/c/" in k}
    again = FeatureStore.create_or_resume(url, CFG, plan)
    assert again.pending_regions() == []
    assert {k: v for k, v in _mtimes(tmp_path / "f.zarr").items() if "/c/" in k} == before


def _mtimes(root):
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_rows_are_recomputable_from_stored_parameters(ravdess_like, tmp_path):
    from ser_tasks.audio import load_audio
    from ser_tasks.augment import AugmentParams, variant_rng

    clips, plan = planned(ravdess_like)
    url = str(tmp_path / "f.zarr")
    store = FeatureStore.create_or_resume(url, CFG, plan)
    process_region(url, store.group, 0, 8)
    g = store.open()
    row = int(np.flatnonzero(g["variant"][:8] > 0)[0])
    y = load_audio(str(read_strings(g["path"])[row]), CFG.audio.sample_rate)
    rng = variant_rng(CFG.augment.seed, str(read_strings(g["clip_id"])[row]), int(g["variant"][row]), stream=1)
    again = clip_features(y, CFG.audio, CFG.features, AugmentParams.from_array(g["augment"][row]), rng)
    np.testing.assert_allclose(again["log_mel"], g["log_mel"][row], atol=1e-4)
    assert not np.allclose(g["log_mel"][row], g["log_mel"][row - 1])  # the variant differs from its original


def test_a_corrupt_clip_fails_alone_with_its_reason(tmp_path):
    root = make_ravdess_like(tmp_path / "c", actors=(1, 2, 3, 4), takes=2)
    bad = root / "Actor_02" / "03-01-05-01-01-01-02.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    clips, plan = planned(root)
    url = str(tmp_path / "f.zarr")
    store = FeatureStore.create_or_resume(url, CFG, plan)
    results = [process_region(url, store.group, s, e) for s, e in store.pending_regions()]
    failures = store.failures()
    n_bad_rows = int((plan["path"] == str(bad)).sum())
    assert len(failures) == n_bad_rows >= 1
    assert failures["reason"].str.contains("03-01-05-01-01-01-02.wav").all()
    assert failures["reason"].str.contains("cannot decode").all()
    assert sum(r["failed"] for r in results) == n_bad_rows
    assert store.counts()["done"] == len(plan) - n_bad_rows
    assert sum(len(r["failures"]) for r in results) == 1  # one clip, reported once
    status = store.open()["status"][:]
    assert set(status.tolist()) == {DONE, FAILED}


def test_other_rows_or_config_never_overwrite(ravdess_like, tmp_path):
    clips, plan = planned(ravdess_like)
    url = str(tmp_path / "f.zarr")
    FeatureStore.create_or_resume(url, CFG, plan)
    with pytest.raises(StoreConflictError, match="planned from other clips"):
        FeatureStore.create_or_resume(url, CFG, plan.iloc[:-3])
    other = CFG.with_overrides({"features.n_mels": 40})
    s2 = FeatureStore.create_or_resume(url, other, plan_rows(clips, other))
    assert s2.group != group_name(CFG)
    assert FeatureStore.groups(url) == sorted([group_name(CFG), s2.group])
    with pytest.raises(ValueError, match="2 feature groups"):
        FeatureStore.locate(url)
    assert FeatureStore.locate(url, s2.group).group == s2.group


def test_writes_must_cover_one_whole_chunk(ravdess_like, tmp_path):
    _, plan = planned(ravdess_like)
    store = FeatureStore.create_or_resume(str(tmp_path / "f.zarr"), CFG, plan)
    with pytest.raises(ValueError, match="whole chunk"):
        store.write_region(4, 12, {}, np.zeros(8), [""] * 8)


def test_locate_on_empty_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="ser extract"):
        FeatureStore.locate(str(tmp_path / "none.zarr"))
