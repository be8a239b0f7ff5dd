"""Cross-validation folds over a feature-store group, and the leakage ablation's protocols.

Three ways to hold rows out, all over one split-agnostic store (``augment.scope: all``: every
clip has its original, variant 0, and the same number of augmented copies):

- ``cv-actor`` (speaker-independent, the project's headline): speakers are sorted in natural
  order and cut into ``n_folds`` contiguous blocks; fold ``k`` tests the originals of block ``k``'s
  speakers and trains on every row of the others. On RAVDESS with 6 folds that is 4 actors per
  fold (actors 1-4, 5-8, ...; two women and two men each, since odd actor numbers are male). That
  is the size of the EmoBox benchmark's folds (Ma et al. 2024, "EmoBox: multilingual multi-corpus
  speech emotion recognition toolkit and benchmark"), not its partition: a published partition
  (:data:`EMOBOX_RAVDESS`, or a CSV of ``fold, speaker``) replaces the blocks when given
  (:func:`load_partition`).
- ``cross-corpus``: leave one corpus out. Fold ``k`` trains on every row of the other corpora
  and scores the held-out corpus's originals of the classes the training corpora have (UA and
  macro-F1 over the classes present there; the model still predicts over its whole vocabulary).
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

from ser_tasks.errors import InputError
from ser_tasks.store.zarr_store import row_corpus

PROTOCOLS = ("cv-actor", "clip-split", "row-split")  # the leakage ablation's three, side by side
CROSS_CORPUS = "cross-corpus"
ABLATION = "ablation"  # the three protocols, side by side

#: What each protocol's scores mean, for MLflow tags and tables.
DESCRIPTIONS = {
    "cv-actor": "actor-disjoint cross-validation (speaker-independent)",
    "clip-split": "random split by clip (speakers on both sides: leaks the voice)",
    "row-split": "random split by row of augmented copies (the seed notebooks' protocol: leaks the clip)",
    CROSS_CORPUS: "leave one corpus out (cross-corpus: unseen corpus and speakers, shared classes)",
}

#: EmoBox's RAVDESS partition (emo-box/EmoBox, ``data/ravdess/fold_*``): the test actors of each fold.
EMOBOX_RAVDESS: dict[int, tuple[str, ...]] = {
    1: ("01", "11", "20", "21"), 2: ("04", "10", "12", "14"), 3: ("08", "09", "19", "23"),
    4: ("03", "05", "07", "24"), 5: ("02", "15", "16", "18"), 6: ("06", "13", "17", "22"),
}
#: Named partitions ``--folds NAME`` accepts: fold number -> speakers (corpus-prefixed).
PARTITIONS: dict[str, dict[int, tuple[str, ...]]] = {
    "emobox": {k: tuple(f"ravdess:{a}" for a in actors) for k, actors in EMOBOX_RAVDESS.items()},
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
        held_out: what the fold holds out, in words: the corpus (``cross-corpus``), else ``""``.
    """

    protocol: str
    index: int
    train: np.ndarray
    test: np.ndarray
    test_speakers: tuple[str, ...] = ()
    held_out: str = ""


def load_partition(folds: int | str, folds_file: str | None = None) -> dict[str, int] | None:
    """A published partition as speaker -> 0-based fold, or ``None`` for contiguous blocks.

    Args:
        folds: a fold count (blocks: ``None`` is returned) or a name in :data:`PARTITIONS`.
        folds_file: a CSV with columns ``fold`` and ``speaker`` (one row per test speaker of a
            fold; folds numbered from 1, or from 0); wins over ``folds``. Speakers are written as in
            the manifest (``ravdess:01``) or without the corpus (``01``), matched against the store.

    Raises:
        InputError: an unknown name, or a file that is not such a CSV or puts a speaker in two folds.
        FileNotFoundError: ``folds_file`` does not exist.
    """
    if folds_file is not None:
        import pandas as pd

        try:
            table = pd.read_csv(folds_file, dtype=str)
        except (ValueError, pd.errors.ParserError) as exc:
            raise InputError(f"{folds_file}: not a CSV ({exc})") from exc
        if not {"fold", "speaker"} <= set(table.columns):
            raise InputError(f"{folds_file}: needs columns fold and speaker, has {', '.join(table.columns)}")
        try:
            numbers = table["fold"].astype(int)
        except ValueError as exc:
            raise InputError(f"{folds_file}: fold values must be integers ({exc})") from exc
        twice = table["speaker"][table["speaker"].duplicated()].tolist()
        if twice:
            raise InputError(f"{folds_file}: speaker(s) {twice[:5]} are in two folds")
        first = int(numbers.min())
        return {str(spk).strip(): int(n) - first for spk, n in zip(table["speaker"], numbers, strict=True)}
    if isinstance(folds, str) and not folds.isdigit():
        if folds not in PARTITIONS:
            raise InputError(f"unknown partition {folds!r}; give a fold count or one of {', '.join(PARTITIONS)}")
        return {spk: k - 1 for k, speakers in PARTITIONS[folds].items() for spk in speakers}
    return None


