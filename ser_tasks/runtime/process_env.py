"""Process-wide environment defaults, applied before Prefect, Dask or TensorFlow are imported.

Without network, Prefect's telemetry only logs errors (NOTES.md); TensorFlow's C++ banner and
Dask's per-worker INFO lines (nanny start/stop) drown the pipeline's own log; Dask's statistical
profiler costs CPU for a dashboard the local cluster does not run. Worker processes
inherit the environment, so setting it once in the parent covers them. Existing values win.
"""

import os

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "DASK_LOGGING__DISTRIBUTED": "warning",
    # Dask workers sample their threads' stacks every 10 ms for the dashboard's profile page, and
    # fold the samples in each second (linecache lookups over librosa's deep stacks). The
    # LocalCluster runs without a dashboard, so nobody sees the profile: 12 % of a worker's CPU
    # (13.4 against 11.5 CPU-s for 580 rows). Workers of an external cluster keep their own config.
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
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
