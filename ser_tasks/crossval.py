"""Cross-validation folds over a feature-store group, and the leakage ablation's protocols.

Three ways to hold rows out, all over one split-agnostic store (``augment.scope: all``: every
clip has its original, variant 0, and the same number of augmented copies):

- ``cv-actor`` (speaker-independent, the project's headline): speakers are sorted in natural
  order and cut into ``n_folds`` contiguous blocks; fold ``k`` tests the originals of block ``k``'s
  speakers and trains on every row of the others. On RAVDESS with 6 folds that is 4 actors per
  fold (actors 1-4, 5-8, ...; two women and two men each, since odd actor numbers are male), the
  protocol of the EmoBox benchmark (Ma et al. 2024, "EmoBox: multilingual multi-corpus speech
  emotion recognition toolkit and benchmark").
- ``clip-split``: clips are shuffled (seeded) and cut into folds; a clip's augmented copies stay
  with it, but every speaker is on both sides.
- ``row-split``: the seed notebooks' protocol (REFERENCE.md): every row, original or augmented
  copy, is shuffled and cut into folds, so copies of one test clip sit in training; test rows
  are scored as they are (augmented ones included), as the notebooks did.

Only ``cv-actor`` estimates how a model does on voices it has never heard; the other two exist to
show by how much they inflate the number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import InputError

PROTOCOLS = ("cv-actor", "clip-split", "row-split")
ABLATION = "ablation"  # the three protocols, side by side

#: What each protocol's scores mean, for MLflow tags and tables.
DESCRIPTIONS = {
    "cv-actor": "actor-disjoint cross-validation (speaker-independent)",
    "clip-split": "random split by clip (speakers on both sides: leaks the voice)",
    "row-split": "random split by row of augmented copies (the seed notebooks' protocol: leaks the clip)",
}


@dataclass(frozen=True)
class Fold:
    """One fold of a protocol.

    Attributes:
        protocol: a name in :data:`PROTOCOLS`.
        index: 0-based fold number.
        train: store row indices to train on, sorted, ``(n_train,)`` int64.
        test: store row indices to score, sorted, ``(n_test,)`` int64.
        test_speakers: the held-out speakers (``cv-actor``), else empty.
    """

    protocol: str
    index: int
    train: np.ndarray
    test: np.ndarray
    test_speakers: tuple[str, ...] = ()


def natural_key(text: str) -> list:
    """Sort key that orders embedded numbers by value (``"ravdess:2"`` before ``"ravdess:10"``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def speaker_blocks(speakers: list[str] | np.ndarray, n_folds: int) -> list[tuple[str, ...]]:
    """The distinct speakers in natural order, cut into ``n_folds`` contiguous blocks.

    The blocks' sizes differ by at most one (``numpy.array_split``).

    Raises:
        InputError: ``n_folds`` below 2, or fewer distinct speakers than folds.
    """
    distinct = sorted({str(s) for s in speakers if str(s)}, key=natural_key)
    if n_folds < 2:
        raise InputError(f"cross-validation needs at least 2 folds, got {n_folds}")
    if len(distinct) < n_folds:
        raise InputError(f"{len(distinct)} known speakers cannot fill {n_folds} actor-disjoint folds")
    return [tuple(block) for block in np.array_split(np.array(distinct, dtype=object), n_folds)]


def make_folds(protocol: str, speaker: np.ndarray, clip_id: np.ndarray, variant: np.ndarray, usable: np.ndarray,
               n_folds: int = 6, seed: int = 0) -> list[Fold]:
    """The folds of one protocol over a store group's rows.

    Args:
        protocol: a name in :data:`PROTOCOLS`.
        speaker: ``(rows,)`` str, the speaker of each row (``""`` = unknown speaker).
        clip_id: ``(rows,)`` str, the clip id of each row.
        variant: ``(rows,)`` int, 0 for the original clip.
        usable: ``(rows,)`` bool, rows whose features were computed (failed rows are left out).
        n_folds: folds in the partition.
        seed: shuffles clips (``clip-split``) or rows (``row-split``); ``cv-actor`` needs none.

    Returns:
        ``n_folds`` folds. In ``cv-actor`` and ``clip-split`` a test set holds originals only.

    Raises:
        InputError: unknown protocol, too few speakers or clips, or rows of unknown speaker under
            ``cv-actor`` (they could not be placed on one side).
        AssertionError: never expected: a fold whose sides share a speaker (``cv-actor``) or a clip
            (``clip-split``).
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    speaker, clip_id = np.asarray(speaker).astype(str), np.asarray(clip_id).astype(str)
    variant, usable = np.asarray(variant), np.asarray(usable, dtype=bool)
    rows = np.flatnonzero(usable)
    rng = np.random.default_rng(seed)
    folds: list[Fold] = []
    if protocol == "cv-actor":
        unknown = int((speaker[rows] == "").sum())
        if unknown:
            raise InputError(f"{unknown} rows have no known speaker; an actor-disjoint protocol cannot place them")
        for k, block in enumerate(speaker_blocks(speaker[rows], n_folds)):
            held = np.isin(speaker, block) & usable
            train, test = np.flatnonzero(~held & usable), np.flatnonzero(held & (variant == 0))
            assert not set(speaker[train]) & set(speaker[test]), "speaker on both sides"
            folds.append(Fold(protocol, k, train, test, block))
    elif protocol == "clip-split":
        clips = np.unique(clip_id[rows])
        if clips.size < n_folds:
            raise InputError(f"{clips.size} clips cannot fill {n_folds} folds")
        for k, block in enumerate(np.array_split(rng.permutation(clips), n_folds)):
            held = np.isin(clip_id, block) & usable
            train, test = np.flatnonzero(~held & usable), np.flatnonzero(held & (variant == 0))
            assert not set(clip_id[train]) & set(clip_id[test]), "clip on both sides"
            folds.append(Fold(protocol, k, train, test))
    else:
        if rows.size < n_folds:
            raise InputError(f"{rows.size} rows cannot fill {n_folds} folds")
        for k, block in enumerate(np.array_split(rng.permutation(rows), n_folds)):
            test = np.sort(block)
            folds.append(Fold(protocol, k, np.setdiff1d(rows, test), test))
    return folds


def check_protocol(protocol: str, max_folds: int | None = None) -> None:
    """Refuse an unknown protocol or a ``max_folds`` below 1, with a ``ValueError`` naming it.

    A known protocol is one of :data:`PROTOCOLS` or :data:`ABLATION`.
    """
    if protocol not in (*PROTOCOLS, ABLATION):
        raise InputError(f"unknown protocol {protocol!r}; choose one of {', '.join((*PROTOCOLS, ABLATION))}")
    if max_folds is not None and max_folds < 1:
        raise InputError(f"max_folds must be at least 1, got {max_folds}")


def summarize(scores: list[dict]) -> dict:
    """Mean and standard deviation (``ddof=1``; 0 for one fold) of each fold's ``ua``, ``wa`` and ``macro_f1``.

    Returns:
        ``{"ua_mean", "ua_std", "wa_mean", "wa_std", "macro_f1_mean", "macro_f1_std", "folds"}``.

    Raises:
        InputError: no scores.
    """
    if not scores:
        raise InputError("no fold scores to summarise")
    out: dict = {"folds": len(scores)}
    for key in ("ua", "wa", "macro_f1"):
        values = np.array([s[key] for s in scores], dtype=float)
        out[f"{key}_mean"] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return out
