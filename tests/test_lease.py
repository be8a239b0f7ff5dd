"""One writer per store group: the write lease on local disk and S3, and two extractions appending at once."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import make_ravdess_like
from ser_tasks.config import PipelineConfig
from ser_tasks.errors import StoreBusyError
from ser_tasks.runtime.devstack import free_port
from ser_tasks.store.lease import WriterLease
from ser_tasks.store.zarr_store import FeatureStore, group_name


def test_a_second_writer_stops_with_the_holder_named(tmp_path):
    url = str(tmp_path / "f.zarr")
    with WriterLease(url, "extract-a") as first:
        with pytest.raises(StoreBusyError) as err:
            WriterLease(url, "extract-a", wait_seconds=0).acquire()
        message = str(err.value)
        assert first.owner in message and "extract-a" in message and first.path in message
        assert "lease expires at" in message
        # another group of the same store is another lease
        with WriterLease(url, "extract-b", wait_seconds=0):
            pass
    assert first.holder() is None  # released on exit
    with WriterLease(url, "extract-a", wait_seconds=0):
        pass


def test_a_waiting_writer_gets_the_lease_when_the_holder_releases_it(tmp_path):
    url = str(tmp_path / "f.zarr")
    first = WriterLease(url, "extract-a").acquire()
    seen = []
    second = WriterLease(url, "extract-a", wait_seconds=30, poll_seconds=0.05, on_wait=seen.append)
    got = threading.Event()
    threading.Thread(target=lambda: (second.acquire(), got.set()), daemon=True).start()
    time.sleep(0.5)
    assert not got.is_set() and [h["owner"] for h in seen] == [first.owner]
    first.release()
    assert got.wait(10) and second.holder()["owner"] == second.owner
    second.release()


def test_an_expired_lease_of_a_dead_writer_is_broken(tmp_path, caplog):
    url = str(tmp_path / "f.zarr")
    dead = WriterLease(url, "extract-a", ttl_seconds=60)
    Path(dead.path).parent.mkdir(parents=True)
    Path(dead.path).write_text(json.dumps({"owner": "gone:1:x", "expires": time.time() - 1,
                                           "expires_at": "a second ago"}))
    with WriterLease(url, "extract-a", wait_seconds=0) as lease:
        assert lease.holder()["owner"] == lease.owner
    assert "breaking the expired write lease of gone:1:x" in caplog.text


def test_a_held_lease_is_renewed_past_its_time_to_live(tmp_path):
    url = str(tmp_path / "f.zarr")
    with WriterLease(url, "extract-a", ttl_seconds=0.6) as lease:
        first_expiry = lease.holder()["expires"]
        time.sleep(1.5)  # more than twice the time to live
        held = lease.holder()
        assert held["owner"] == lease.owner and held["expires"] > first_expiry and held["expires"] > time.time()
        with pytest.raises(StoreBusyError):
            WriterLease(url, "extract-a", wait_seconds=0).acquire()
        lease.check()


def test_a_writer_that_lost_its_lease_is_told_before_it_commits(tmp_path):
    url = str(tmp_path / "f.zarr")
    lease = WriterLease(url, "extract-a", ttl_seconds=60).acquire()
    Path(lease.path).write_text(json.dumps({"owner": "other:2:y", "expires": time.time() + 60}))
    lease.renew()
    with pytest.raises(StoreBusyError, match="lost the write lease"):
        lease.check()
    lease.release()
    assert lease.holder()["owner"] == "other:2:y"  # not ours: left in place


def test_the_lease_is_created_atomically_on_s3():
    import s3fs
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        options = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}}
        s3fs.S3FileSystem(**options).mkdir("leases")
        url = "s3://leases/features.zarr"
        with WriterLease(url, "extract-a", options) as lease:
            assert lease.holder()["owner"] == lease.owner
            with pytest.raises(StoreBusyError, match=lease.owner):
                WriterLease(url, "extract-a", options, wait_seconds=0).acquire()
        assert lease.holder() is None
    finally:
        server.stop()


WRITER = """
import json, sys
from prefect.task_runners import ThreadPoolTaskRunner
from flows.extract import extract_features
cfg = json.loads(sys.argv[3])
out = extract_features.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))(
    sys.argv[1], sys.argv[2], cfg, show_progress=False)
print(json.dumps({"computed_rows": out["computed_rows"]}))
"""


@pytest.mark.slow
def test_two_extractions_appending_different_new_files_to_one_group_take_turns(tmp_path, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    from flows.extract import extract_features

    cfg = PipelineConfig().with_overrides({"audio.duration": 1.0, "augment.variants": 1, "extract.batch_rows": 4,
                                           "extract.lease_wait_seconds": 120})
    base = make_ravdess_like(tmp_path / "base", actors=(1, 2, 3, 4), takes=2)
    url = str(tmp_path / "f.zarr")
    first = extract_features(str(base), url, cfg, show_progress=False)
    roots = []
    for name, actor in (("a", 5), ("b", 6)):  # the same clips, plus one new actor each
        root = make_ravdess_like(tmp_path / name, actors=(1, 2, 3, 4, actor), takes=2)
        roots.append(root)
    # Hold the lease here while both start, so they overlap: both must wait, then take turns.
    held = WriterLease(url, group_name(cfg)).acquire()
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(Path(__file__).parents[1])}
    logs = [tmp_path / f"writer-{i}.log" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), url, json.dumps(cfg.model_dump(mode="json"))],
                              stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env=env)
             for root, log in zip(roots, logs, strict=True)]
    waiting = f"is being written by {held.owner}"
    deadline = time.monotonic() + 120
    while not all(waiting in log.read_text() for log in logs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            "\n".join(log.read_text()[-2000:] for log in logs)
        time.sleep(0.5)
    held.release()
    outs = [p.communicate(timeout=240)[0] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log.read_text()[-3000:]
    store = FeatureStore.locate(url)
    view = store.view()
    table = view.provenance()
    speakers = set(table["speaker"])
    assert {"ravdess:05", "ravdess:06"} <= speakers  # each run's new actor is in
    assert not table.duplicated(["clip_id", "variant"]).any()
    assert view.counts()["pending"] == 0 and view.counts()["failed"] == 0
    computed = [json.loads(out.strip().splitlines()[-1])["computed_rows"] for out in outs]
    # every row computed exactly once: the base run's, then each new actor's rows by one run
    assert first["computed_rows"] + sum(computed) == view.counts()["rows"]
    assert all(c > 0 for c in computed)
