"""Seed ensembles: the recipe trained with several seeds, probabilities averaged, decided on CREMA-D's folds.

    .venv/bin/python benchmarks/seed_ensemble.py --seeds 0,1,2 --margin 0.01

Issue 17's lever "ensembles over seeds", under the ``development-corpus`` protocol of
``benchmarks/dev_corpus_selection.py``:

* **Members.** ``benchmarks/corpora.py --steps crema_cv --cluster`` once per seed, with the recipe
  (``benchmarks/accuracy.yaml``) and ``train.seed`` set: CREMA-D's 6 folds of 5 consecutive actors.
  Each seed's step runs in ``WORK/seed<s>`` and is reused when finished (``--skip-done``).
* **Choice, on CREMA-D.** Every fold's member models score the held-out actors' original clips
  (``benchmarks/tta.py``'s scoring, which checks it reproduces each run's fold UA); the ensemble
  averages their softmax probabilities. It is adopted only when its mean UA over the 6 folds beats
  the members' own mean UA by at least ``--margin``, declared before the runs (here 1 point: twice
  the 0.3-point move between two runs of the recipe, ``results/crema_recipe_rerun.json``).
* **Report, on RAVDESS, only if adopted.** ``corpora.py --steps emobox --cluster`` once, with the
  recipe and ``train.ensemble`` = the number of seeds (``train.seed`` = the first): the product's
  own ensemble, trained member after member inside each fold, in ``WORK/report``.

Writes ``benchmarks/results/seed_ensemble.json``: per seed and for the ensemble, fold UAs and means
(originals and, for information only, with test-time augmentation), the gain, margin and decision,
``crema_actor_ua_mean`` / ``_std`` (the ensemble's), ``selection_protocol`` and, when adopted,
``emobox_folds_ua_mean`` / ``_std``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from corpora import REPO, RESULTS, corpora, development_result, report_emobox
from dev_lever import changed_recipe
from tta import fold_outputs, summarise


def main() -> None:
    """Train (or reuse) each seed's CREMA-D folds, score the ensemble, decide by the margin, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated train.seed values, one member each")
    ap.add_argument("--margin", type=float, required=True, help="mean CREMA-D UA gain over the members needed")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SER_TEST_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--work", type=Path, default=REPO / "ser-out" / "bench-seeds")
    ap.add_argument("--out", type=Path, default=RESULTS / "seed_ensemble.json")
    args = ap.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    if len(seeds) < 2:
        raise SystemExit("--seeds: an ensemble needs at least two seeds")
    t0 = time.perf_counter()
    outputs = {}
    for s in seeds:
        config = changed_recipe([f"train.seed={s}"], work / f"seed{s}.yaml")
        section = corpora("crema_cv", work / f"seed{s}", work / f"seed{s}.json", args.data, config)
        outputs[s] = (section, fold_outputs(work / f"seed{s}" / "crema_cv"))
    members = []
    for s, (section, folds) in outputs.items():
        res = summarise(f"seed {s}", folds)
        # the rescoring must reproduce what `ser evaluate` reported, or the ensemble compares other numbers
        for f in res["folds"]:
            if abs(f["reported_ua"] - f["originals_ua"]) > 1e-3:
                raise SystemExit(f"seed {s} fold {f['fold']}: rescored UA {f['originals_ua']}, "
                                 f"reported {f['reported_ua']}")
        members.append({**res, "seed": s, "commit": section["commit"], "date": section["date"]})
    fold_sets = []
    for per_seed in zip(*(folds for _, folds in outputs.values()), strict=True):
        if not all((f["clips"] == per_seed[0]["clips"]).all() for f in per_seed):
            raise SystemExit(f"fold {per_seed[0]['result']['fold']}: the seeds' held-out rows differ")
        fold_sets.append({**per_seed[0], "probs": sum(f["probs"] for f in per_seed) / len(per_seed)})
    ens = summarise(" + ".join(f"seed {s}" for s in seeds), fold_sets, reported=False)
    member_mean = round(statistics.mean(m["originals_ua_mean"] for m in members), 4)
    gain = round(ens["originals_ua_mean"] - member_mean, 4)
    adopted = gain >= args.margin
    uas = [f["originals_ua"] for f in ens["folds"]]
    result = development_result(
        chosen_on="CREMA-D, 6 actor-disjoint folds of 5 consecutive actors: adopted if the ensemble's mean UA "
                  "beats its members' mean UA by the margin",
        seeds=seeds,
        margin=args.margin,
        members=members,
        members_ua_mean=member_mean,
        ensemble=ens,
        ensemble_fold_ua=uas,
        crema_actor_ua_mean=round(statistics.mean(uas), 4),
        crema_actor_ua_std=round(statistics.stdev(uas), 4),
        gain=gain,
        folds_improved=sum(f["originals_ua"] > statistics.mean(m["folds"][i]["originals_ua"] for m in members)
                           for i, f in enumerate(ens["folds"])),
        adopted=adopted,
    )
    config = changed_recipe([f"train.ensemble={len(seeds)}", f"train.seed={seeds[0]}"],
                            work / f"ensemble{len(seeds)}.yaml")
    report_emobox(result, adopted, "emobox_ensemble", work, args.data, config)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"CREMA-D UA: members {member_mean:.3f}, ensemble {ens['originals_ua_mean']:.3f} (gain {gain:+.3f}, "
          f"margin {args.margin}): {'adopted' if adopted else 'rejected'}", flush=True)


if __name__ == "__main__":
    main()
