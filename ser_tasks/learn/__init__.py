"""Learning: from the store's rows to a scored model.

Model input kinds (inputs), the training feed (data), the models, training and evaluation
(training), training jobs on Dask (jobs), cross-validation folds (folds), sweep grids (grid), metrics
(UA, WA, macro-F1) and MLflow tracking (tracking).
"""
