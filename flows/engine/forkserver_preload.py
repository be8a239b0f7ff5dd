"""Imported once by the forkserver of local Dask workers (:mod:`flows.engine.forkserver`), never by a worker.

It imports what every worker imports (Dask's worker, Prefect's task engine) and, unless
``SER_WARM_UP`` is ``none`` (a cluster that only trains), the extraction flow's module with
librosa, numba and zarr, and warms up as ``SER_WARM_UP`` says. Each worker forked from the server
starts with all of that done. It starts no thread: the server forks, and a fork copies only the
thread that calls it.
"""

import logging
import os

import distributed.nanny  # noqa: F401
import prefect.task_engine  # noqa: F401

from ser_tasks.runtime.worker_setup import WARM_UP_ENV

_mode = os.environ.get(WARM_UP_ENV, "augment")
if _mode != "none":
    import flows.extract  # noqa: F401
    from ser_tasks.store import extraction

    try:
        extraction.warm_up(augment=_mode == "augment")
    except Exception:  # a worker that starts cold still works; its first task reports any real cause
        logging.getLogger(__name__).warning("forkserver warm-up failed", exc_info=True)
