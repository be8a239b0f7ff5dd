"""Actor-disjoint (speaker-independent) train / validation / test split, decided on the manifest.

The split is made over speakers, before anything is augmented, so no voice and no copy of a
clip is on two sides. It is stratified by corpus and, where the sex is known, by sex: speakers
are shuffled within each (corpus, sex) stratum, and the strata are interleaved in proportion to
their sizes, so every split gets each corpus and sex in about its share. It is seeded. Clips of
unknown speaker are each their own group: they stay on one side, but speaker independence cannot
be promised for them, and the split says so in its notes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ser_tasks.config import SPLITS, SplitConfig
from ser_tasks.errors import InputError, LeakageError


def _counts(n: int, cfg: SplitConfig) -> tuple[int, int, int]:
    """Speakers per split ``(train, val, test)``.

    At least one test speaker, one validation speaker when val > 0 and there are enough speakers, and
    at least one for training.
    """
    if n < 2:
        raise InputError(f"an actor-disjoint split needs at least 2 speakers, found {n}")
    n_test = max(1, int(round(n * cfg.test)))
    n_val = max(1, int(round(n * cfg.val))) if cfg.val > 0 and n >= 3 else 0
    while n_test + n_val >= n:  # keep at least one training speaker
        if n_val > 0 and n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_test - n_val, n_val, n_test


def split_groups(clips: pd.DataFrame) -> pd.Series:
    """The unit a split is made over, per clip: the speaker, or ``"clip:<clip_id>"`` when unknown."""
    return clips["speaker"].astype(object).where(clips["speaker"].notna(), "clip:" + clips["clip_id"])


def assign_split(clips: pd.DataFrame, cfg: SplitConfig,
                 fixed: dict[str, str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Add a ``split`` column (``train``/``val``/``test``) by speaker.

    Args:
        clips: manifest rows with ``clip_id``, ``speaker`` (``None`` = unknown) and ``sex``.
        cfg: fractions of speakers and seed.
        fixed: split of groups (see :func:`split_groups`) decided earlier, e.g. read from a feature
            store being extended. They keep it, so a speaker never changes side between runs; groups
            not in it are new, and each goes, in a seeded sex-balanced order, to the split furthest
            below its share of all groups.

    Returns:
        A copy of ``clips`` with ``split``, and notes (e.g. how many clips had no speaker).

    Raises:
        InputError: fewer than two speaker groups.
        LeakageError: from :func:`check_disjoint`, should the assignment ever leak.
    """
    clips = clips.copy()
    notes: list[str] = []
    group = split_groups(clips)
    unknown = int(clips["speaker"].isna().sum())
    if unknown:
        notes.append(f"{unknown} clips have no known speaker: each is its own group, so for those the split "
                     "is clip-disjoint, not speaker-independent")
    corpus = clips["corpus"] if "corpus" in clips else pd.Series("", index=clips.index)
    speakers = pd.DataFrame({"group": group, "corpus": corpus.fillna(""), "sex": clips["sex"]}).drop_duplicates("group")
    rng = np.random.default_rng(cfg.seed)
    keys = ["corpus", "sex"] if cfg.stratify_by_sex and speakers["sex"].notna().any() else ["corpus"]
    strata = [s["group"].tolist() for _, s in speakers.fillna({"sex": "unknown"}).groupby(keys, sort=True)]
    for s in strata:
        rng.shuffle(s)
    # Interleave the strata by relative position, larger strata first on ties: every prefix holds
    # each stratum in proportion to its size (equal strata alternate, one after the other).
    strata.sort(key=len, reverse=True)
    order = [g for _, _, g in sorted(((i + 0.5) / len(s), k, g) for k, s in enumerate(strata)
                                     for i, g in enumerate(s))]
    n_train, n_val, n_test = _counts(len(order), cfg)
    if fixed:
        side = _extend(order, fixed, {"test": n_test, "val": n_val, "train": n_train})
        new = [g for g in order if g not in fixed]
        if new:
            notes.append(f"{len(new)} new speaker group(s) joined an existing split: "
                         + ", ".join(f"{g}->{side[g]}" for g in sorted(new)[:20]))
    else:
        side = {g: "test" for g in order[:n_test]}
        side |= {g: "val" for g in order[n_test:n_test + n_val]}
        side |= {g: "train" for g in order[n_test + n_val:]}
    clips["split"] = group.map(side)
    check_disjoint(clips)
    return clips, notes


def _extend(order: list[str], fixed: dict[str, str], target: dict[str, int]) -> dict[str, str]:
    """Keep ``fixed`` sides; deal each new group to the split with the largest shortfall against ``target``.

    Ties go to test, val, train, in that order: the order a fresh split fills them.
    """
    side = {g: fixed[g] for g in order if g in fixed}
    have = {s: sum(1 for v in side.values() if v == s) for s in target}
    for g in order:
        if g in side:
            continue
        s = max(("test", "val", "train"), key=lambda k: (target[k] - have[k], k == "test", k == "val"))
        side[g] = s
        have[s] += 1
    return side


def check_disjoint(clips: pd.DataFrame) -> None:
    """Refuse a split in which a speaker or a source clip appears on two sides.

    Raises:
        LeakageError: naming the first offending speakers / clips.
        InputError: a ``split`` value other than train/val/test, or no ``split`` column.
    """
    if "split" not in clips:
        raise InputError("manifest has no split column")
    bad = set(clips["split"].dropna().unique()) - set(SPLITS)
    if bad or clips["split"].isna().any():
        raise InputError(f"split values must be {SPLITS}, found {sorted(map(str, bad)) or 'missing values'}")
    for column, what in (("speaker", "speaker"), ("clip_id", "source clip")):
        sides = clips.dropna(subset=[column]).groupby(column)["split"].nunique()
        leaking = sides[sides > 1].index.tolist()
        if leaking:
            raise LeakageError(f"{len(leaking)} {what}(s) would be in two splits, e.g. {leaking[:5]}")


def split_table(clips: pd.DataFrame) -> pd.DataFrame:
    """One row per speaker: speaker, sex, split, clips (for the MLflow ``split.csv`` artifact)."""
    table = (clips.assign(speaker=clips["speaker"].fillna("unknown"))
             .groupby(["split", "speaker"], dropna=False)
             .agg(sex=("sex", "first"), clips=("clip_id", "size")).reset_index())
    table["split"] = pd.Categorical(table["split"], SPLITS, ordered=True)
    return table.sort_values(["split", "speaker"]).reset_index(drop=True)
