"""Local Dask workers forked from the warmed-up forkserver (flows.engine.forkserver)."""

from __future__ import annotations

import multiprocessing.forkserver
import os
import subprocess
import sys

import pytest
from distributed import Client, LocalCluster

from flows.engine import forkserver


def _worker_view() -> dict:
    import os
    import sys

    import prefect.settings

    from ser_tasks.store.extraction import warm_up

    return {"ppid": os.getppid(), "librosa": "librosa" in sys.modules, "mlflow": "mlflow" in sys.modules,
            "warm_up_s": warm_up(augment=False), "late": os.environ.get("SER_TEST_LATE"),
            "api": prefect.settings.PREFECT_API_URL.value()}


def _one_worker() -> dict:
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      env=forkserver.worker_env()) as cluster, Client(cluster) as client:
        return next(iter(client.run(_worker_view).values()))


def test_preload_imports_and_warms_up_without_starting_a_thread():
    """The server forks: a thread started by its preload would not exist in the workers (and a lock
    it held would stay held), so the preload must leave the main thread alone."""
    code = ("import sys, threading, flows.engine.forkserver_preload\n"
            "from ser_tasks import extract\n"
            "print(threading.active_count(), len(extract._WARMED), 'librosa' in sys.modules,\n"
            "      'mlflow' in sys.modules, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "SER_WARM_UP": "features"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "True", "False", "False"]


def test_workers_are_forked_warm_and_see_the_environment_of_now(monkeypatch):
    """A worker is a child of the server, starts with librosa imported and warmed up (its own
    warm-up is free), and sees a variable set after the server started; the server is reused. A changed Prefect API URL
    (read when Prefect is imported) restarts the server, so no worker runs on the stale one."""
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert forkserver.start("features")
    first = multiprocessing.forkserver._forkserver._forkserver_pid
    monkeypatch.setenv("SER_TEST_LATE", "1")
    assert forkserver.start("features")  # an unrelated change keeps the server
    assert multiprocessing.forkserver._forkserver._forkserver_pid == first
    view = _one_worker()
    assert view == {"ppid": first, "librosa": True, "mlflow": False, "warm_up_s": 0.0, "late": "1",
                    "api": "http://127.0.0.1:9/api"}
    # the Nanny wrote Dask's pre-spawn variables into this process's environment: not a change
    assert forkserver.start("augment")
    assert multiprocessing.forkserver._forkserver._forkserver_pid == first

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:10/api")
    assert forkserver.start("features")
    second = multiprocessing.forkserver._forkserver._forkserver_pid
    assert second != first
    view = _one_worker()
    assert (view["ppid"], view["api"], view["late"]) == (second, "http://127.0.0.1:10/api", "1")


@pytest.mark.parametrize(("started", "now", "stale"), [
    ({"A": "1"}, {"A": "1", "MLFLOW_TRACKING_URI": "x"}, False),
    ({"A": "1"}, {"A": "2"}, False),
    ({"A": "1"}, {"A": "1", "PREFECT_API_URL": "x"}, True),
    ({"A": "1", "DASK_X": "1"}, {"A": "1", "DASK_X": "2"}, True),
    ({"A": "1", "B": "1"}, {"A": "1"}, True),
])
def test_only_import_time_variables_or_removals_restart_the_server(started, now, stale):
    assert forkserver._stale(started, now) is stale


def test_unknown_warm_up_is_rejected():
    with pytest.raises(ValueError, match="warm_up 'all' is not one of augment, features, none"):
        forkserver.start("all")
