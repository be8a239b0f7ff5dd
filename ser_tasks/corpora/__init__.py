"""One module per corpus; each turns a file path into the same :class:`ClipInfo` labels.

``PARSERS`` maps corpus name -> ``parse(path, meta) -> ClipInfo`` (raises ``ParseError``).
``NAME_PARSERS`` are those that read labels from the file name alone, in detection order.
"""

from __future__ import annotations

from . import crema_d, emodb, folders, ravdess, savee, tess
from .base import ClipInfo, ParseError

NAME_PARSERS = {
    ravdess.NAME: ravdess.parse,
    crema_d.NAME: crema_d.parse,
    emodb.NAME: emodb.parse,
    savee.NAME: savee.parse,
    tess.NAME: tess.parse,
}
PARSERS = {**NAME_PARSERS, folders.NAME: folders.parse}
CORPORA = tuple(PARSERS)

__all__ = ["CORPORA", "NAME_PARSERS", "PARSERS", "ClipInfo", "ParseError"]
