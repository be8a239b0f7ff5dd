"""About the RAVDESS corpus.

The Ryerson Audio-Visual Database of Emotional Speech and Song (Livingstone & Russo 2018, PLoS ONE
13(5): e0196391): 24 actors (odd ids male, even female), speech clips named
``MM-VV-EE-II-SS-RR-AA`` = modality (01 AV, 02 video, 03 audio), vocal channel (01 speech,
02 song), emotion (01 neutral ... 08 surprised), intensity (01 normal, 02 strong), statement
(01/02), repetition (01/02), actor (01-24). 8 emotion classes.
"""

from __future__ import annotations

from ser_tasks.corpus.corpora.base import ClipInfo, ParseError, Recipe, stem
from ser_tasks.emotions import RAVDESS

NAME = "ravdess"
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
INTENSITY = {"01": "normal", "02": "strong"}


def parse(path: str, meta: dict | None = None) -> ClipInfo:
    """Parse a RAVDESS file name.

    Raises:
        ParseError: not seven two-digit fields, or a field outside its documented codes.
    """
    name = stem(path)
    fields = name.split("-")
    if len(fields) != 7 or not all(len(f) == 2 and f.isdigit() for f in fields):
        raise ParseError(f"RAVDESS names are 7 two-digit fields MM-VV-EE-II-SS-RR-AA, got {name!r}")
    modality, channel, emotion, intensity, statement, _rep, actor = fields
    if modality not in {"01", "02", "03"}:
        raise ParseError(f"RAVDESS modality {modality!r} is not 01-03")
    if channel not in {"01", "02"}:
        raise ParseError(f"RAVDESS vocal channel {channel!r} is not 01 (speech) or 02 (song)")
    if emotion not in RAVDESS:
        raise ParseError(f"RAVDESS emotion code {emotion!r} is not 01-08")
    if intensity not in INTENSITY:
        raise ParseError(f"RAVDESS intensity {intensity!r} is not 01 or 02")
    if statement not in STATEMENTS:
        raise ParseError(f"RAVDESS statement {statement!r} is not 01 or 02")
    if not 1 <= int(actor) <= 24:
        raise ParseError(f"RAVDESS actor {actor!r} is not 01-24")
    # Audio extracted from the AV files (modality 01) is the same take as modality 03: one key.
    key = "-".join(["03", *fields[1:]])
    return ClipInfo(
        key=key,
        speaker=actor,
        emotion=RAVDESS[emotion],
        sex="male" if int(actor) % 2 else "female",
        intensity=INTENSITY[intensity],
        sentence=STATEMENTS[statement] + (" (sung)" if channel == "02" else ""),
    )


#: The recipe the manifest builder reads (:data:`ser_tasks.corpus.corpora.RECIPES`).
RECIPE = Recipe(NAME, parse)