def _match_partition(partition: dict[str, int], speakers: list[str]) -> dict[str, int]:
    """``partition`` keyed by the store's own speaker names (``01`` matches ``ravdess:01`` when unambiguous).

    Raises:
        InputError: a partition speaker matches none or several of the store's speakers.
    """
    by_suffix: dict[str, list[str]] = {}
    for s in speakers:
        by_suffix.setdefault(s.split(":", 1)[-1], []).append(s)
    out, missing = {}, []
    for spk, k in partition.items():
        if spk in speakers:
            out[spk] = k
        elif ":" not in spk and len(by_suffix.get(spk, [])) == 1:
            out[by_suffix[spk][0]] = k
        elif ":" not in spk and len(by_suffix.get(spk, [])) > 1:
            raise InputError(f"partition speaker {spk!r} matches {by_suffix[spk]}; prefix it with its corpus")
        else:
            missing.append(spk)
    if missing:
        raise InputError(f"partition speaker(s) {missing[:8]} are not in the store (it has e.g. {speakers[:4]})")
    return out


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
               n_folds: int = 6, seed: int = 0, partition: dict[str, int] | None = None,
               emotion: np.ndarray | None = None) -> list[Fold]:
    """The folds of one protocol over a store group's rows.

    Args:
        protocol: a name in :data:`PROTOCOLS` or :data:`CROSS_CORPUS`.
        speaker: ``(rows,)`` str, the speaker of each row (``""`` = unknown speaker).
        clip_id: ``(rows,)`` str, the clip id of each row.
        variant: ``(rows,)`` int, 0 for the original clip.
        usable: ``(rows,)`` bool, rows whose features were computed (failed rows are left out).
        n_folds: folds in the partition.
        seed: shuffles clips (``clip-split``) or rows (``row-split``); ``cv-actor`` needs none.
        partition: ``cv-actor`` on a published partition (:func:`load_partition`): speaker -> fold;
            ``n_folds`` is then its number of folds. Speakers it does not name train in every fold.
        emotion: ``(rows,)`` int class of each row; needed by ``cross-corpus``, whose folds keep the
            classes both sides have: training rows of the held-out corpus's classes, test rows of
            the classes the training corpora have (the usual cross-corpus protocol, e.g. Schuller et
            al., IEEE Trans. Affective Computing 2010; EmoBox, Ma et al. 2024).

    Returns:
        ``n_folds`` folds (``cross-corpus``: one per corpus). Test sets hold originals only, except
        under ``row-split``.

    Raises:
        InputError: unknown protocol, too few speakers, clips or corpora, rows of unknown speaker
            under ``cv-actor`` (they could not be placed on one side), or a partition naming
            speakers the store lacks.
        AssertionError: never expected: a fold whose sides share a speaker (``cv-actor``) or a clip
            (``clip-split``).
    """
    if protocol not in (*PROTOCOLS, CROSS_CORPUS):
        raise InputError(f"unknown protocol {protocol!r}; choose one of {', '.join((*PROTOCOLS, CROSS_CORPUS))}")
    speaker, clip_id = np.asarray(speaker).astype(str), np.asarray(clip_id).astype(str)
    variant, usable = np.asarray(variant), np.asarray(usable, dtype=bool)
    rows = np.flatnonzero(usable)
    rng = np.random.default_rng(seed)
    folds: list[Fold] = []
    if protocol == "cv-actor":
        unknown = int((speaker[rows] == "").sum())
        if unknown:
            raise InputError(f"{unknown} rows have no known speaker; an actor-disjoint protocol cannot place them")
        if partition is not None:
            assigned = _match_partition(partition, sorted(set(speaker[rows]), key=natural_key))
            n = max(assigned.values()) + 1
            blocks = [tuple(sorted((s for s, f in assigned.items() if f == k), key=natural_key)) for k in range(n)]
            if any(not b for b in blocks):
                raise InputError(f"the partition leaves fold(s) {[k + 1 for k, b in enumerate(blocks) if not b]} empty")
        else:
            blocks = speaker_blocks(speaker[rows], n_folds)
        for k, block in enumerate(blocks):
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
    elif protocol == CROSS_CORPUS:
        if emotion is None:
            raise InputError("cross-corpus folds need the rows' emotion classes")
        emotion = np.asarray(emotion)
        corpus = row_corpus(speaker, clip_id)
        corpora = sorted(set(corpus[rows]))
        if len(corpora) < 2:
            raise InputError(f"cross-corpus needs at least 2 corpora in the store, found {corpora}")
        for k, name in enumerate(corpora):
            held = (corpus == name) & usable
            # trained on the classes the held-out corpus has: a class it lacks could only be a wrong answer
            train = np.flatnonzero(~held & usable & np.isin(emotion, np.unique(emotion[held])))
            shared = np.isin(emotion, np.unique(emotion[train]))
            test = np.flatnonzero(held & (variant == 0) & shared)
            if test.size == 0:
                raise InputError(f"corpus {name} shares no class with the other corpora")
            folds.append(Fold(protocol, k, train, test, held_out=name))
    else:
        if rows.size < n_folds:
            raise InputError(f"{rows.size} rows cannot fill {n_folds} folds")
        for k, block in enumerate(np.array_split(rng.permutation(rows), n_folds)):
            test = np.sort(block)
            folds.append(Fold(protocol, k, np.setdiff1d(rows, test), test))
    return folds


def check_protocol(protocol: str, max_folds: int | None = None) -> None:
    """Refuse an unknown protocol or a ``max_folds`` below 1, with a ``ValueError`` naming it.

    A known protocol is one of :data:`PROTOCOLS`, :data:`CROSS_CORPUS` or :data:`ABLATION`.
    """
    known = (*PROTOCOLS, CROSS_CORPUS, ABLATION)
    if protocol not in known:
        raise InputError(f"unknown protocol {protocol!r}; choose one of {', '.join(known)}")
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
