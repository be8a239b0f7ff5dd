"""The body of one extraction task: a chunk-aligned range of store rows -> features written.

Arguments and results are small (a URL, a group name, two row indices; counts and failure
reasons), so the Prefect/Dask task that calls this never ships arrays. The row plan and the
configuration are read from the store itself.
"""

from __future__ import annotations

import os
import threading
import time

import fsspec
import numpy as np
import soundfile as sf

from ser_tasks.config import AudioConfig, AugmentConfig, FeatureConfig
from ser_tasks.signal import audio, augment, features
from ser_tasks.signal.augment import NO_AUGMENTATION, AugmentParams, variant_rng
from ser_tasks.store.zarr_store import DONE, FAILED, PENDING, FeatureStore, read_strings


def clip_features(y: np.ndarray, audio_cfg: AudioConfig, feat_cfg: FeatureConfig, params: AugmentParams,
                  noise_rng: np.random.Generator, trim: bool = True) -> dict[str, np.ndarray]:
    """Features of one (already decoded, resampled) clip under one variant's parameters.

    Steps: trim silence (unless ``trim`` is false: the caller took :func:`ser_tasks.signal.audio.speech`
    once for all of a clip's variants) -> speed/stretch/pitch (length-changing) -> fix length ->
    shift/gain/noise -> features.
    Shapes as :func:`ser_tasks.signal.features.feature_shapes`.
    """
    sr = audio_cfg.sample_rate
    if trim:
        y = audio.trim_silence(y, audio_cfg.trim_top_db)
    y = augment.augment_before_length(y, sr, params)
    speech = audio.speech_span(y.shape[0], audio_cfg.n_samples)
    y = audio.fix_length(y, audio_cfg.n_samples)
    y = augment.augment_after_length(y, sr, params, noise_rng)
    return features.extract(y, sr, feat_cfg, speech=speech)


# Held while warm_up runs in a worker's background thread: a task that arrives meanwhile waits for
# it rather than compile the same numba kernels alongside it (numba warns of a repeated compile).
_WARMING = threading.Lock()
# What this process has warmed up for: (audio settings, feature settings, augment). A worker forked
# from the warmed-up forkserver (flows.engine.forkserver) inherits it and skips its own warm-up.
_WARMED: set[tuple[str, str, bool]] = set()

#: Every transform applied, so that :func:`warm_up` reaches every kernel a variant can use.
WARM_UP_PARAMS = AugmentParams(noise_snr_db=20.0, pitch_semitones=1.0, stretch_rate=1.1, shift_seconds=0.1,
                               gain_db=-3.0)


def warm_up(audio_cfg: AudioConfig | None = None, feat_cfg: FeatureConfig | None = None,
            augment: bool = True) -> float:
    """Put one synthetic clip through decoding, resampling, every augmentation and every feature.

    A fresh process otherwise pays for what librosa loads on first use during its first real clips:
    ``scipy.interpolate`` imports (the phase vocoder) and numba kernels read from their cache, which
    made a worker's first 64 rows about four times slower than the next (docs/benchmarks.md,
    "Measurements behind the code"). Run once per
    worker, before its first task (:mod:`ser_tasks.runtime.worker_setup`) or before a benchmark's clock.

    The clip: 1 s of a 220 Hz tone at twice ``audio_cfg.sample_rate``, written as WAV to fsspec's
    in-process ``memory://`` filesystem and read back through :func:`ser_tasks.signal.audio.load_audio`.
    Its features are discarded. A pretrained encoder (``features.encoder``) is not built here: see the code.

    Args:
        audio_cfg: the audio settings to warm up for (defaults when ``None``).
        feat_cfg: the feature settings to warm up for (defaults when ``None``).
        augment: also apply every augmentation (:data:`WARM_UP_PARAMS`). ``False`` when the run
            computes originals only: augmentation alone loads ``scipy.interpolate`` and its numba
            kernels, which such a worker never uses.

    Returns:
        Seconds taken (wall clock); 0.0 when this process (or the forkserver it was forked from)
        already warmed up for the same settings, or for them with augmentation.
    """
    audio_cfg, feat_cfg = audio_cfg or AudioConfig(), feat_cfg or FeatureConfig()
    # Not the encoder: a forkserver warms up before it forks the workers, and TensorFlow's thread
    # pools do not survive a fork. Each worker builds the encoder on its first clip instead.
    feat_cfg = feat_cfg.model_copy(update={"encoder": None})
    key = (audio_cfg.model_dump_json(), feat_cfg.model_dump_json())
    with _WARMING:
        if (*key, True) in _WARMED or (*key, augment) in _WARMED:
            return 0.0
        seconds = _warm_up(audio_cfg, feat_cfg, WARM_UP_PARAMS if augment else NO_AUGMENTATION)
        _WARMED.add((*key, augment))
        return seconds


