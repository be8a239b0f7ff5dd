"""Prefect flows of the SER pipeline; the work itself lives in :mod:`ser_tasks`.

- :func:`flows.extract.extract_features`: corpus -> manifest -> split -> Zarr features (Dask);
  :func:`flows.extract.ser_extract` runs it in an MLflow run of its own (``ser extract``).
- :func:`flows.train.train_model`: Zarr -> Keras model -> test scores, logged to MLflow.
- :func:`flows.pipeline.ser_pipeline`: both, under one MLflow run.
"""

from ser_tasks.runtime import process_env

process_env.apply()
