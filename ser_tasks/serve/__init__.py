"""Serving: the registered model and what runs it.

The raw-audio model (predict, model_code), the champion/challenger registry, bulk scoring on Dask
(bulk), the guarded HTTP server (server), scoring against labels (score), comparing runs (compare).
"""