def _warm_up(audio_cfg: AudioConfig, feat_cfg: FeatureConfig, params: AugmentParams) -> float:
    t0 = time.perf_counter()
    rate = 2 * audio_cfg.sample_rate  # not the target rate, so the resampler loads too
    tone = (0.1 * np.sin(2 * np.pi * 220.0 * np.arange(rate) / rate)).astype(np.float32)
    path = f"memory://ser-warm-up-{os.getpid()}.wav"
    with fsspec.open(path, "wb") as fh:
        sf.write(fh, tone, rate, format="WAV")
    try:
        y = audio.speech(audio.load_audio(path, audio_cfg.sample_rate), audio_cfg, path)
    finally:
        fsspec.filesystem("memory").rm(path)
    clip_features(y, audio_cfg, feat_cfg, params, np.random.default_rng(0), trim=False)
    return time.perf_counter() - t0


def process_region(url: str, group: str, start: int, stop: int, storage_options: dict | None = None) -> dict:
    """Compute and write the features of store rows ``start:stop`` (whole chunks).

    Each distinct clip in the range is decoded once; a clip that fails marks its rows failed with
    the reason and the rest of the range carries on. Rows no longer pending are copied as stored.

    Returns:
        ``{"start", "stop", "rows" (computed now), "clips" (distinct clips computed now), "clip_ids"
        (those clips), "done",
        "failed" (of those rows), "failures": [{"path", "clip_id", "variant", "reason"}], "seconds"}``.

    Raises:
        OSError and zarr errors from reading or writing the store (transient: the caller retries).
    """
    with _WARMING:  # free unless this worker is still warming up
        pass
    t0 = time.perf_counter()
    store = FeatureStore(url, group, storage_options)
    g = store.open()
    cfg = g.attrs["config"]
    audio_cfg, aug_cfg = AudioConfig(**cfg["audio"]), AugmentConfig(**cfg["augment"])
    feat_cfg = FeatureConfig.stored(cfg["features"])
    paths = read_strings(g["path"], slice(start, stop))
    clip_ids = read_strings(g["clip_id"], slice(start, stop))
    variants = g["variant"][start:stop]
    params = g["augment"][start:stop]
    n = stop - start
    # Rows already finished (the head of a chunk an appending run grew) are copied, not recomputed:
    # the task must still write whole chunks.
    status = g["status"][start:stop].astype(np.int8)
    errors = list(read_strings(g["error"], slice(start, stop)))
    kept = status != PENDING
    out = {name: (g[name][start:stop] if kept.any() else np.full((n, *g[name].shape[1:]), np.nan, dtype=np.float32))
           for name in features.feature_names(feat_cfg)}
    todo = np.flatnonzero(~kept)
    status[todo] = DONE
    failures = []
    decoded: dict[str, np.ndarray | Exception] = {}
    for i in todo:
        path = str(paths[i])
        if path not in decoded:
            try:
                y = audio.load_audio(path, audio_cfg.sample_rate, storage_options)
                decoded = {path: audio.speech(y, audio_cfg, path)}  # trimmed once for every variant
            except audio.AudioError as exc:
                decoded = {path: exc}
        y = decoded[path]
        try:
            if isinstance(y, Exception):
                raise y
            rng = variant_rng(aug_cfg.seed, str(clip_ids[i]), int(variants[i]), stream=1)
            feats = clip_features(y, audio_cfg, feat_cfg, AugmentParams.from_array(params[i]), rng, trim=False)
            for name, value in feats.items():
                out[name][i] = value
        except Exception as exc:  # one bad clip must not sink the batch
            status[i] = FAILED
            reason = str(exc) if isinstance(exc, audio.AudioError) else f"{path}: {type(exc).__name__}: {exc}"
            errors[i] = reason
            if int(variants[i]) == 0 or not failures or failures[-1]["path"] != path:
                failures.append({"path": path, "clip_id": str(clip_ids[i]), "variant": int(variants[i]),
                                 "reason": reason})
    store.write_region(start, stop, out, status, errors)
    computed = sorted({str(c) for c in clip_ids[todo]})
    return {"start": start, "stop": stop, "rows": int(todo.size), "clips": len(computed), "clip_ids": computed,
            "done": int((status[todo] == DONE).sum()), "failed": int((status[todo] == FAILED).sum()),
            "failures": failures, "seconds": time.perf_counter() - t0}


