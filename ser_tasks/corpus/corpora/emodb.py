"""About the EmoDB corpus.

Berlin Database of Emotional Speech (Burkhardt et al. 2005, Interspeech): 10 German actors
(5 male, 5 female), 10 texts, 7 emotions, 535 clips, named ``03a01Fa`` = speaker (2 digits),
text (a01-b10), emotion letter (W anger, L boredom, E disgust, A fear, F happiness, T sadness,
N neutral), version letter.
"""

from __future__ import annotations

import re

from ser_tasks.corpus.corpora.base import ClipInfo, ParseError, Recipe, stem
from ser_tasks.emotions import EMODB

NAME = "emodb"
SEX = {"03": "male", "10": "male", "11": "male", "12": "male", "15": "male",
       "08": "female", "09": "female", "13": "female", "14": "female", "16": "female"}
_NAME = re.compile(r"^(\d{2})([ab]\d{2})([A-Z])([a-z])$")


def parse(path: str, meta: dict | None = None) -> ClipInfo:
    """Parse an EmoDB file name.

    Raises:
        ParseError: the name is not ``SStttEv``, or the speaker or emotion letter is unknown.
    """
    name = stem(path)
    match = _NAME.match(name)
    if not match:
        raise ParseError(f"EmoDB names are speaker, text, emotion letter, version (03a01Fa), got {name!r}")
    speaker, text, letter, _version = match.groups()
    if speaker not in SEX:
        raise ParseError(f"EmoDB speaker {speaker!r} is not one of {', '.join(sorted(SEX))}")
    if letter not in EMODB:
        raise ParseError(f"EmoDB emotion letter {letter!r} is not one of {', '.join(EMODB)}")
    return ClipInfo(key=name, speaker=speaker, emotion=EMODB[letter], sex=SEX[speaker], sentence=text)


#: The recipe the manifest builder reads (:data:`ser_tasks.corpus.corpora.RECIPES`).
RECIPE = Recipe(NAME, parse)
