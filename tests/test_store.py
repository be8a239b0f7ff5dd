import numpy as np
import pytest
import zarr

from conftest import make_ravdess_like
from ser_tasks.config import PipelineConfig
from ser_tasks.corpus.manifest import build_manifest
from ser_tasks.corpus.split import assign_split
from ser_tasks.signal.augment import PARAM_NAMES
from ser_tasks.store.extraction import clip_features, process_region
from ser_tasks.store.plan import plan_rows, planned_splits
from ser_tasks.store.zarr_store import DONE, FAILED, FeatureStore, StoreConflictError, group_name, read_strings

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


def test_tasks_merge_adjacent_pending_chunks_only(ravdess_like, tmp_path):
    cfg = CFG.with_overrides({"extract.batch_rows": 10})
    _, plan = planned(ravdess_like, cfg)
    url = str(tmp_path / "f.zarr")
    store = FeatureStore.create_or_resume(url, cfg, plan)
    n = len(plan)
    assert n == 112  # 11 whole chunks and a partial one
    process_region(url, store.group, 20, 30)  # a finished chunk splits the runs around it
    assert store.task_regions(3) == [(0, 20), (30, 60), (60, 90), (90, 112)]
    assert store.task_regions(1) == [r for r in store.regions() if r != (20, 30)]
    with pytest.raises(ValueError, match="chunks_per_task"):
        store.task_regions(0)
    with pytest.raises(ValueError, match="whole chunks"):
        process_region(url, store.group, 10, 15)
    out = process_region(url, store.group, 90, 112)  # a multi-chunk task ending in the partial chunk
    assert out["rows"] == out["done"] == 22


def _mtimes(root):
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_rows_are_recomputable_from_stored_parameters(ravdess_like, tmp_path):
    from ser_tasks.signal.audio import load_audio
    from ser_tasks.signal.augment import AugmentParams, variant_rng

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


def test_other_splits_or_config_never_overwrite(ravdess_like, tmp_path):
    clips, plan = planned(ravdess_like)
    url = str(tmp_path / "f.zarr")
    FeatureStore.create_or_resume(url, CFG, plan)
    moved = plan.assign(split=plan["split"].replace({"test": "train"}))
    with pytest.raises(StoreConflictError, match="would change split"):
        FeatureStore.create_or_resume(url, CFG, moved)
    fewer = FeatureStore.create_or_resume(url, CFG, plan.iloc[:-3])  # files gone: their rows stay
    assert fewer.appended_rows == 0 and fewer.counts()["rows"] == len(plan)
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


def test_new_files_are_appended_and_only_they_are_computed(tmp_path):
    root = make_ravdess_like(tmp_path / "c", actors=(1, 2, 3, 4, 5), takes=2)
    url = str(tmp_path / "f.zarr")
    clips, plan = planned(root)
    store = FeatureStore.create_or_resume(url, CFG, plan)
    for s, e in store.pending_regions():
        process_region(url, store.group, s, e)
    n0 = len(plan)
    assert n0 % 8, "the test needs a partial last chunk"
    before = read_strings(store.open()["clip_id"]).tolist()
    old_features = store.open()["log_mel"][:]
    fixed = planned_splits(url, CFG)
    assert fixed == dict(zip(clips["speaker"], clips["split"], strict=True))
    # the corpus gains a take for an old speaker and a new speaker
    make_ravdess_like(tmp_path / "c", actors=(2, 6), takes=3, seed=1)
    m = build_manifest(str(root))
    grown, notes = assign_split(m.clips, CFG.split, fixed=fixed)
    assert any("new speaker" in n for n in notes)
    assert grown.set_index("speaker")["split"].groupby(level=0).first().loc[list(fixed)].to_dict() == fixed
    plan2 = plan_rows(grown, CFG, params=False)  # as the flow plans: drawn for the appended rows only
    again = FeatureStore.create_or_resume(url, CFG, plan2)
    n_new = len(plan2) - n0
    assert again.appended_rows == n_new > 0
    g = again.open()
    assert read_strings(g["clip_id"]).tolist()[:n0] == before
    assert (g["status"][:n0] == DONE).all() and (g["status"][n0:] == 0).all()
    tasks = again.task_regions(3)  # the partial old chunk leads the first multi-chunk task
    assert tasks[0][0] == n0 // 8 * 8 and tasks[0][1] - tasks[0][0] > 8
    results = [process_region(url, again.group, s, e) for s, e in tasks]
    assert sum(r["rows"] for r in results) == n_new
    assert again.pending_regions() == [] and again.counts()["done"] == len(plan2)
    np.testing.assert_array_equal(g["log_mel"][:n0], old_features)  # the shared chunk's old rows kept
    assert np.isfinite(g["log_mel"][n0:]).all()
    assert FeatureStore.create_or_resume(url, CFG, plan2).appended_rows == 0
    drawn = plan_rows(grown, CFG).set_index(["clip_id", "variant"])[list(PARAM_NAMES)]
    stored = g["augment"][:]  # float32
    keys = list(zip(read_strings(g["clip_id"]), g["variant"][:].tolist(), strict=True))
    np.testing.assert_array_equal(stored, drawn.loc[keys].to_numpy(np.float32))  # old and appended rows alike


