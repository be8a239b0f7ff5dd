"""How many clips of a voice a speaker-normalised model needs at prediction time.

    .venv/bin/python benchmarks/speaker_clips.py RUN_DIR [--sizes 1 2 5 10 20] --out benchmarks/results/X.json

A model trained with ``train.speaker_norm`` normalises its input by the statistics of the clips it
is given for one speaker (:func:`ser_tasks.serve.predict.predict_frame`). ``ser evaluate`` scores a
held-out speaker with the statistics of all of that speaker's clips (about 80 on CREMA-D, 60 on
RAVDESS); a user may have fewer. For every fold model of a finished evaluation (RUN_DIR as in
``benchmarks/tta.py``: ``summary.json``, ``features.zarr``, ``runs/<protocol>/fold<k>/model.keras``),
the held-out speakers' original clips are scored again with each speaker's clips cut into groups
of ``k`` (a seeded random partition; the last group of a speaker may be smaller) and every group
normalised by its own statistics (:func:`ser_tasks.learn.data.normalise_groups`, what ``ser predict
--speaker-by`` does with ``k`` files of one voice). ``k = 1`` is a clip alone. ``all`` (every clip
of the speaker) must reproduce the run's fold UA (to 0.005), which the script checks.

Writes ``--out`` (and prints it): UA per fold and its mean for every ``k``. Nothing is chosen on
these figures; they describe the product.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def groups_of(speakers: np.ndarray, k: int | None, seed: int = 0) -> np.ndarray:
    """Group key of every row: its speaker and the index of its group of ``k`` (``None``: one group per speaker)."""
    rng = np.random.default_rng(seed)
    out = np.empty(speakers.size, dtype=object)
    for s in dict.fromkeys(speakers.tolist()):
        at = np.flatnonzero(speakers == s)
        if k is None:
            out[at] = s
            continue
        at = at[rng.permutation(at.size)]
        for g, start in enumerate(range(0, at.size, k)):
            out[at[start:start + k]] = f"{s}#{g}"
    return out


def main() -> None:
    """Score every fold model of a run at each group size and write the JSON."""
    import keras

    from ser_tasks.learn.data import iter_chunks, normalise_groups
    from ser_tasks.learn.metrics import scores
    from ser_tasks.learn.models import MODEL_INPUTS
    from ser_tasks.learn.training import trained_per_speaker
    from ser_tasks.store.zarr_store import FeatureStore

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 5, 10, 20])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    t0 = time.perf_counter()
    summary = json.loads((args.run / "summary.json").read_text())
    ev, ext = summary["evaluation"], summary["extract"]
    view = FeatureStore(str(args.run / Path(ext["store"]).name), ext["group"]).view()
    speakers, labels = np.asarray(view.column("speaker")).astype(str), view.labels()
    originals = view.done() & (view.column("variant") == 0)
    sizes: list[int | None] = [*args.sizes, None]
    per_fold = []
    for f in ev["fold_results"]:
        path = args.run / "runs" / ev["protocol"] / f"fold{f['fold']}" / "model.keras"
        if not trained_per_speaker(path):
            raise SystemExit(f"{path}: not trained with train.speaker_norm")
        model = keras.models.load_model(path, compile=False)
        name = MODEL_INPUTS[model.name]
        rows = np.flatnonzero(np.isin(speakers, f["test_speakers"]) & originals)
        x = np.concatenate(list(iter_chunks(view, rows, name)))
        row = {"fold": f["fold"], "reported_ua": round(f["ua"], 4), "clips": int(rows.size)}
        for k in sizes:
            z = normalise_groups(x, groups_of(speakers[rows], k), name)
            pred = np.concatenate([np.asarray(model.predict_on_batch(z[i:i + 64])).argmax(1)
                                   for i in range(0, len(z), 64)])
            row[f"ua_{k or 'all'}"] = round(scores(labels[rows], pred, view.vocabulary, present_only=True)["ua"], 4)
        # ``all`` is the run's own scoring; float rounding in the statistics may move a clip or two
        if abs(row["ua_all"] - row["reported_ua"]) > 0.005:
            raise SystemExit(f"fold {f['fold']}: {row['ua_all']} does not reproduce the run's UA {row['reported_ua']}")
        print(json.dumps(row), flush=True)
        per_fold.append(row)
    result = {"run": str(args.run), "protocol": ev["protocol"],
              "clips_per_speaker": statistics.mean(r["clips"] for r in per_fold) / max(
                  1, statistics.mean(len(f["test_speakers"]) for f in ev["fold_results"])),
              "ua_mean": {str(k or "all"): round(statistics.mean(r[f"ua_{k or 'all'}"] for r in per_fold), 4)
                          for k in sizes},
              "folds": per_fold, "seconds": round(time.perf_counter() - t0, 1)}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "folds"}, indent=1))


if __name__ == "__main__":
    main()
