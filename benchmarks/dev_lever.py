"""One change to the recipe, decided on CREMA-D's folds by a margin declared up front, then reported once.

    .venv/bin/python benchmarks/dev_lever.py --name epochs320 --set train.epochs=320 --margin 0.01

The ``development-corpus`` protocol of ``benchmarks/dev_corpus_selection.py`` for any change that
configuration can express (``--set section.key=value``, YAML values, repeatable), applied to
``benchmarks/accuracy.yaml``:

* **Choice, on CREMA-D.** ``benchmarks/corpora.py --steps crema_cv --cluster`` with the changed
  recipe: CREMA-D's 6 folds of 5 consecutive actors. Against the recipe's own run of the same
  step (``crema_cv`` in ``results/corpora.json``). The change is adopted only when the mean UA
  rises by at least ``--margin``, given before the run: ``benchmarks/joint_corpus.py`` adopted a
  0.1-point rise, within the noise of 6 folds, that EmoBox's folds then reversed. A negative
  margin is a non-inferiority test, for a change made for speed: adopted unless it loses more.
  ``--baseline FILE:KEY`` judges against another run of the same folds instead, a section of a
  results file (``dev_lever_prosody.json:crema_changed``: the one-model recipe since F0 was adopted).
* **Report, on RAVDESS, only if adopted.** ``corpora.py --steps emobox --cluster`` with the changed
  recipe, once. ``--report-set`` (same form as ``--set``) adds settings to the report's recipe
  only: a change chosen with one model (``--set train.ensemble=1``, a third of the training) is
  reported in the product's ensemble (``--report-set train.ensemble=3``).

Steps already run in ``--work`` are reused (``corpora.py --skip-done``). Writes
``benchmarks/results/dev_lever_<name>.json``: both CREMA-D runs' fold UAs, the margin, the
decision and, when adopted, ``emobox_folds_ua_mean`` / ``_std``; ``selection_protocol``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import yaml
from corpora import REPO, RESULTS, corpora, development_result, recipe_crema_baseline, report_emobox, summary


def changed_recipe(sets: list[str], path: Path) -> Path:
    """``accuracy.yaml`` with each ``section.key=value`` of ``sets`` applied, written to ``path``.

    Raises:
        SystemExit: a setting is not of the form ``section.key=value``.
    """
    cfg = yaml.safe_load((REPO / "benchmarks" / "accuracy.yaml").read_text())
    for item in sets:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--set {item!r}: expected section.key=value")
        cfg.setdefault(section, {})[name] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(cfg))
    return path


def results_section(spec: str) -> dict:
    """The summary stored under ``KEY`` in ``benchmarks/results/FILE`` for ``spec`` = ``FILE:KEY``.

    Raises:
        SystemExit: ``spec`` is not ``FILE:KEY``, or the file or key is missing, or the section holds no fold UAs.
    """
    name, sep, key = spec.partition(":")
    path = RESULTS / name
    if not sep or not path.is_file():
        raise SystemExit(f"--baseline {spec!r}: expected FILE:KEY with FILE in {RESULTS}")
    section = json.loads(path.read_text()).get(key)
    if not isinstance(section, dict) or "fold_ua" not in section:
        raise SystemExit(f"--baseline {spec!r}: {name} has no section {key!r} with fold_ua")
    return {**section, "source": f"results/{name} {key} ({section.get('source', 'no source recorded')})"}


def main() -> None:
    """Decide on CREMA-D by the margin, report on EmoBox's RAVDESS folds when adopted, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", required=True, help="names the work folder and the result file")
    ap.add_argument("--set", dest="sets", action="append", required=True, help="section.key=value (repeatable)")
    ap.add_argument("--margin", type=float, required=True,
                    help="mean CREMA-D UA gain needed to adopt (negative: the most a speed change may lose)")
    ap.add_argument("--baseline", default=None,
                    help="FILE:KEY, a section of benchmarks/results/FILE to judge against (default: corpora.json's "
                         "crema_cv, the recipe)")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SER_TEST_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--work", type=Path, default=None, help="default: ser-out/bench-lever-NAME")
    ap.add_argument("--report-set", dest="report_sets", action="append", default=[],
                    help="section.key=value for the EmoBox report only (repeatable), after --set")
    args = ap.parse_args()
    work = (args.work or REPO / "ser-out" / f"bench-lever-{args.name}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    config = changed_recipe(args.sets, work / f"accuracy-{args.name}.yaml")  # corpora.py records the name
    base = recipe_crema_baseline() if args.baseline is None else results_section(args.baseline)
    dev = summary(corpora("crema_cv", work / "dev", work / "dev.json", args.data, config))
    gain = round(dev["ua_mean"] - base["ua_mean"], 4)
    adopted = gain >= args.margin
    print(f"CREMA-D UA: recipe {base['ua_mean']:.3f}, changed {dev['ua_mean']:.3f} (gain {gain:+.3f}, margin "
          f"{args.margin}): {'adopted' if adopted else 'rejected'}", flush=True)
    result: dict = development_result(
        change=args.sets,
        margin=args.margin,
        chosen_on="CREMA-D, 6 actor-disjoint folds of 5 consecutive actors: adopted if mean UA rises by the margin",
        crema_recipe=base,
        crema_changed=dev,
        crema_gain=gain,
        adopted=adopted,
        crema_actor_ua_mean=dev["ua_mean"],  # issue 17's key: the changed recipe on CREMA-D (a development figure)
        crema_actor_ua_std=dev["ua_std"],
    )
    report_config = changed_recipe([*args.sets, *args.report_sets], work / f"report-{args.name}.yaml") \
        if args.report_sets else config
    result["report_change"] = [*args.sets, *args.report_sets]
    report_emobox(result, adopted, "emobox_changed", work, args.data, report_config)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    (RESULTS / f"dev_lever_{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result.get(k) for k in ("crema_gain", "adopted", "emobox_folds_ua_mean")}), flush=True)


if __name__ == "__main__":
    main()
