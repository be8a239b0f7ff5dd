"""A training job runs anywhere: it needs only the store, and leaves its model on the store's filesystem."""

import pickle

import dask

from conftest import extracted_store, make_ravdess_like
from ser_tasks.config import PipelineConfig
from ser_tasks.learn.jobs import TrainJob, fetch_outputs, outputs_url_for, placement, run_job
from ser_tasks.store.zarr_store import FeatureStore


def test_a_pickled_job_trains_scores_and_hands_its_model_over_through_the_store(tmp_path):
    root = make_ravdess_like(tmp_path / "c", actors=(1, 2, 3, 4), takes=2)
    cfg = PipelineConfig().with_overrides({"audio.duration": 1.0, "augment.variants": 0, "extract.batch_rows": 8,
                                           "train.epochs": 1, "train.batch_size": 4})
    store = extracted_store(root, cfg, str(tmp_path / "f.zarr"))
    view = store.view()
    url = outputs_url_for(store.url, "unit")
    assert url.startswith(f"{store.url}/.ser-runs/unit-")
    job = pickle.loads(pickle.dumps(TrainJob(view, view.rows("train"), view.rows("test"), cfg.train, url, threads=1,
                                             name="unit")))  # as a Dask worker receives it
    res = run_job(job)
    assert res["name"] == "unit" and len(res["history"]["loss"]) == 1 and res["threads"] == 1
    assert res["scores"]["n"] == len(res["y_true"]) == len(res["y_pred"]) == view.rows("test").size
    assert res["y_true"] == view.labels()[view.rows("test")].tolist()
    files = fetch_outputs(res["outputs_url"], tmp_path / "fetched")
    assert sorted(p.name for p in files.values()) == ["model.keras", "normalizer.json"]
    assert all(p.stat().st_size > 0 for p in files.values())
    assert not (tmp_path / "f.zarr" / ".ser-runs" / url.rsplit("/", 1)[-1]).exists()  # removed once fetched
    assert FeatureStore.groups(store.url) == [store.group]  # the runs folder is no group


def test_resources_become_dask_annotations_and_none_means_anywhere():
    with placement({"GPU": 1}):
        assert dask.get_annotations() == {"resources": {"GPU": 1}}
    with placement({}):
        assert dask.get_annotations() == {}