def extraction_summary(manifest, store: FeatureStore, results: list[dict], failures, rows_total: int,
                       variants: int, seconds: float) -> dict:
    """The summary of one extraction run, as ``ser extract --summary-json`` writes it.

    Args:
        manifest: the :class:`ser_tasks.corpus.manifest.Manifest` extracted (its notes include the split's).
        store: the store group written.
        results: what each :func:`process_region` call returned.
        failures: the group's failed rows (:meth:`ser_tasks.store.zarr_store.FeatureStore.failures`).
        rows_total: rows in the group.
        variants: augmented copies per training clip.
        seconds: wall time of the run.

    Returns:
        ``corpus``, ``clips``, ``skipped``, ``speakers``, ``rows``, ``appended_rows``,
        ``variants_per_train_clip``, ``computed_rows``, ``computed_clips``, ``failed_rows``,
        ``failures`` (``[{path, clip_id, variant, reason}]``), ``seconds``, ``clips_per_second``,
        ``rows_per_second``, ``store`` (credentials redacted), ``group``, ``manifest_fingerprint``,
        ``split_notes``.
    """
    from ser_tasks.remote import redact_url

    computed = sum(r["rows"] for r in results)
    # distinct clips: a clip whose copies straddle two tasks is decoded in both, but counts once
    computed_clips = len(set().union(*(r.get("clip_ids", ()) for r in results)))
    return {
        "corpus": manifest.corpus, "clips": len(manifest.clips), "skipped": len(manifest.skipped),
        "speakers": int(manifest.clips["speaker"].nunique()), "rows": rows_total, "appended_rows": store.appended_rows,
        "variants_per_train_clip": variants, "computed_rows": computed, "computed_clips": computed_clips,
        "failed_rows": len(failures), "failures": failures.to_dict("records"),
        "seconds": round(seconds, 3),
        "clips_per_second": round(computed_clips / seconds, 3) if computed else 0.0,
        "rows_per_second": round(computed / seconds, 3) if computed else 0.0,
        "store": redact_url(store.url), "group": store.group, "manifest_fingerprint": manifest.fingerprint(),
        "split_notes": manifest.notes,
    }


def log_extraction(manifest, failures, summary: dict) -> None:
    """Log the manifest, skipped files, split and failures (CSV) and extraction figures to the active run.

    MLflow is imported here, not at the top: extraction workers import this module and need it not.
    """
    import mlflow

    from ser_tasks.corpus.split import split_table

    mlflow.log_text(manifest.clips.to_csv(index=False), "data/manifest.csv")
    mlflow.log_text(manifest.skipped.to_csv(index=False), "data/skipped.csv")
    mlflow.log_text(split_table(manifest.clips).to_csv(index=False), "data/split.csv")
    mlflow.log_text(failures.to_csv(index=False), "data/failures.csv")
    mlflow.log_metrics({
        "extract_seconds": summary["seconds"], "extract_clips_per_second": summary["clips_per_second"],
        "extract_failed_rows": summary["failed_rows"], "skipped_files": summary["skipped"],
        "extract_computed_rows": summary["computed_rows"], "extract_appended_rows": summary["appended_rows"],
        "clips": summary["clips"], "rows": summary["rows"],
    })
