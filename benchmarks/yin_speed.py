"""YIN: ``librosa.yin`` against ``ser_tasks.signal.features.yin``, same values, on RAVDESS clips.

    .venv/bin/python benchmarks/yin_speed.py [--data ../shared/data] [--clips 240] [--repeats 3]
        [--out benchmarks/results/yin_speed.json]

One process, one thread (``OMP_NUM_THREADS`` and friends set to 1 before numpy loads). Clips:
every ``ravdess/**/*.flac`` or ``*.wav`` under ``--data`` (default ``$SER_TEST_DATA`` or
``../shared/data``), sorted, ``--clips`` of them spread evenly; each decoded, resampled to 16 kHz
and trimmed once (:func:`ser_tasks.signal.audio.speech`), then fixed to the store's 3 s. Before any clock:
``features.yin`` must equal ``librosa.yin`` (``array_equal``) on every clip, or the script exits.

Two measurements, each alternated old / new ``--repeats`` times, CPU seconds (``process_time``):

* ``yin_ms_per_clip``: the F0 call alone, on the store's frame (:func:`ser_tasks.signal.features.f0_frame_length`:
  512 samples) and hop (160 samples).
* ``row_ms_per_clip``: a whole unaugmented row's features (:func:`ser_tasks.store.extraction.clip_features`:
  log-mel, MFCC, ZCR, RMS, F0) with ``features.yin`` and with it replaced by ``librosa.yin``.

Writes ``--out`` (``date``, ``commit``, ``clips``, ``repeats``, each measurement's ``old`` and
``new`` runs and medians, ``new_over_old``) and prints it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import librosa  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ser_tasks.config import AudioConfig, FeatureConfig  # noqa: E402
from ser_tasks.signal import audio, features  # noqa: E402
from ser_tasks.signal.augment import AugmentParams  # noqa: E402
from ser_tasks.store import extraction  # noqa: E402


def librosa_yin(y: np.ndarray, sr: int, frame_length: int, hop_length: int, fmin: float = features.F0_FMIN,
                fmax: float = features.F0_FMAX, trough_threshold: float = 0.1,
                framed: features.Framed | None = None) -> np.ndarray:
    """``librosa.yin`` with :func:`ser_tasks.signal.features.yin`'s signature (the code before the change).

    ``framed`` is taken and not used: librosa frames the signal itself.
    """
    return librosa.yin(y, fmin=fmin, fmax=fmax, sr=sr, frame_length=frame_length, hop_length=hop_length,
                       trough_threshold=trough_threshold, center=True)


def alternate(fns: dict, clips: list[np.ndarray], repeats: int, call) -> dict:
    """CPU ms per clip of ``call(fn, clip)`` for each of ``fns``, alternated ``repeats`` times."""
    runs = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.process_time()
            for y in clips:
                call(fn, y)
            runs[name].append(round((time.process_time() - t0) / len(clips) * 1e3, 3))
    med = {name: float(np.median(r)) for name, r in runs.items()}
    return {"runs": runs, "median": med, "new_over_old": round(med["new"] / med["old"], 3)}


def interleaved_ms(old, new, inputs: list, repeats: int) -> dict[str, float]:
    """Wall ms per call of ``old`` and ``new``, called back to back on each input, their order swapped every repeat.

    Interleaving per input lets both sides share this machine's drift (tens of percent within
    minutes). Returns ``{"old_ms", "new_ms", "new_over_old"}``, each rounded to 3 decimals.
    """
    total = {"old": 0.0, "new": 0.0}
    for rep in range(repeats):
        order = (("old", old), ("new", new)) if rep % 2 == 0 else (("new", new), ("old", old))
        for x in inputs:
            for side, fn in order:
                t0 = time.perf_counter()
                fn(x)
                total[side] += time.perf_counter() - t0
    ms = {side: round(t / (repeats * len(inputs)) * 1e3, 3) for side, t in total.items()}
    return {"old_ms": ms["old"], "new_ms": ms["new"], "new_over_old": round(ms["new"] / ms["old"], 3)}


def write_result(path: str, fields: dict) -> None:
    """Write ``{"date", "commit", **fields}`` as indented JSON to ``path`` and print it."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    out = {"date": datetime.date.today().isoformat(), "commit": commit, **fields}
    Path(path).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


def clip_arguments(doc: str, repeats: int, out: str) -> tuple[argparse.Namespace, list[Path]]:
    """``--data``, ``--clips``, ``--repeats``, ``--out`` parsed, and ``--clips`` RAVDESS files spread evenly.

    Args:
        doc: the script's docstring (its first line describes the script).
        repeats: default ``--repeats``.
        out: default result file name under ``benchmarks/results/``.

    Returns:
        The arguments and the chosen files, sorted.

    Raises:
        SystemExit: no RAVDESS clip under ``--data``.
    """
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("SER_TEST_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--clips", type=int, default=240)
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / out))
    args = ap.parse_args()
    root = Path(args.data) / "ravdess"
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".flac", ".wav"))
    if not files:
        raise SystemExit(f"{root}: no RAVDESS clips (set --data or SER_TEST_DATA)")
    return args, [files[i] for i in np.linspace(0, len(files) - 1, min(args.clips, len(files))).astype(int)]


def main() -> None:
    """Parse the arguments, check equality, time both and write the JSON."""
    args, files = clip_arguments(__doc__, 3, "yin_speed.json")
    acfg, fcfg = AudioConfig(), FeatureConfig()
    sr, hop = acfg.sample_rate, fcfg.hop_length
    clips = [audio.fix_length(audio.speech(audio.load_audio(str(f), sr), acfg, str(f)), acfg.n_samples)
             for f in files]
    frame = features.f0_frame_length(sr)  # the store's: 512 samples at 16 kHz
    for f, y in zip(files, clips, strict=True):
        if not np.array_equal(features.yin(y, sr, frame, hop), librosa_yin(y, sr, frame, hop)):
            raise SystemExit(f"{f}: features.yin differs from librosa.yin")
    new = features.yin
    yin_fns = {"old": librosa_yin, "new": new}
    yin_ms = alternate(yin_fns, clips, args.repeats, lambda fn, y: fn(y, sr, frame, hop))
    params, rng = AugmentParams(), np.random.default_rng(0)

    def row(fn, y):
        features.yin = fn
        try:
            extraction.clip_features(y, acfg, fcfg, params, rng, trim=False)
        finally:
            features.yin = new

    row_ms = alternate(yin_fns, clips, args.repeats, row)
    write_result(args.out, {"clips": len(clips), "repeats": args.repeats, "equal_on_every_clip": True,
                            "yin_ms_per_clip": yin_ms, "row_ms_per_clip": row_ms})


if __name__ == "__main__":
    main()
