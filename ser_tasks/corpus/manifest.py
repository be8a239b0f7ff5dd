"""Corpus roots -> manifest: one row per clip, the same columns for every corpus.

All file access goes through fsspec, so a root may be a local folder or any fsspec URL
(``s3://bucket/prefix``). A file whose name does not parse is listed in ``skipped`` with the
reason and never stops the run.

Several roots make one manifest, and so does a root whose subfolders hold different corpora: the
files under each top-level subfolder of a root (and those lying in the root itself) are detected
on their own, unless the root is named (``ravdess=PATH``) or ``corpus`` forces one name. Clip ids
and speakers carry their corpus (``ravdess/03-01-...``, ``ravdess:01``), so corpora never mix.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import fsspec
import pandas as pd
from fsspec.implementations.local import LocalFileSystem

from ser_tasks.config import ManifestConfig
from ser_tasks.corpus.corpora import RECIPES, ParseError, parse_name
from ser_tasks.errors import InputError
from ser_tasks.remote import fs_options

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
COLUMNS = ["clip_id", "path", "corpus", "speaker", "sex", "emotion", "intensity", "sentence"]


@dataclass
class Manifest:
    """A corpus listing.

    Attributes:
        clips: one row per clip, columns :data:`COLUMNS` (``speaker`` is corpus-prefixed,
            ``"ravdess:01"``, or ``None`` when unknown); plus ``split`` once
            :func:`ser_tasks.corpus.split.assign_split` has run.
        skipped: columns ``path``, ``reason``: audio files that were not taken, and why.
        corpus: the corpus the roots were read as; several joined by ``+`` in sorted order
            (``crema_d+ravdess``).
        root: the roots as given, joined by a space.
        notes: what the reader should know (sources of demographics, detected corpora, filters).
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
    """Name the corpus most files belong to.

    A recipe that claims a file by its place (a folder-per-emotion layout) is asked first, then the
    first whose naming scheme reads the file's name.

    Raises:
        InputError: no file matches any known layout or naming scheme.
    """
    votes: Counter[str] = Counter()
    claimers = [r for r in RECIPES.values() if r.claims is not None]
    for p in paths:
        claimed = next((r.name for r in claimers if r.claims(p)), None)
        if claimed is not None:
            votes[claimed] += 1
            continue
        named = parse_name(p)
        if named is not None:
            votes[named[0]] += 1
    if not votes:
        raise InputError(
            f"no file name matches a known corpus ({', '.join(RECIPES)}) among {len(paths)} audio files; "
            "name the corpus with --corpus"
        )
    return votes.most_common(1)[0][0]


def parse_roots(roots: str | Sequence[str]) -> list[tuple[str, str | None]]:
    """``(path, corpus or None)`` for each root; ``"ravdess=PATH"`` names the corpus of a root.

    Raises:
        InputError: no roots, or a ``NAME=PATH`` whose name is not a corpus.
    """
    items = [roots] if isinstance(roots, str) else list(roots)
    if not items:
        raise InputError("no corpus root given")
    out = []
    for item in items:
        name, sep, path = str(item).partition("=")
        if sep and "/" not in name and ":" not in name:
            if name not in RECIPES:
                raise InputError(f"{item}: unknown corpus {name!r}; choose one of {', '.join(RECIPES)}")
            out.append((path, name))
        else:
            out.append((str(item), None))
    return out


def _top_folder(base: str, path: str) -> str:
    """The first folder below ``base`` that holds ``path`` (``""`` for a file lying in ``base`` itself)."""
    rel = path[len(base.rstrip("/")) + 1:] if path.startswith(base.rstrip("/") + "/") else posixpath.basename(path)
    head, _, rest = rel.partition("/")
    return head if rest else ""


def _base(root: str, storage_options: dict | None) -> str:
    """``root`` spelled as :func:`list_audio_files` spells the files below it (absolute path or full URL)."""
    fs, path = fsspec.core.url_to_fs(root, **fs_options(root, storage_options))
    return os.path.abspath(path).replace(os.sep, "/") if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


