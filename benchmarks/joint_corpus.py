"""Train on RAVDESS and CREMA-D together: decided on the development corpus, then reported once.

    SER_TEST_DATA=../shared/data .venv/bin/python benchmarks/joint_corpus.py

Issue 17's lever "training on RAVDESS + CREMA-D together", under the ``development-corpus``
protocol of ``benchmarks/dev_corpus_selection.py`` (RAVDESS has no actors to spare for a
development set, so choices are made on CREMA-D's speakers):

* **Choice, on CREMA-D.** ``benchmarks/corpora.py --steps crema_cv_joint --cluster``: CREMA-D's 6
  actor-disjoint folds (5 consecutive actors each, the ``crema_cv`` step's folds, given as a
  ``--folds-file``), every fold also training on RAVDESS's clips of CREMA-D's six classes (calm and
  surprised have no CREMA-D counterpart and are left out). Against the same folds trained on
  CREMA-D alone: the ``crema_cv`` step in ``results/corpora.json``, same configuration, same
  cluster mode. The lever is adopted when its mean UA is higher.
* **Report, on RAVDESS, only if adopted.** ``corpora.py --steps emobox_joint --cluster``: EmoBox's 6
  RAVDESS folds, every fold also training on all of CREMA-D, run once. When the lever is rejected,
  nothing runs on RAVDESS and the JSON says why.

The recipe (``benchmarks/accuracy.yaml``) is the same in every run. Steps already run in ``--work``
are reused (``corpora.py --skip-done``), so an interrupted run resumes.

Writes ``benchmarks/results/joint_corpus.json``: the CREMA-D fold UAs with and without RAVDESS, the
decision, and, when adopted, ``emobox_folds_ua_mean`` / ``_std`` of the joint training;
``crema_actor_ua_mean`` is the recipe's CREMA-D figure trained on CREMA-D alone (the figure no choice
was made on: the joint one served the decision); ``selection_protocol``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from corpora import REPO, RESULTS, corpora, development_result, recipe_crema_baseline, report_emobox, summary


def main() -> None:
    """Decide on CREMA-D, report on EmoBox's RAVDESS folds when adopted, and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SER_TEST_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--work", type=Path, default=REPO / "ser-out" / "bench-joint")
    ap.add_argument("--out", type=Path, default=RESULTS / "joint_corpus.json")
    args = ap.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    alone = recipe_crema_baseline()
    joint = summary(corpora("crema_cv_joint", args.work / "dev", args.work / "dev.json", args.data))
    adopted = joint["ua_mean"] > alone["ua_mean"]
    print(f"CREMA-D UA: alone {alone['ua_mean']:.3f}, with RAVDESS {joint['ua_mean']:.3f}: "
          f"{'adopted' if adopted else 'rejected'}", flush=True)
    result: dict = development_result(
        lever="each fold also trains on the other corpus's clips of the target corpus's classes",
        chosen_on="CREMA-D, 6 actor-disjoint folds of 5 consecutive actors (mean UA), trained alone against "
                  "trained with RAVDESS's clips of CREMA-D's six classes",
        crema_alone=alone,
        crema_with_ravdess=joint,
        adopted=adopted,
        crema_actor_ua_mean=alone["ua_mean"],
        crema_actor_ua_std=alone["ua_std"],
        crema_protocol="development-corpus: CREMA-D alone, the recipe chosen on RAVDESS; the joint CREMA-D "
                       "figure made the decision and is not reported as a result",
    )
    report_emobox(result, adopted, "emobox_with_crema", args.work, args.data, step="emobox_joint",
                  not_run="the lever lost on the development corpus, so EmoBox's RAVDESS folds were not run with "
                          "it; the recipe's figure stands (results/dev_selection.json)")
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result.get(k) for k in ("adopted", "emobox_folds_ua_mean", "crema_actor_ua_mean")}),
          flush=True)


if __name__ == "__main__":
    main()
