"""Local Dask workers forked from one warmed-up process instead of each started from scratch.

A spawned worker process imports Dask's worker machinery, Prefect's task engine, librosa, numba,
zarr and the extraction code, then warms up (:func:`ser_tasks.store.extraction.warm_up`): about 1.7
CPU-seconds per worker before its first clip (docs/decisions.md, D15). Python's
``forkserver`` start method pays that once per command: a server process imports :data:`PRELOAD`
(which warms up) and every worker is a fork of it. lhotse's worker pool gets the same from
``fork``; forking the command's own process instead is unsafe (its threads: Prefect's, Dask's).

:func:`start` sets Dask's ``distributed.worker.multiprocessing-method`` to ``forkserver`` for this
process and starts the server at once, so its imports overlap whatever the caller does next. A
forked worker has the server's environment, not its parent's of the moment, so:

* variables set or changed in this process since the server started reach a worker through the
  Nanny's ``env`` (:func:`worker_env`; :func:`flows.extract.dask_runner` passes them);
* a change to a variable that a preloaded library reads when imported (:data:`IMPORT_TIME_PREFIXES`:
  Prefect's settings, Dask's, numba's, zarr's, the BLAS threads, glibc's malloc, Python's own), or a
  removed variable, restarts the server, so a worker never runs on a stale Prefect API URL.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os

import dask

from ser_tasks.runtime.worker_setup import WARM_UP_ENV, WARM_UP_MODES

#: Modules the server imports before its first fork (:mod:`flows.engine.forkserver_preload` warms up).
PRELOAD = ["flows.engine.forkserver_preload"]

#: Variables read when a preloaded library is imported: a change restarts the server.
IMPORT_TIME_PREFIXES = ("PREFECT_", "DASK_", "NUMBA_", "ZARR_", "OMP_", "MKL_", "OPENBLAS_", "MALLOC_",
                        "PYTHON", "LD_")

# The running server's environment, bar SER_WARM_UP: this process's when it started, plus the extras.
_started_env: dict[str, str] | None = None


def _server_extras(warm_up: str) -> dict[str, str]:
    """What a spawned worker's environment would add: Dask's pre-spawn variables and the warm-up."""
    import distributed  # noqa: F401  (registers the distributed.* defaults; the caller's runner imports it anyway)

    extras = {k: str(v) for k, v in (dask.config.get("distributed.nanny.pre-spawn-environ") or {}).items()}
    if os.environ.get("PYTHONHASHSEED") in (None, "0"):
        extras["PYTHONHASHSEED"] = "6640"  # as Dask's Nanny sets it for the workers it spawns
    extras[WARM_UP_ENV] = warm_up
    return {k: v for k, v in extras.items() if k == WARM_UP_ENV or k not in os.environ}


def _without_warm_up(extras: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in extras.items() if k != WARM_UP_ENV}


def _stale(started: dict[str, str], now: dict[str, str]) -> bool:
    """Whether a variable read at import time differs, or any variable was removed, since ``started``."""
    if set(started) - set(now):
        return True
    return any(started.get(k) != v for k, v in now.items() if k.startswith(IMPORT_TIME_PREFIXES))


def start(warm_up: str = "augment") -> bool:
    """Have this process's local Dask workers forked from a warmed-up server; start it now if needed.

    The server starts with this process's environment plus Dask's
    ``distributed.nanny.pre-spawn-environ`` (one BLAS thread, the trim threshold), Dask's worker hash
    seed, and ``SER_WARM_UP=warm_up``. It is reused while the environment allows (module
    docstring) and stops when this process ends. A later call with another ``warm_up`` reuses it:
    each worker still warms up what it lacks (:mod:`ser_tasks.runtime.worker_setup`).

    Args:
        warm_up: what the server warms up for: ``augment``, ``features`` or ``none``.

    Returns:
        ``True`` if workers will be forked from the server; ``False`` if they will be spawned
        (a stale server that this Python cannot stop: it has no ``ForkServer._stop``).

    Raises:
        ValueError: ``warm_up`` is not one of :data:`ser_tasks.runtime.worker_setup.WARM_UP_MODES`.
    """
    global _started_env
    if warm_up not in WARM_UP_MODES:
        raise ValueError(f"warm_up {warm_up!r} is not one of {', '.join(WARM_UP_MODES)}")
    now = dict(os.environ)
    extras = _server_extras(warm_up)
    if _started_env is not None:
        # compared as a server started now would have it (Dask's Nanny may have set the extras here)
        if not _stale(_started_env, {**now, **_without_warm_up(extras)}):
            dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
            return True
    if not stop():  # stale, or started without our preload (by a Dask cluster before any start())
        dask.config.set({"distributed.worker.multiprocessing-method": "spawn"})
        return False
    os.environ.update(extras)
    try:
        multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
        multiprocessing.forkserver.ensure_running()
    finally:
        for k in extras:
            if k in now:
                os.environ[k] = now[k]
            else:
                os.environ.pop(k, None)
    # What the server has, bar SER_WARM_UP: Dask's Nanny later sets the same pre-spawn variables
    # here (it writes them into its own process's environment), which must not read as a change.
    _started_env = {**now, **_without_warm_up(extras)}
    dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
    return True


def stop() -> bool:
    """Stop this process's forkserver, if one runs; the next :func:`start` starts a fresh one.

    Workers already forked from it keep running. This uses ``multiprocessing``'s ``ForkServer._stop``
    (CPython's own tests stop the server with it; there is no public call).

    Returns:
        ``False`` if this Python cannot stop a server (no ``ForkServer._stop``), else ``True``.
    """
    global _started_env
    stop_server = getattr(multiprocessing.forkserver._forkserver, "_stop", None)
    if stop_server is None:
        return _started_env is None
    stop_server()  # a no-op when none runs
    _started_env = None
    return True


def worker_env() -> dict[str, str]:
    """Variables set or changed in this process since the server started: a forked worker lacks them.

    Empty when no server was started here. Pass them as a LocalCluster's ``env``.
    """
    if _started_env is None:
        return {}
    return {k: v for k, v in os.environ.items() if _started_env.get(k) != v}