def build_manifest(
    root: str | Sequence[str],
    corpus: str | None = None,
    storage_options: dict | None = None,
    crema_demographics: str | None = None,
    config: ManifestConfig | None = None,
) -> Manifest:
    """List the roots, detect (or take) each one's corpus, and parse every audio file into a manifest row.

    Args:
        root: a local folder or fsspec URL, or several; ``NAME=PATH`` names a root's corpus.
            Within an unnamed root, the files under each top-level subfolder are detected on their
            own, so ``data/`` holding ``ravdess/`` and ``emodb/`` reads as both.
        corpus: one of :data:`ser_tasks.corpus.corpora.CORPORA` for every unnamed root, or
            ``None``/``"auto"`` to detect.
        storage_options: fsspec options for remote roots (credentials, endpoint).
        crema_demographics: path/URL of CREMA-D's ``VideoDemographics.csv``; when ``None``, one
            lying directly in the CREMA-D files' top folder or their root is used if present.
        config: emotions to keep (others are skipped, with the reason) and a speaker pattern for
            files whose names carry no speaker a loader knows.

    Raises:
        FileNotFoundError: a root is not a folder.
        InputError: unknown ``corpus``, a root with no audio files, or no file that parses.
    """
    cfg = config or ManifestConfig()
    if corpus not in (None, "auto") and corpus not in RECIPES:
        raise InputError(f"unknown corpus {corpus!r}; choose one of {', '.join(RECIPES)}")
    sources = parse_roots(root)
    pattern = re.compile(cfg.speaker_pattern) if cfg.speaker_pattern else None
    keep = set(cfg.emotions) if cfg.emotions else None
    given = {"crema_d": crema_demographics}  # metadata files the user named, by corpus
    rows, skipped, seen, notes = [], [], {}, []
    corpora: set[str] = set()  # of the rows (a folder layout's clips keep their own corpus when recognised)
    detected: set[str] = set()  # the parsers that read the files
    unmatched = n_files = 0
    for root_path, named in sources:
        paths = list_audio_files(root_path, storage_options)
        n_files += len(paths)
        if not paths:
            raise InputError(f"{root_path}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
        fixed = named or (corpus if corpus not in (None, "auto") else None)
        groups: dict[str, list[str]] = {}
        if fixed:
            groups[""] = paths
        else:
            base = _base(root_path, storage_options)
            for p in paths:
                groups.setdefault(_top_folder(base, p.replace(os.sep, "/")), []).append(p)
        for sub, files in groups.items():
            where = posixpath.join(root_path.rstrip("/"), sub) if sub else root_path
            try:
                name = fixed or detect_corpus(files)
            except InputError:
                skipped += [{"path": p, "reason": f"no known corpus naming scheme among the {len(files)} files of "
                                                  f"{where}; name it with --corpus NAME={where}"} for p in files]
                continue
            recipe = RECIPES[name]
            meta, note = recipe.metadata([where, root_path] if sub else [root_path], storage_options, given)
            if note is not None and note not in notes:
                notes.append(note)
            detected.add(name)
            parser = recipe.parse
            for p in files:
                try:
                    info = parser(p, meta)
                except ParseError as exc:
                    skipped.append({"path": p, "reason": str(exc)})
                    continue
                if keep is not None and info.emotion not in keep:
                    skipped.append({"path": p, "reason": f"emotion {info.emotion!r} is not among the kept "
                                                         f"emotions ({','.join(cfg.emotions)})"})
                    continue
                clip_id = f"{name}/{info.key}"
                if clip_id in seen:
                    skipped.append({"path": p, "reason": f"duplicate of clip {clip_id} ({seen[clip_id]})"})
                    continue
                seen[clip_id] = p
                speaker = info.speaker if recipe.own_speakers or info.speaker is None else f"{name}:{info.speaker}"
                if speaker is None and pattern is not None:
                    m = pattern.search(posixpath.splitext(posixpath.basename(p))[0])
                    if m:
                        speaker = f"{name}:{m.group(1) if pattern.groups else m.group(0)}"
                    else:
                        unmatched += 1
                row_corpus = speaker.split(":")[0] if recipe.own_speakers and speaker else name
                corpora.add(row_corpus)
                rows.append({"clip_id": clip_id, "path": p, "corpus": row_corpus, "speaker": speaker, "sex": info.sex,
                             "emotion": info.emotion, "intensity": info.intensity, "sentence": info.sentence})
    roots_text = " ".join(f"{n}={p}" if n else p for p, n in sources)
    if not rows:
        as_what = "/".join(sorted(detected)) or "a known corpus"
        raise InputError(f"{roots_text}: none of {n_files} audio files parses as {as_what}; first reason: "
                         f"{skipped[0]['reason']}")
    if unmatched:
        notes.append(f"{unmatched} file name(s) without a speaker do not match --speaker-pattern "
                     f"{cfg.speaker_pattern!r}: each is its own group in the split")
    if len(corpora) > 1:
        counts = Counter(r["corpus"] for r in rows)
        notes.append("corpora: " + ", ".join(f"{c} {counts[c]} clips" for c in sorted(counts)))
    clips = pd.DataFrame(rows, columns=COLUMNS)
    return Manifest(clips=clips, skipped=pd.DataFrame(skipped, columns=["path", "reason"]),
                    corpus="+".join(sorted(detected)), root=roots_text, notes=notes)


def read_manifest_csv(url: str, storage_options: dict | None = None, config: ManifestConfig | None = None) -> Manifest:
    """A manifest from a CSV of one clip per row (as ``ser manifest --out`` writes, or a user's own).

    Columns: ``path`` and ``emotion`` (a canonical name, :data:`ser_tasks.emotions.EMOTIONS`)
    required; ``speaker``, ``corpus``, ``clip_id``, ``sex``, ``intensity``, ``sentence`` optional.
    A relative ``path`` is relative to the CSV's folder. ``config.emotions`` keeps only those classes.

    Args:
        url: local path or fsspec URL of the CSV.
        storage_options: fsspec options for a remote CSV.
        config: emotions to keep (others are listed as skipped).

    Returns:
        The :class:`Manifest`; ``corpus`` is the CSV's ``corpus`` values joined by ``+``, or
        ``"manifest"`` when it has none.

    Raises:
        InputError: the CSV cannot be read, lacks ``path`` or ``emotion``, names an unknown emotion
            (with its row), or keeps no clip.
    """
    from ser_tasks.emotions import EMOTIONS

    cfg = config or ManifestConfig()
    try:
        with fsspec.open(url, "rt", **fs_options(url, storage_options)) as fh:
            table = pd.read_csv(fh, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{url}: cannot read the manifest CSV ({exc})") from exc
    missing = [c for c in ("path", "emotion") if c not in table.columns]
    if missing:
        raise InputError(f"{url}: the manifest CSV has no {' or '.join(missing)} column")
    unknown = table.index[~table["emotion"].isin(EMOTIONS)]
    if len(unknown):
        i = unknown[0]
        raise InputError(f"{url}: row {i + 2} has emotion {table['emotion'][i]!r}; "
                         f"use one of {', '.join(EMOTIONS)}")
    base = posixpath.dirname(url) if "://" in url else os.path.dirname(os.path.abspath(url))
    paths = [p if "://" in p or os.path.isabs(p) else (posixpath.join(base, p) if "://" in base
                                                       else os.path.join(base, p)) for p in table["path"]]
    clips = pd.DataFrame({
        "clip_id": table["clip_id"] if "clip_id" in table else [posixpath.basename(p) for p in paths],
        "path": paths,
        "corpus": table["corpus"].replace("", "manifest") if "corpus" in table else "manifest",
        "speaker": table["speaker"].replace("", None) if "speaker" in table else None,
        **{c: table[c].replace("", None) if c in table else None for c in ("sex", "intensity", "sentence")},
        "emotion": table["emotion"]}, columns=COLUMNS)
    keep = set(cfg.emotions) if cfg.emotions else None
    skipped = pd.DataFrame(columns=["path", "reason"])
    if keep is not None:
        out = ~clips["emotion"].isin(keep)
        kept = ",".join(cfg.emotions)
        skipped = pd.DataFrame({"path": clips.loc[out, "path"], "reason": [
            f"emotion {e!r} is not among the kept emotions ({kept})" for e in clips.loc[out, "emotion"]]})
        clips = clips[~out].reset_index(drop=True)
    if clips.empty:
        raise InputError(f"{url}: the manifest CSV keeps no clip")
    return Manifest(clips=clips, skipped=skipped.reset_index(drop=True),
                    corpus="+".join(sorted(clips["corpus"].unique())), root=url,
                    notes=[f"clips from the manifest {url}"])
