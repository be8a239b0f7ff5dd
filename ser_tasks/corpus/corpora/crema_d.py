"""About the CREMA-D corpus.

Crowd-sourced Emotional Multimodal Actors Dataset (Cao et al. 2014, IEEE Trans. Affective
Computing 5(4):377-390): 7,442 clips by 91 actors (1001-1091), named
``AAAA_SSS_EEE_LL`` = actor, sentence code (12), emotion (ANG DIS FEA HAP NEU SAD), level
(LO MD HI, XX unspecified). Sex comes from ``VideoDemographics.csv`` when it is given.
"""

from __future__ import annotations

import csv
import io
import posixpath
from collections.abc import Mapping, Sequence

import fsspec

from ser_tasks.corpus.corpora.base import ClipInfo, ParseError, Recipe, stem
from ser_tasks.emotions import CREMA_D
from ser_tasks.errors import InputError
from ser_tasks.remote import fs_options

NAME = "crema_d"
SENTENCES = {
    "IEO": "It's eleven o'clock", "TIE": "That is exactly what happened", "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about", "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold", "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment", "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before", "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}


def parse(path: str, meta: dict | None = None) -> ClipInfo:
    """Parse a CREMA-D file name; ``meta["sex"]`` (actor id -> sex) supplies the sex when known.

    Raises:
        ParseError: not four ``_``-separated fields, or a field outside its documented codes.
    """
    name = stem(path)
    fields = name.split("_")
    if len(fields) != 4:
        raise ParseError(f"CREMA-D names are ACTOR_SENTENCE_EMOTION_LEVEL, got {name!r}")
    actor, sentence, emotion, level = fields
    if not (actor.isdigit() and 1001 <= int(actor) <= 1091):
        raise ParseError(f"CREMA-D actor {actor!r} is not 1001-1091")
    if sentence not in SENTENCES:
        raise ParseError(f"CREMA-D sentence code {sentence!r} is not one of {', '.join(SENTENCES)}")
    if emotion not in CREMA_D:
        raise ParseError(f"CREMA-D emotion code {emotion!r} is not one of {', '.join(CREMA_D)}")
    if level not in LEVELS:
        raise ParseError(f"CREMA-D level {level!r} is not LO, MD, HI or XX")
    sex = (meta or {}).get("sex", {}).get(actor)
    return ClipInfo(key=name, speaker=actor, emotion=CREMA_D[emotion], sex=sex,
                    intensity=LEVELS[level], sentence=SENTENCES[sentence])


def read_demographics(url: str, storage_options: dict | None = None) -> dict[str, str]:
    """Actor id -> ``"male"``/``"female"`` from CREMA-D's ``VideoDemographics.csv``.

    Raises:
        InputError: the file lacks the ``ActorID`` or ``Sex`` column (message names the file).
    """
    with fsspec.open(url, "rb", **fs_options(url, storage_options)) as fh:
        text = fh.read().decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"ActorID", "Sex"} <= set(reader.fieldnames):
        raise InputError(f"{url}: expected columns ActorID and Sex, found {reader.fieldnames}")
    out = {}
    for row in reader:
        sex = row["Sex"].strip().lower()
        out[row["ActorID"].strip()] = sex if sex in {"male", "female"} else None
    return out


#: CREMA-D's demographics file, looked for directly in the folders of its clips.
DEMOGRAPHICS = "VideoDemographics.csv"


def metadata(folders: Sequence[str], storage_options: dict | None = None,
             given: Mapping[str, str | None] | None = None) -> tuple[dict, str | None]:
    """The actors' sex, from the demographics file the user named or the first found in ``folders``.

    Args:
        folders: where the clips lie (local paths or URLs), nearest first; :data:`DEMOGRAPHICS`
            lying directly in one of them is used when ``given`` names none.
        storage_options: fsspec options for remote folders.
        given: ``{"crema_d": path or URL}`` when the user named the file (``--crema-demographics``).

    Returns:
        ``({"sex": {actor: sex}}, "CREMA-D sex from <file>")``, or ``({}, None)`` when there is no file.

    Raises:
        InputError: the file lacks the ``ActorID`` or ``Sex`` column.
    """
    demo = (given or {}).get(NAME)
    for folder in folders if demo is None else ():
        candidate = posixpath.join(folder.rstrip("/"), DEMOGRAPHICS)
        fs, p = fsspec.core.url_to_fs(candidate, **fs_options(candidate, storage_options))
        if fs.exists(p):
            demo = candidate
            break
    if demo is None:
        return {}, None
    return {"sex": read_demographics(demo, storage_options)}, f"CREMA-D sex from {demo}"


#: The recipe the manifest builder reads (:data:`ser_tasks.corpus.corpora.RECIPES`).
RECIPE = Recipe(NAME, parse, metadata=metadata)
