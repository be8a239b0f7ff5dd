"""The SER library, one sub-package per step of the data flow (each imports only the ones above it here).

- ``errors``, ``config``, ``emotions``, ``remote``, ``zoo``: what every step shares (the error kinds,
  the pydantic configuration, the canonical emotion names, fsspec options for local paths and URLs,
  the catalogue of model inputs and models).
- :mod:`ser_tasks.corpus`: corpus recipes (one parser per corpus), the manifest, the speaker-independent split.
- :mod:`ser_tasks.signal`: decoding, augmentation, features (log-mel, MFCC, ZCR, RMS, F0) and the
  pretrained encoder.
- :mod:`ser_tasks.store`: the Zarr feature store, its plan, its writer lease, and one extraction task.
- :mod:`ser_tasks.learn`: the training feed, the models, training, cross-validation
  folds, sweep grids, metrics and MLflow tracking.
- :mod:`ser_tasks.serve`: the raw-audio model, the registry, bulk scoring, the guarded HTTP server.
- :mod:`ser_tasks.runtime`: the processes the pipeline runs in (environment, Dask worker set-up,
  the local service stack for tests and benchmarks).

The Prefect flows (:mod:`flows`) and the command line (:mod:`ser_cli`) sit on top; the library
imports neither.

Modules of the flat layout this package had until 2026-12 (``ser_tasks.predict``,
``ser_tasks.train``, ...) still import, with a ``DeprecationWarning``: a model registered before the
move runs ``from ser_tasks.predict import EmotionModel`` when it loads. ``ser_tasks.store`` and
``ser_tasks.serve`` are packages now, so their old modules are :mod:`ser_tasks.store.zarr_store`
and :mod:`ser_tasks.serve.server`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: Old flat module -> where it lives now.
MOVED = {
    "ser_tasks.corpora": "ser_tasks.corpus.corpora",
    "ser_tasks.manifest": "ser_tasks.corpus.manifest",
    "ser_tasks.split": "ser_tasks.corpus.split",
    "ser_tasks.audio": "ser_tasks.signal.audio",
    "ser_tasks.augment": "ser_tasks.signal.augment",
    "ser_tasks.features": "ser_tasks.signal.features",
    "ser_tasks.kernels": "ser_tasks.signal.kernels",
    "ser_tasks.encoder": "ser_tasks.signal.encoder",
    "ser_tasks.plan": "ser_tasks.store.plan",
    "ser_tasks.lease": "ser_tasks.store.lease",
    "ser_tasks.extract": "ser_tasks.store.extraction",
    "ser_tasks.inputs": "ser_tasks.zoo",
    "ser_tasks.data": "ser_tasks.learn.data",
    "ser_tasks.models": "ser_tasks.learn.models",
    "ser_tasks.jobs": "ser_tasks.learn.jobs",
    "ser_tasks.metrics": "ser_tasks.learn.metrics",
    "ser_tasks.tracking": "ser_tasks.learn.tracking",
    "ser_tasks.train": "ser_tasks.learn.training",
    "ser_tasks.crossval": "ser_tasks.learn.folds",
    "ser_tasks.sweep": "ser_tasks.learn.grid",
    "ser_tasks.predict": "ser_tasks.serve.predict",
    "ser_tasks.registry": "ser_tasks.serve.registry",
    "ser_tasks.score": "ser_tasks.serve.score",
    "ser_tasks.compare": "ser_tasks.serve.compare",
    "ser_tasks.model_code": "ser_tasks.serve.model_code",
    "ser_tasks.batch": "ser_tasks.serve.bulk",
    "ser_tasks.process_env": "ser_tasks.runtime.process_env",
    "ser_tasks.worker_setup": "ser_tasks.runtime.worker_setup",
    "ser_tasks.devstack": "ser_tasks.runtime.devstack",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old flat module name as its new module (the same module object, not a copy)."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):  # noqa: D102
        return None

    def exec_module(self, module):  # noqa: D102
        new = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} moved to {new}", DeprecationWarning, stacklevel=2)
        # the import system returns whatever sys.modules holds under the name once this returns
        sys.modules[module.__name__] = importlib.import_module(new)


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
