"""Row planning: which store rows a manifest becomes, before anything is extracted.

One row per (clip, variant), in store order, with the augmentation parameters drawn per row
(:func:`plan_rows`, :func:`with_params`); and, for a store that already exists, the split each
speaker already has there (:func:`planned_splits`). :mod:`ser_tasks.store.zarr_store` writes what is planned
here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ser_tasks.config import PipelineConfig
from ser_tasks.corpus.split import SPLITS, split_groups
from ser_tasks.errors import InputError
from ser_tasks.store.zarr_store import with_params


def plan_rows(clips: pd.DataFrame, config: PipelineConfig, params: bool = True) -> pd.DataFrame:
    """One row per (clip, variant): each clip's original and its augmented copies.

    Every clip's original, plus ``augment.variants`` copies of each training clip (of every clip
    when ``augment.scope`` is ``"all"``), with their drawn augmentation parameters.

    Args:
        clips: manifest rows with a ``split`` column.
        config: the pipeline settings: ``split.seed`` shuffles the rows within each split, and
            ``augment`` sets the copies and draws their parameters.
        params: draw the augmentation parameters now. ``False`` leaves them out; then
            :meth:`ser_tasks.store.zarr_store.FeatureStore.create_or_resume` draws them for the rows it writes
            only, so a rerun with nothing new draws none.

    Returns:
        Columns ``clip_id, path, speaker, emotion, split, variant`` and (with ``params``) one per
        :data:`ser_tasks.signal.augment.PARAM_NAMES`, in store order.

    Raises:
        InputError: no ``split`` column.
    """
    if "split" not in clips:
        raise InputError("assign a split before planning the store rows")
    rng = np.random.default_rng(config.split.seed)
    parts = []
    for split in SPLITS:
        part = clips[clips["split"] == split].sort_values("clip_id")
        parts.append(part.iloc[rng.permutation(len(part))])
    ordered = pd.concat(parts, ignore_index=True)
    augmented = (ordered["split"] == "train").to_numpy() | (config.augment.scope == "all")
    repeats = 1 + np.where(augmented, config.augment.variants, 0)
    plan = ordered.loc[ordered.index.repeat(repeats), ["clip_id", "path", "speaker", "emotion", "split"]]
    plan = plan.reset_index(drop=True)
    plan["speaker"] = plan["speaker"].map(lambda s: s if isinstance(s, str) else "")
    plan["variant"] = np.concatenate([np.arange(n) for n in repeats]) if len(repeats) else np.empty(0, int)
    return with_params(plan, config) if params else plan


def planned_splits(url: str, config: PipelineConfig, storage_options: dict | None = None) -> dict[str, str]:
    """The split each speaker group already has in the store group for ``config``.

    Speaker groups as :func:`ser_tasks.corpus.split.split_groups` makes them; ``{}`` when there is no such
    group yet. A grown corpus keeps its speakers' sides, so a rerun only appends rows.

    Args:
        url: the store's path or URL.
        config: the pipeline settings (their extraction fingerprint names the group).
        storage_options: fsspec options for a remote store.
    """
    from ser_tasks.store.zarr_store import FeatureStore, group_name  # the store writes what this plans

    try:
        g = FeatureStore(url, group_name(config), storage_options).open()
    except FileNotFoundError:
        return {}
    return _splits_in(g)


def _splits_in(g) -> dict[str, str]:
    """Speaker group -> split name, as the store group ``g`` records them (see :func:`planned_splits`)."""
    from ser_tasks.store.zarr_store import read_strings

    n = int(g.attrs["rows"])
    rows = pd.DataFrame({"clip_id": read_strings(g["clip_id"], slice(0, n)),
                         "speaker": read_strings(g["speaker"], slice(0, n))}).replace({"speaker": {"": None}})
    return dict(zip(split_groups(rows), np.asarray(SPLITS, dtype=object)[g["split"][:n]], strict=True))


def up_to_date(root: str | list[str], url: str, config: PipelineConfig, corpus: str | None = None,
               storage_options: dict | None = None, crema_demographics: str | None = None) -> dict | None:
    """The summary of an extraction with nothing to do, or ``None`` when there is work (or no group yet).

    Nothing to do: the store group for ``config`` was finalised for this very manifest (same clips,
    speakers, emotions and splits: :meth:`ser_tasks.corpus.manifest.Manifest.fingerprint`) and holds no
    pending row. This needs the manifest and the group's labels only, so ``ser extract`` answers
    without a Prefect server, a Dask cluster or MLflow (whose start-up is most of a no-op run's
    time: docs/benchmarks.md), and records no run.

    Args:
        root: corpus folder(s) or URL(s), as for :func:`ser_tasks.corpus.manifest.build_manifest`.
        url: the store's path or URL.
        config: the pipeline settings (their extraction fingerprint names the group).
        corpus: corpus name, or ``None`` to detect.
        storage_options: fsspec options for remote roots and stores.
        crema_demographics: CREMA-D ``VideoDemographics.csv`` for the speakers' sex.

    Returns:
        :func:`ser_tasks.store.extraction.extraction_summary` of a run that computed nothing, or ``None``.

    Raises:
        InputError: as :func:`ser_tasks.corpus.manifest.build_manifest` (no clips, unknown corpus, ...).
    """
    import time

    from ser_tasks.corpus.manifest import build_manifest
    from ser_tasks.corpus.split import assign_split
    from ser_tasks.store.extraction import extraction_summary
    from ser_tasks.store.zarr_store import FeatureStore, group_name

    t0 = time.perf_counter()
    manifest = build_manifest(root, corpus, storage_options, crema_demographics, config.manifest)
    store = FeatureStore(url, group_name(config), storage_options)
    try:
        g = store.open()  # once: the splits, the attributes and the view below share it
    except FileNotFoundError:
        return None
    manifest.clips, notes = assign_split(manifest.clips, config.split, fixed=_splits_in(g))
    manifest.notes += notes
    if g.attrs.get("complete") is not True or g.attrs.get("manifest_fingerprint") != manifest.fingerprint():
        return None
    view = store.view()
    if view.counts()["pending"]:
        return None
    return extraction_summary(manifest, store, [], view.failures(), int(g.attrs["rows"]), config.augment.variants,
                              time.perf_counter() - t0)
