"""Dask worker preload: warm a worker up for extraction while it waits for its first task.

    dask worker tcp://scheduler:8786 --nthreads 1 --preload ser_tasks.runtime.worker_setup

The LocalCluster that the pipeline starts (:func:`flows.extract.dask_runner`) preloads this module,
so the warm-up (:func:`ser_tasks.store.extraction.warm_up`: about 3 s of imports and numba kernels per
process) overlaps the flow's manifest and store planning instead of lengthening the first task.
It runs in a background thread, so the worker registers with its scheduler at once; a task that
arrives before it ends waits for it (:func:`ser_tasks.store.extraction.process_region`).

The worker's environment variable ``SER_WARM_UP`` (:data:`WARM_UP_ENV`) says how much to warm:
``augment`` (the default: features and every augmentation), ``features`` (a run without
augmented copies: no ``scipy.interpolate``, no augmentation kernels) or ``none`` (a cluster that only
trains). :func:`flows.extract.dask_runner` sets it on the workers it starts.
"""

from __future__ import annotations

import logging
import os
import threading

logger = logging.getLogger(__name__)

#: The worker environment variable that chooses the warm-up, and its values.
WARM_UP_ENV = "SER_WARM_UP"
WARM_UP_MODES = ("augment", "features", "none")


def warm_up_for(cfg) -> str:
    """The warm-up an extraction with ``cfg`` (a :class:`ser_tasks.config.PipelineConfig`) needs.

    ``features`` when ``cfg.augment.variants`` is 0 (no augmented copies), else ``augment``.
    """
    return "augment" if cfg.augment.variants else "features"


def _warm_up(mode: str) -> None:
    from ser_tasks.store.extraction import warm_up

    try:
        logger.debug("extraction warm-up (%s) took %.2f s", mode, warm_up(augment=mode == "augment"))
    except Exception:  # a warm-up failure must never stop a worker; its first task will report the cause
        logger.warning("extraction warm-up failed", exc_info=True)


def dask_setup(worker: object) -> None:
    """Dask's preload hook: begin the warm-up in a daemon thread named ``ser-warm-up``.

    Dask calls it once, in the worker's process, at start. An unknown ``SER_WARM_UP`` value warms
    fully, with a warning (a worker must start whatever its environment says).
    """
    mode = os.environ.get(WARM_UP_ENV, "augment")
    if mode not in WARM_UP_MODES:
        logger.warning("%s=%r is not one of %s; warming up fully", WARM_UP_ENV, mode, ", ".join(WARM_UP_MODES))
        mode = "augment"
    if mode != "none":
        threading.Thread(target=_warm_up, args=(mode,), name="ser-warm-up", daemon=True).start()
