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
}


def apply() -> None:
    """Set each of :data:`DEFAULTS` that the environment does not already set."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
