"""Learning: from the store's rows to a scored model.

The training feed (data: a row reader, an epoch sampler, mixup), the model bodies and their layers
(models; the catalogue of inputs and models is :mod:`ser_tasks.zoo`), training and evaluation
(training), training jobs on Dask (jobs), cross-validation folds (folds), sweep grids (grid),
metrics (UA, WA, macro-F1) and MLflow tracking (tracking).
"""
