"""The pretrained-encoder recipe: options chosen on CREMA-D's folds, then reported once (issue 42).

    SER_TEST_DATA=../shared/data .venv/bin/python benchmarks/encoder_selection.py [--work ser-out/bench-encoder]
        [--skip-done] [--out benchmarks/results/encoder.json]

**Choice, on CREMA-D only** (the development corpus, as ``benchmarks/dev_lever.py``): each candidate
is ``benchmarks/encoder.yaml`` with one change, run as ``benchmarks/corpora.py --steps crema_cv
--cluster`` (6 folds of 5 consecutive actors, ensembles of 3, two folds at a time). The rule was
committed before the candidates ran (ea425d7): starting from ``encoder.yaml`` (``base``), a change is
adopted when its mean UA is at least ``--margin`` (1 point) above the choice so far; candidates are
taken in the order of :data:`CANDIDATES`.

**Report, once, with the choice**: EmoBox's RAVDESS folds (``corpora.py --steps emobox``), and both
cross-corpus directions on the 6 shared classes (``--steps cross_corpus``), without speaker labels at
test time (the recipe) and with them (``train.speaker_norm: true``: each held-out voice normalised by
its own clips' statistics, no labels read), and with each corpus normalised by its own clips
(``train.corpus_norm: true``: no speaker ids and no labels, but the test corpus's clips scored
together; Schuller et al. 2010's corpus normalisation). Neither is the recipe: both change what the
model does with one clip alone. The CREMA-D figure reported is the chosen candidate's own
development run: it is the corpus the choice was made on, and says so.

Writes ``--out`` with ``encoder_crema_cv_ua_mean`` / ``_std``, ``encoder_emobox_folds_ua_mean`` / ``_std``,
``encoder_rav_to_crema_ua``, ``encoder_crema_to_rav_ua`` (and ``_speaker_norm``, ``_corpus_norm`` variants), every
candidate's folds, the decision, the commands; ``encoder_clips_per_second_per_core`` and
``encoder_vs_naive_speedup`` are merged in from ``results/encoder_speed.json`` (``benchmarks/encoder_speed.py``)
when it exists. Steps already run under ``--work`` are reused with ``--skip-done``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import yaml
from corpora import REPO, RESULTS, development_result

#: Candidates, as changes to encoder.yaml, in the order they are judged. ``base`` is the first recipe
#: (no loudness normalisation); ``loud`` adds it and is encoder.yaml as it stands, since it was adopted;
#: ``probe`` was declared after the EmoBox report of ``loud`` had run (its commit says so) and is judged against it,
#: as is ``variants2`` (two augmented copies of every clip embedded; declared in 04edd6a).
_AS_RECORDED = {"encoder_loudness_dbfs": None}
CANDIDATES = {
    "base": {"features": _AS_RECORDED},
    "concat": {"features": _AS_RECORDED, "train": {"model": "layer_concat"}},
    "tiny": {"features": {**_AS_RECORDED, "encoder": "whisper-tiny.en"}},
    "loud": {},
    "probe": {"train": {"model": "linear_probe"}},
    "variants2": {"augment": {"variants": 2}},
}


def derived(changes: dict, path: Path) -> Path:
    """``encoder.yaml`` with ``changes`` (``{section: {key: value}}``) applied, written to ``path``."""
    cfg = yaml.safe_load((REPO / "benchmarks" / "encoder.yaml").read_text())
    for section, values in changes.items():
        cfg.setdefault(section, {}).update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_steps(steps: str, config: Path, work: Path, skip_done: bool, data: Path) -> dict:
    """``corpora.py --steps STEPS --cluster --config CONFIG`` in ``work``; its JSON."""
    out = work.with_suffix(".json")
    cmd = [sys.executable, str(REPO / "benchmarks" / "corpora.py"), "--steps", steps, "--cluster", "--config",
           str(config), "--work", str(work), "--out", str(out), "--data", str(data)]
    if skip_done:
        cmd.append("--skip-done")
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def main() -> None:
    """Run the candidates on CREMA-D, choose by the rule, report the choice, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SER_TEST_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--work", type=Path, default=REPO / "ser-out" / "bench-encoder")
    ap.add_argument("--out", type=Path, default=RESULTS / "encoder.json")
    ap.add_argument("--margin", type=float, default=0.01)
    ap.add_argument("--skip-done", action="store_true")
    args = ap.parse_args()
    work = args.work.resolve()

    dev = {}
    for name, changes in CANDIDATES.items():
        res = run_steps("crema_cv", derived(changes, work / f"{name}.yaml"), work / name, args.skip_done, args.data)
        uas = [round(f["ua"], 4) for f in res["crema_cv"]["folds"]]
        dev[name] = {"changes": changes, "fold_ua": uas, "ua_mean": round(statistics.mean(uas), 4),
                     "ua_std": round(statistics.stdev(uas), 4), "wall_s": res["crema_cv"]["wall_s"],
                     "commit": res["crema_cv"]["commit"]}
    chosen, log = "base", []
    for name in list(CANDIDATES)[1:]:
        gain = dev[name]["ua_mean"] - dev[chosen]["ua_mean"]
        adopted = gain >= args.margin
        log.append(f"{name}: {dev[name]['ua_mean']:.4f} against {chosen} {dev[chosen]['ua_mean']:.4f} "
                   f"({gain:+.4f}): {'adopted' if adopted else 'rejected'}")
        if adopted:
            chosen = name
    print("\n".join(log), flush=True)

    recipe = work / f"{chosen}.yaml"
    report = run_steps("emobox,cross_corpus", recipe, work / "report", args.skip_done, args.data)
    def normalised(setting: str) -> dict:
        """The cross-corpus protocol again with ``train.<setting>: true`` on the report's own store."""
        name = f"report_{setting}"
        cfg = derived({**CANDIDATES[chosen], "train": {**CANDIDATES[chosen].get("train", {}), setting: True}},
                      work / f"{name}.yaml")
        shared_store = work / name / "cross_corpus" / "features.zarr"
        if not shared_store.exists():  # a training setting only: the same store group, extracted once
            shared_store.parent.mkdir(parents=True, exist_ok=True)
            shared_store.symlink_to(work / "report" / "cross_corpus" / "features.zarr")
        return run_steps("cross_corpus", cfg, work / name, args.skip_done, args.data)

    with_labels, per_corpus = normalised("speaker_norm"), normalised("corpus_norm")
    emo = [round(f["ua"], 4) for f in report["emobox"]["folds"]]
    cross, cross_norm = report["cross_corpus"]["held_out"], with_labels["cross_corpus"]["held_out"]
    cross_corpus_norm = per_corpus["cross_corpus"]["held_out"]
    result = development_result(
        chosen=chosen, recipe=str(recipe.relative_to(work)) if recipe.is_relative_to(work) else str(recipe),
        rule=f"adopt a candidate when its CREMA-D mean UA beats the choice so far by >= {args.margin}",
        decisions=log, development=dev,
        encoder_crema_cv_ua_mean=dev[chosen]["ua_mean"], encoder_crema_cv_ua_std=dev[chosen]["ua_std"],
        encoder_crema_cv_note="the development corpus: the choice was made on these folds",
        encoder_emobox_folds_ua=emo, encoder_emobox_folds_ua_mean=round(statistics.mean(emo), 4),
        encoder_emobox_folds_ua_std=round(statistics.stdev(emo), 4),
        encoder_emobox_folds_wa_mean=round(report["emobox"]["wa_mean"], 4),
        encoder_emobox_folds_macro_f1_mean=round(report["emobox"]["macro_f1_mean"], 4),
        encoder_rav_to_crema_ua=round(cross["crema_d"]["ua"], 4),
        encoder_crema_to_rav_ua=round(cross["ravdess"]["ua"], 4),
        encoder_rav_to_crema_ua_speaker_norm=round(cross_norm["crema_d"]["ua"], 4),
        encoder_crema_to_rav_ua_speaker_norm=round(cross_norm["ravdess"]["ua"], 4),
        encoder_rav_to_crema_ua_corpus_norm=round(cross_corpus_norm["crema_d"]["ua"], 4),
        encoder_crema_to_rav_ua_corpus_norm=round(cross_corpus_norm["ravdess"]["ua"], 4),
        cross_corpus=cross, cross_corpus_speaker_norm=cross_norm, cross_corpus_corpus_norm=cross_corpus_norm,
        protocols={"crema_cv": "CREMA-D, 6 folds of 5 consecutive actors, 6 classes",
                   "emobox": "RAVDESS, EmoBox's 6 folds of 4 actors, 8 classes",
                   "cross_corpus": "train on all of one corpus, score all of the other on the 6 shared classes",
                   "speaker_norm": "cross_corpus, each voice normalised by its own clips: speaker ids at test time",
                   "corpus_norm": "cross_corpus, each corpus normalised by its own clips: no speaker ids, no labels, "
                                  "but the test corpus's clips given together"},
        wall_s={"emobox": report["emobox"]["wall_s"], "cross_corpus": report["cross_corpus"]["wall_s"],
                "cross_corpus_speaker_norm": with_labels["cross_corpus"]["wall_s"],
                "cross_corpus_corpus_norm": per_corpus["cross_corpus"]["wall_s"]})
    speed = RESULTS / "encoder_speed.json"
    if speed.exists():
        s = json.loads(speed.read_text())
        result.update({k: s[k] for k in ("encoder_clips_per_second_per_core", "encoder_vs_naive_speedup")})
        result["speed_source"] = f"results/encoder_speed.json (commit {s['commit']}, {s['date']})"
    if args.out.exists():  # diagnostics recorded by hand beside the report stay
        result.update({k: v for k, v in json.loads(args.out.read_text()).items() if k.startswith("diagnostic_")})
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k.startswith("encoder_")}, indent=1))


if __name__ == "__main__":
    main()
