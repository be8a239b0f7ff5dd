"""Shared types of the corpus recipes: the recipe itself, what a parsed file name yields, and how parsing fails."""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ser_tasks.errors import ParseError  # noqa: F401 - re-exported: each corpus module raises it


@dataclass(frozen=True)
class ClipInfo:
    """Labels parsed from one clip's path.

    Attributes:
        key: identifier unique within the corpus (usually the file stem).
        speaker: the corpus's own speaker id (``None`` when unknown), without corpus prefix.
        emotion: canonical label from :data:`ser_tasks.emotions.EMOTIONS`.
        sex: ``"male"``, ``"female"`` or ``None`` when unknown.
        intensity: corpus intensity level (e.g. ``"normal"``, ``"strong"``, ``"low"``) or ``None``.
        sentence: the scripted text or its code, or ``None``.
    """

    key: str
    speaker: str | None
    emotion: str
    sex: str | None = None
    intensity: str | None = None
    sentence: str | None = None


def stem(path: str) -> str:
    """File name without folder and extension (``/a/b/03-01.flac`` -> ``03-01``)."""
    return posixpath.splitext(posixpath.basename(path.replace("\\", "/")))[0]


def parent_name(path: str) -> str:
    """Name of the folder holding the file (``/a/Angry/x.wav`` -> ``Angry``)."""
    return posixpath.basename(posixpath.dirname(path.replace("\\", "/")))


def no_metadata(folders: Sequence[str], storage_options: dict | None = None,
                given: Mapping[str, str | None] | None = None) -> tuple[dict, str | None]:
    """The metadata of a corpus whose file names say everything: none."""
    return {}, None


@dataclass(frozen=True)
class Recipe:
    """One corpus as the manifest builder sees it; the builder itself knows no corpus by name.

    Attributes:
        name: the corpus name (``ravdess``), the prefix of its clip ids and speakers.
        parse: ``parse(path, meta) -> ClipInfo``; raises :class:`ParseError` for a file it does not read.
        from_names: whether the corpus is recognised from file names alone (detection tries these,
            in the registry's order).
        metadata: ``metadata(folders, storage_options, given) -> (meta, note)``: what the recipe
            reads besides the names for the files under ``folders`` (local paths or URLs, nearest
            first), ``meta`` passed to every ``parse``; ``given`` maps a corpus name to a metadata
            file the user named (``--crema-demographics``); ``note`` is a line for the run's notes or
            ``None``.
        own_speakers: ``parse`` returns speakers already named ``"<corpus>:<id>"`` (a folder layout
            recovers each clip's own corpus); the row's corpus is then the speaker's.
        claims: ``claims(path) -> bool`` for a recipe that recognises its files by their place
            rather than their names (a folder named after an emotion); detection asks it first.
    """

    name: str
    parse: Callable[[str, dict | None], ClipInfo]
    from_names: bool = True
    metadata: Callable[..., tuple[dict, str | None]] = field(default=no_metadata)
    own_speakers: bool = False
    claims: Callable[[str], bool] | None = None
