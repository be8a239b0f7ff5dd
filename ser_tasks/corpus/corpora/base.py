"""Shared types of the corpus modules: what a parsed file name yields, and how parsing fails."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

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
