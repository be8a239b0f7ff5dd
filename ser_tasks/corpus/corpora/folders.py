"""About folder-per-emotion layouts.

Collections such as the combined Kaggle "audio emotions" set sort clips into folders named after
the emotion (``Angry/``, ``Happy/``, ``Surprised/`` ...). The label comes from the folder. Those
clips keep their original corpus names, so the speaker (and sex, sentence) is recovered by
trying the other corpora's parsers on the file name; when none fits, the speaker is unknown and
the split can only keep that clip, not its speaker, on one side.
"""

from __future__ import annotations

from ser_tasks.corpus.corpora import crema_d
from ser_tasks.corpus.corpora.base import ClipInfo, ParseError, Recipe, parent_name, stem
from ser_tasks.emotions import FOLDER_NAMES

NAME = "folders"


def folder_emotion(path: str) -> str | None:
    """Canonical emotion of the file's folder name, or ``None`` when the folder is not an emotion."""
    return FOLDER_NAMES.get(parent_name(path).strip().lower())


def parse(path: str, meta: dict | None = None) -> ClipInfo:
    """Label from the folder; speaker from the first corpus parser that accepts the name.

    Returns a :class:`ClipInfo` whose ``speaker`` is ``"<corpus>:<id>"`` when recognised.

    Raises:
        ParseError: the folder name is not an emotion.
    """
    from ser_tasks.corpus.corpora import parse_name  # the per-corpus parsers, tried in a fixed order

    emotion = folder_emotion(path)
    if emotion is None:
        raise ParseError(f"folder {parent_name(path)!r} is not an emotion name ({', '.join(sorted(FOLDER_NAMES))})")
    named = parse_name(path, meta)
    if named is None:
        return ClipInfo(key=f"{parent_name(path)}/{stem(path)}", speaker=None, emotion=emotion)
    corpus, info = named
    return ClipInfo(key=f"{corpus}:{info.key}", speaker=f"{corpus}:{info.speaker}", emotion=emotion,
                    sex=info.sex, intensity=info.intensity, sentence=info.sentence)


#: Not detected from names (the folder says the emotion); CREMA-D clips among them read its demographics.
RECIPE = Recipe(NAME, parse, from_names=False, metadata=crema_d.metadata, own_speakers=True,
                claims=lambda path: folder_emotion(path) is not None)
