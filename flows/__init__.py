"""Prefect flows of the SER pipeline; the work itself lives in :mod:`ser_tasks`.

- :func:`flows.extract.extract_features`: corpus -> manifest -> split -> Zarr features (Dask).
- :func:`flows.train.train_model`: Zarr -> Keras model -> test scores, logged to MLflow.
- :func:`flows.pipeline.ser_pipeline`: both, under one MLflow run.
"""

import os

# Without network Prefect's telemetry only logs errors (NOTES.md); TensorFlow's C++ banner is noise.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Dask's per-worker INFO lines (nanny start/stop, ...) drown the pipeline's own log; workers inherit this.
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
