"""Dask worker preload: warm a worker up for extraction while it waits for its first task.

    dask worker tcp://scheduler:8786 --nthreads 1 --preload ser_tasks.worker_setup

The LocalCluster that the pipeline starts (:func:`flows.extract.dask_runner`) preloads this module,
so the warm-up (:func:`ser_tasks.extract.warm_up`: about 3 s of imports and numba kernels per
process) overlaps the flow's manifest and store planning instead of lengthening the first task.
It runs in a background thread, so the worker registers with its scheduler at once; a task that
arrives before it ends waits for it (:func:`ser_tasks.extract.process_region`).
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)


def _warm_up() -> None:
    from .extract import warm_up

    try:
        logger.debug("extraction warm-up took %.2f s", warm_up())
    except Exception:  # a warm-up failure must never stop a worker; its first task will report the cause
        logger.warning("extraction warm-up failed", exc_info=True)


def dask_setup(worker: object) -> None:
    """Dask's preload hook: begin the warm-up in a daemon thread named ``ser-warm-up``.

    Dask calls it once, in the worker's process, at start.
    """
    threading.Thread(target=_warm_up, name="ser-warm-up", daemon=True).start()
