"""Corpus root -> manifest: one row per clip, the same columns for every corpus.

All file access goes through fsspec, so a root may be a local folder or any fsspec URL
(``s3://bucket/prefix``). A file whose name does not parse is listed in ``skipped`` with the
reason and never stops the run.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections import Counter
from dataclasses import dataclass, field

import fsspec
import pandas as pd
from fsspec.implementations.local import LocalFileSystem

from .corpora import NAME_PARSERS, PARSERS, ParseError, crema_d, folders
from .errors import InputError
from .remote import fs_options

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
COLUMNS = ["clip_id", "path", "corpus", "speaker", "sex", "emotion", "intensity", "sentence"]


@dataclass
class Manifest:
    """A corpus listing.

    Attributes:
        clips: one row per clip, columns :data:`COLUMNS` (``speaker`` is corpus-prefixed,
            ``"ravdess:01"``, or ``None`` when unknown); plus ``split`` once
            :func:`ser_tasks.split.assign_split` has run.
        skipped: columns ``path``, ``reason``: audio files that were not taken, and why.
        corpus: the corpus the root was read as.
        root: the root as given.
    """

    clips: pd.DataFrame
    skipped: pd.DataFrame
    corpus: str
    root: str
    notes: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the sorted (clip id, speaker, emotion, split) rows: what the model saw."""
        cols = [c for c in ("clip_id", "speaker", "emotion", "split") if c in self.clips]
        rows = self.clips[cols].astype(str).sort_values("clip_id").to_csv(index=False)
        return hashlib.sha256(rows.encode()).hexdigest()

    def summary(self) -> dict[str, dict[str, int] | int]:
        """Counts of clips per corpus, emotion and speaker, and of skipped files."""
        return {
            "clips": len(self.clips),
            "skipped": len(self.skipped),
            "per_corpus": self.clips["corpus"].value_counts().sort_index().to_dict(),
            "per_emotion": self.clips["emotion"].value_counts().sort_index().to_dict(),
            "per_speaker": self.clips["speaker"].fillna("unknown").value_counts().sort_index().to_dict(),
        }


def list_audio_files(root: str, storage_options: dict | None = None) -> list[str]:
    """Every audio file below ``root``, sorted, as paths (local) or URLs (remote).

    Local folders are walked following symbolic links (corpora are often linked in).

    Raises:
        FileNotFoundError: ``root`` does not exist or is not a folder.
    """
    fs, path = fsspec.core.url_to_fs(root, **fs_options(root, storage_options))
    if isinstance(fs, LocalFileSystem):
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{root}: corpus root is not a folder")
        found = []
        for dirpath, _dirs, files in os.walk(path, followlinks=True):
            found += [os.path.abspath(os.path.join(dirpath, f)) for f in files if f.lower().endswith(AUDIO_EXTENSIONS)]
        return sorted(found)
    fs.invalidate_cache(path)  # a long-lived process (a served deployment) must see files added since
    if not fs.isdir(path):
        raise FileNotFoundError(f"{root}: corpus root is not a folder")
    return sorted(fs.unstrip_protocol(p) for p in fs.find(path) if p.lower().endswith(AUDIO_EXTENSIONS))


def detect_corpus(paths: list[str]) -> str:
    """Name the corpus most files belong to: a folder-per-emotion layout first, else by file name.

    Raises:
        InputError: no file matches any known layout or naming scheme.
    """
    votes: Counter[str] = Counter()
    for p in paths:
        if folders.folder_emotion(p) is not None:
            votes[folders.NAME] += 1
            continue
        for name, parser in NAME_PARSERS.items():
            try:
                parser(p, None)
            except ParseError:
                continue
            votes[name] += 1
            break
    if not votes:
        raise InputError(
            f"no file name matches a known corpus ({', '.join(PARSERS)}) among {len(paths)} audio files; "
            "name the corpus with --corpus"
        )
    return votes.most_common(1)[0][0]


def build_manifest(
    root: str,
    corpus: str | None = None,
    storage_options: dict | None = None,
    crema_demographics: str | None = None,
) -> Manifest:
    """List ``root``, detect (or take) the corpus, and parse every audio file into a manifest row.

    Args:
        root: local folder or fsspec URL.
        corpus: one of :data:`ser_tasks.corpora.CORPORA`, or ``None``/``"auto"`` to detect.
        storage_options: fsspec options for remote roots (credentials, endpoint).
        crema_demographics: path/URL of CREMA-D's ``VideoDemographics.csv``; when ``None``, one
            lying directly in ``root`` is used if present.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        InputError: unknown ``corpus``, no audio files, or no file that parses.
    """
    paths = list_audio_files(root, storage_options)
    if not paths:
        raise InputError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    if corpus in (None, "auto"):
        corpus = detect_corpus(paths)
    if corpus not in PARSERS:
        raise InputError(f"unknown corpus {corpus!r}; choose one of {', '.join(PARSERS)}")

    meta: dict = {}
    notes: list[str] = []
    if corpus in (crema_d.NAME, folders.NAME):
        demo = crema_demographics
        if demo is None:
            candidate = posixpath.join(root.rstrip("/"), "VideoDemographics.csv")
            fs, p = fsspec.core.url_to_fs(candidate, **fs_options(candidate, storage_options))
            demo = candidate if fs.exists(p) else None
        if demo is not None:
            meta["sex"] = crema_d.read_demographics(demo, storage_options)
            notes.append(f"CREMA-D sex from {demo}")

    parser = PARSERS[corpus]
    rows, skipped, seen = [], [], {}
    for p in paths:
        try:
            info = parser(p, meta)
        except ParseError as exc:
            skipped.append({"path": p, "reason": str(exc)})
            continue
        clip_id = f"{corpus}/{info.key}"
        if clip_id in seen:
            skipped.append({"path": p, "reason": f"duplicate of clip {clip_id} ({seen[clip_id]})"})
            continue
        seen[clip_id] = p
        speaker = info.speaker if corpus == folders.NAME or info.speaker is None else f"{corpus}:{info.speaker}"
        row_corpus = speaker.split(":")[0] if corpus == folders.NAME and speaker else corpus
        rows.append({"clip_id": clip_id, "path": p, "corpus": row_corpus, "speaker": speaker, "sex": info.sex,
                     "emotion": info.emotion, "intensity": info.intensity, "sentence": info.sentence})
    if not rows:
        raise InputError(f"{root}: none of {len(paths)} audio files parses as {corpus}; first reason: "
                         f"{skipped[0]['reason']}")
    clips = pd.DataFrame(rows, columns=COLUMNS)
    return Manifest(clips=clips, skipped=pd.DataFrame(skipped, columns=["path", "reason"]),
                    corpus=corpus, root=root, notes=notes)
