"""Process-wide environment defaults, applied before Prefect, Dask or TensorFlow are imported.

Without network, Prefect's telemetry only logs errors (NOTES.md); TensorFlow's C++ banner and
Dask's per-worker INFO lines (nanny start/stop) drown the pipeline's own log. Worker processes
inherit the environment, so setting it once in the parent covers them. Existing values win.
"""

import os

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "DASK_LOGGING__DISTRIBUTED": "warning",
    # glibc malloc in Dask workers. The nanny sets MALLOC_TRIM_THRESHOLD_=65536 unless the
    # environment sets it. Any trim threshold also freezes the mmap threshold at 128 KiB, so every
    # audio-sized array was mmapped, page-faulted and unmapped again: 30x the page faults and 42 %
    # more CPU for the same extraction (28.1 against 19.8 CPU-s for 840 rows). Heap allocations up
    # to 32 MiB, and trimming past 128 MiB free, measured 18.0 CPU-s.
    "MALLOC_TRIM_THRESHOLD_": "134217728",
    "MALLOC_MMAP_THRESHOLD_": "33554432",
}


def apply() -> None:
    """Set each of :data:`DEFAULTS` that the environment does not already set."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
