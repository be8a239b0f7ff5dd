"""One recipe per corpus; each turns a file path into the same :class:`ClipInfo` labels.

``RECIPES`` maps corpus name -> :class:`Recipe` (its parser, whether names identify it, the metadata
it reads), in detection order; adding a corpus is one module and one entry here. ``PARSERS`` maps
corpus name -> ``parse(path, meta) -> ClipInfo`` (raises ``ParseError``); ``NAME_PARSERS`` are those
that read labels from the file name alone, in detection order.
"""

from __future__ import annotations

from ser_tasks.corpus.corpora import crema_d, emodb, folders, ravdess, savee, tess
from ser_tasks.corpus.corpora.base import ClipInfo, ParseError, Recipe

RECIPES: dict[str, Recipe] = {r.name: r for r in (ravdess.RECIPE, crema_d.RECIPE, emodb.RECIPE, savee.RECIPE,
                                                  tess.RECIPE, folders.RECIPE)}
NAME_PARSERS = {name: r.parse for name, r in RECIPES.items() if r.from_names}
PARSERS = {name: r.parse for name, r in RECIPES.items()}
CORPORA = tuple(PARSERS)


def parse_name(path: str, meta: dict | None = None) -> tuple[str, ClipInfo] | None:
    """The first corpus whose naming scheme reads ``path``'s file name (:data:`RECIPES` order), and its labels.

    Args:
        path: local path or URL of one file (SAVEE's short names also read the parent folder).
        meta: per-corpus metadata, as the parsers take it (CREMA-D's ``{"sex": {...}}``).

    Returns:
        ``(corpus name, ClipInfo)``, or ``None`` when no scheme reads the name.
    """
    for corpus, recipe in RECIPES.items():
        if not recipe.from_names:
            continue
        try:
            return corpus, recipe.parse(path, meta)
        except ParseError:
            continue
    return None


__all__ = ["CORPORA", "NAME_PARSERS", "PARSERS", "RECIPES", "ClipInfo", "ParseError", "Recipe", "parse_name"]
