"""One module per corpus; each turns a file path into the same :class:`ClipInfo` labels.

``PARSERS`` maps corpus name -> ``parse(path, meta) -> ClipInfo`` (raises ``ParseError``).
``NAME_PARSERS`` are those that read labels from the file name alone, in detection order.
"""

from __future__ import annotations

from ser_tasks.corpus.corpora import crema_d, emodb, folders, ravdess, savee, tess
from ser_tasks.corpus.corpora.base import ClipInfo, ParseError

NAME_PARSERS = {
    ravdess.NAME: ravdess.parse,
    crema_d.NAME: crema_d.parse,
    emodb.NAME: emodb.parse,
    savee.NAME: savee.parse,
    tess.NAME: tess.parse,
}
PARSERS = {**NAME_PARSERS, folders.NAME: folders.parse}
CORPORA = tuple(PARSERS)


def parse_name(path: str, meta: dict | None = None) -> tuple[str, ClipInfo] | None:
    """The first corpus whose naming scheme reads ``path``'s file name (:data:`NAME_PARSERS` order), and its labels.

    Args:
        path: local path or URL of one file (SAVEE's short names also read the parent folder).
        meta: per-corpus metadata, as the parsers take it (CREMA-D's ``{"sex": {...}}``).

    Returns:
        ``(corpus name, ClipInfo)``, or ``None`` when no scheme reads the name.
    """
    for corpus, parser in NAME_PARSERS.items():
        try:
            return corpus, parser(path, meta)
        except ParseError:
            continue
    return None


__all__ = ["CORPORA", "NAME_PARSERS", "PARSERS", "ClipInfo", "ParseError", "parse_name"]
