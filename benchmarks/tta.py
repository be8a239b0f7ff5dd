"""Test-time augmentation: score each held-out clip on its stored copies too, averaging probabilities.

    .venv/bin/python benchmarks/tta.py RUN_DIR [RUN_DIR ...] [--ensemble] --out benchmarks/results/tta_X.json

Issue 17's lever "test-time augmentation", measured on finished ``ser evaluate`` runs with no
retraining. ``ser evaluate`` augments every clip (``augment.scope: all``), so a held-out clip's
``augment.variants`` augmented copies (noise, pitch shift, time stretch, time shift, gain; the
training distribution) are already in the store. For each fold model, the held-out actors' rows
are scored twice:

* ``originals``: the original clips only, as ``ser evaluate`` reports (the script checks that it
  reproduces the run's fold UA);
* ``tta``: the softmax probabilities of a clip's original and all its copies, averaged with equal
  weight, then argmax.

With ``--ensemble``, the runs (candidates of ``benchmarks/dev_corpus_selection.py``: the same
corpus, configuration but for the candidate's knob, and folds) are also scored as an ensemble: each
fold's models' probabilities averaged, with and without TTA.

A RUN_DIR is where ``benchmarks/corpora.py`` ran one evaluation step (``summary.json``,
``features.zarr``, ``runs/<protocol>/fold<k>/*.keras``). Writes, per run and overall, UA per fold
with and without TTA, their means and the mean difference. The choice it informs must be made on
a development corpus, not on the corpus a figure is reported for (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def ua(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """UA over the classes present in ``y_true`` (:func:`ser_tasks.learn.metrics.scores`, as ``ser evaluate`` does)."""
    from ser_tasks.learn.metrics import scores

    return scores(y_true, y_pred, [str(c) for c in range(int(max(y_true.max(), y_pred.max())) + 1)],
                  present_only=True)["ua"]


def fold_outputs(run: Path) -> list[dict]:
    """Per fold of one evaluation run: its result, and the held-out rows' labels, probabilities and clips.

    Returns:
        Per fold ``{"result", "y" (n,) int, "probs" (n, k) float32, "clips" (n,) str, "original" (n,) bool}``
        over the held-out actors' completed rows, sorted by row.
    """
    import keras

    from ser_tasks.learn.data import SpeakerNorm, ZarrSequence
    from ser_tasks.learn.training import MODEL_INPUTS, predict, trained_per_speaker
    from ser_tasks.store.zarr_store import FeatureStore

    summary = json.loads((run / "summary.json").read_text())
    ev, ext = summary["evaluation"], summary["extract"]
    view = FeatureStore(str(run / Path(ext["store"]).name), ext["group"]).view()
    speakers, clips = view.column("speaker"), view.column("clip_id")
    variants, done = view.column("variant"), view.done()
    out = []
    for f in ev["fold_results"]:
        (model_path,) = (run / "runs" / ev["protocol"] / f"fold{f['fold']}").glob("*.keras")
        model = keras.models.load_model(model_path, compile=False)
        rows = np.sort(np.flatnonzero(np.isin(speakers, f["test_speakers"]) & done))  # the order served
        name = MODEL_INPUTS[model.name]
        per_speaker = SpeakerNorm(view, name) if trained_per_speaker(model_path) else None  # as the run scored
        seq = ZarrSequence(view, rows, name, 64, speaker_norm=per_speaker)
        out.append({"result": f, "y": seq.labels, "probs": predict(model, seq), "clips": clips[rows].astype(str),
                    "original": variants[rows] == 0})
    return out


def fold_uas(y: np.ndarray, probs: np.ndarray, clips: np.ndarray, original: np.ndarray) -> tuple[float, float]:
    """UA on the original clips, and UA with every clip's rows' probabilities averaged (TTA)."""
    index: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        index.setdefault(c, []).append(i)
    tta = np.array([probs[index[c]].mean(axis=0).argmax() for c in clips[original]])
    return ua(y[original], probs[original].argmax(axis=1)), ua(y[original], tta)


def summarise(name: str, folds: list[dict], reported: bool = True) -> dict:
    """Per-fold and mean UA, originals and TTA, of one run (``reported``: with the run's own fold UA) or ensemble."""
    rows = []
    for f in folds:
        o, t = fold_uas(f["y"], f["probs"], f["clips"], f["original"])
        rows.append({"fold": f["result"]["fold"], **({"reported_ua": round(f["result"]["ua"], 4)} if reported else {}),
                     "originals_ua": round(o, 4), "tta_ua": round(t, 4), "clips": int(f["original"].sum()),
                     "rows_per_clip": round(f["original"].size / int(f["original"].sum()), 2)})
    o, t = [r["originals_ua"] for r in rows], [r["tta_ua"] for r in rows]
    res = {"run": name, "folds": rows, "originals_ua_mean": round(statistics.mean(o), 4),
           "tta_ua_mean": round(statistics.mean(t), 4),
           "tta_minus_originals": round(statistics.mean(t) - statistics.mean(o), 4)}
    print(json.dumps({k: v for k, v in res.items() if k != "folds"}), flush=True)
    return res


def main() -> None:
    """Score every run given and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--ensemble", action="store_true", help="also score the runs' models as one ensemble per fold")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    t0 = time.perf_counter()
    outputs = {str(r): fold_outputs(r.resolve()) for r in args.runs}
    runs = [summarise(name, folds) for name, folds in outputs.items()]
    diffs = [f["tta_ua"] - f["originals_ua"] for r in runs for f in r["folds"]]
    result = {"date": time.strftime("%Y-%m-%d"), "runs": runs, "folds": len(diffs),
              "tta_minus_originals_mean": round(statistics.mean(diffs), 4),
              "folds_improved": sum(d > 0 for d in diffs)}
    if args.ensemble:
        ensemble = []
        for per_run in zip(*outputs.values(), strict=True):  # one fold, every run
            # the runs' stores hold the same rows in the same order when extracted by the same configuration
            assert all(np.array_equal(f["clips"], per_run[0]["clips"]) for f in per_run), "runs' held-out rows differ"
            ensemble.append({**per_run[0], "probs": np.mean([f["probs"] for f in per_run], axis=0)})
        result["ensemble"] = summarise(" + ".join(outputs), ensemble, reported=False)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}), flush=True)


if __name__ == "__main__":
    main()
