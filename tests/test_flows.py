"""The extraction flow on a 2-process Dask LocalCluster under a real (temporary) Prefect server."""

import pytest

from conftest import make_ravdess_like
from flows.extract import dask_runner, extract_features
from ser_tasks.config import PipelineConfig
from ser_tasks.store import FeatureStore

pytestmark = pytest.mark.slow


def test_extract_flow_fans_out_collects_failures_and_resumes(tmp_path, prefect_harness):
    root = make_ravdess_like(tmp_path / "c", actors=(1, 2, 3, 4), takes=2)
    bad = root / "Actor_03" / "03-01-05-01-01-01-03.wav"
    bad.write_bytes(b"not audio at all")
    (root / "Actor_03" / "03-01-99-01-01-01-03.wav").write_bytes(b"")  # name does not parse
    cfg = PipelineConfig().with_overrides({"audio.duration": 1.0, "augment.variants": 1, "extract.batch_rows": 4})
    url = str(tmp_path / "f.zarr")
    runner = dask_runner(workers=2)
    first = extract_features.with_options(task_runner=runner)(str(root), url, cfg.model_dump(mode="json"),
                                                              show_progress=False)
    assert first["clips"] == 16 and first["skipped"] == 1
    n_train_clips = first["rows"] - first["clips"]  # one augmented copy per training clip
    assert first["computed_rows"] == first["rows"] == 16 + n_train_clips
    assert first["failed_rows"] >= 1 and all("03-01-05-01-01-01-03.wav" in f["path"] for f in first["failures"])
    assert first["clips_per_second"] > 0
    store = FeatureStore(url, first["group"])
    counts = store.counts()
    assert counts["pending"] == 0 and counts["failed"] == first["failed_rows"]
    assert store.open().attrs["complete"] is True

    second = extract_features.with_options(task_runner=dask_runner(workers=1))(
        str(root), url, cfg.model_dump(mode="json"), show_progress=False)
    assert second["computed_rows"] == 0 and second["group"] == first["group"]
