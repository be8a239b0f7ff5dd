"""About the SAVEE corpus.

Surrey Audio-Visual Expressed Emotion (Haq & Jackson 2009): four male speakers (DC, JE, JK, KL),
480 British English utterances, 7 emotions coded a, d, f, h, n, sa, su followed by a number.
Names are ``DC_a01`` in the combined copies or ``DC/a01`` in the original layout.
"""

from __future__ import annotations

import re

from ser_tasks.corpus.corpora.base import ClipInfo, ParseError, Recipe, parent_name, stem
from ser_tasks.emotions import SAVEE

NAME = "savee"
SPEAKERS = {"DC", "JE", "JK", "KL"}
_CODE = re.compile(r"^(sa|su|a|d|f|h|n)(\d{1,2})$")


def parse(path: str, meta: dict | None = None) -> ClipInfo:
    """Parse a SAVEE name, ``SPK_code`` or ``SPK/code``.

    Raises:
        ParseError: no known speaker, or a code that is not emotion letters plus a number.
    """
    name = stem(path)
    if "_" in name:
        speaker, _, code = name.partition("_")
    else:
        speaker, code = parent_name(path), name
    speaker = speaker.upper()
    if speaker not in SPEAKERS:
        raise ParseError(f"SAVEE speaker {speaker!r} is not DC, JE, JK or KL (name {name!r})")
    match = _CODE.match(code.lower())
    if not match:
        raise ParseError(f"SAVEE code {code!r} is not an emotion (a d f h n sa su) plus a number")
    return ClipInfo(key=f"{speaker}_{code.lower()}", speaker=speaker, emotion=SAVEE[match.group(1)],
                    sex="male", sentence=f"{match.group(1)}{match.group(2)}")


#: The recipe the manifest builder reads (:data:`ser_tasks.corpus.corpora.RECIPES`).
RECIPE = Recipe(NAME, parse)
