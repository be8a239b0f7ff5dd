"""About the TESS corpus.

Toronto Emotional Speech Set (Pichora-Fuller & Dupuis 2020): two female speakers, OAF (older)
and YAF (younger), 200 target words in the carrier "Say the word ...", 7 emotions; names
``OAF_back_angry``, where ``ps`` is pleasant surprise. Capitalisation varies between copies.
"""

from __future__ import annotations

from ser_tasks.corpus.corpora.base import ClipInfo, ParseError, Recipe, stem
from ser_tasks.emotions import TESS

NAME = "tess"
SPEAKERS = {"OAF", "YAF"}


def parse(path: str, meta: dict | None = None) -> ClipInfo:
    """Parse a TESS file name (case-insensitive).

    Raises:
        ParseError: fewer than three ``_`` fields, an unknown speaker or emotion word.
    """
    name = stem(path)
    fields = name.split("_")
    if len(fields) < 3:
        raise ParseError(f"TESS names are SPEAKER_word_emotion, got {name!r}")
    speaker = fields[0].upper()
    if speaker not in SPEAKERS:
        raise ParseError(f"TESS speaker {fields[0]!r} is not OAF or YAF")
    tail2 = "_".join(fields[-2:]).lower()
    if len(fields) >= 4 and tail2 in TESS:
        emotion, word = TESS[tail2], "_".join(fields[1:-2])
    elif fields[-1].lower() in TESS:
        emotion, word = TESS[fields[-1].lower()], "_".join(fields[1:-1])
    else:
        raise ParseError(f"TESS emotion {fields[-1]!r} is not one of {', '.join(sorted(TESS))}")
    return ClipInfo(key=f"{speaker}_{word.lower()}_{fields[-1].lower()}", speaker=speaker, emotion=emotion,
                    sex="female", sentence=f"Say the word {word.lower()}")


#: The recipe the manifest builder reads (:data:`ser_tasks.corpus.corpora.RECIPES`).
RECIPE = Recipe(NAME, parse)