def test_planning_without_parameters_stores_the_same_parameters(ravdess_like, tmp_path):
    clips, plan = planned(ravdess_like)
    lazy = plan_rows(clips, CFG, params=False)
    assert not set(PARAM_NAMES) & set(lazy.columns)
    assert lazy.equals(plan.drop(columns=list(PARAM_NAMES)))
    a = FeatureStore.create_or_resume(str(tmp_path / "a.zarr"), CFG, plan).open()
    b = FeatureStore.create_or_resume(str(tmp_path / "b.zarr"), CFG, lazy).open()
    np.testing.assert_array_equal(a["augment"][:], b["augment"][:])
    assert np.isnan(b["augment"][:][b["variant"][:] == 0]).all() and not np.isnan(b["augment"][:]).all()


def test_finalize_writes_only_what_changed(tmp_path):
    root = make_ravdess_like(tmp_path / "c", actors=(1, 2, 3), takes=2)
    url = str(tmp_path / "f.zarr")
    clips, plan = planned(root)
    store = FeatureStore.create_or_resume(url, CFG, plan)
    assert store.finalize() == {"rows": len(plan), "done": 0, "failed": 0, "pending": len(plan)}
    meta = {k: v for k, v in _mtimes(tmp_path / "f.zarr").items() if k.endswith("zarr.json")}
    assert FeatureStore.create_or_resume(url, CFG, plan).finalize()["pending"] == len(plan)
    assert {k: v for k, v in _mtimes(tmp_path / "f.zarr").items() if k.endswith("zarr.json")} == meta
    # a grown corpus appends rows: the consolidated metadata must show the new shapes
    make_ravdess_like(tmp_path / "c", actors=(4,), takes=2, seed=1)
    grown, _ = assign_split(build_manifest(str(root)).clips, CFG.split, fixed=planned_splits(url, CFG))
    again = FeatureStore.create_or_resume(url, CFG, plan_rows(grown, CFG, params=False))
    assert again.appended_rows > 0
    again.finalize()
    consolidated = zarr.open_group(url, mode="r", use_consolidated=True)[again.group]["status"]
    assert consolidated.shape == (len(plan) + again.appended_rows,)


def test_a_read_view_opens_the_group_once_and_reads_each_label_array_once(ravdess_like, tmp_path, monkeypatch):
    import pickle

    from ser_tasks.store import zarr_store as store_mod

    clips, plan = planned(ravdess_like)
    url = str(tmp_path / "f.zarr")
    store = FeatureStore.create_or_resume(url, CFG, plan)
    for s, e in store.pending_regions():
        process_region(url, store.group, s, e)
    opens, reads = [], []
    real_open, real_get = store_mod._open_root, zarr.Array.__getitem__
    monkeypatch.setattr(store_mod, "_open_root", lambda *a: opens.append(a) or real_open(*a))
    monkeypatch.setattr(zarr.Array, "__getitem__", lambda self, sel: reads.append(self.basename) or real_get(self, sel))

    view = FeatureStore.locate(url).view()
    train, test = view.rows("train"), view.rows("test", originals_only=True)
    view.labels(), view.counts(), view.failures(), view.rows("val"), view.done()
    table = view.provenance()
    assert len(opens) == 1
    assert sorted(reads) == sorted(["split", "status", "variant", "emotion", "clip_id", "speaker", "path"])
    assert train.size == (plan["split"] == "train").sum()
    assert test.size == ((plan["split"] == "test") & (plan["variant"] == 0)).sum()
    assert table["clip_id"].tolist() == plan["clip_id"].tolist() and set(table["split"]) <= {"train", "val", "test"}
    assert table["emotion"].tolist() == plan["emotion"].tolist()
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        view.rows("dev")
    # a view travels (to another process) as its store handle and reopens there
    again = pickle.loads(pickle.dumps(view))
    assert again.rows("train").tolist() == train.tolist() and len(opens) == 2
