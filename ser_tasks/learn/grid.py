"""Grids of training settings for ``ser sweep``: a file of dotted keys and their values, expanded.

A grid file (YAML, JSON or TOML) maps training settings to lists of values::

    train.model: [tdnn, compact_cnn]
    train.learning_rate: [0.003, 0.001]
    train.spec_freq_masks: [0, 1]

and stands for every combination (here 8), each trained on the same store group. Only ``train.*``
settings can vary: the others change the features, which belong to another store group.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from ser_tasks.config import PipelineConfig, read_mapping
from ser_tasks.errors import InputError


def read_grid(path: str | Path) -> dict[str, list[Any]]:
    """The grid in ``path``: dotted ``train.*`` key -> list of values (a single value becomes a list of one).

    Raises:
        FileNotFoundError: no such file.
        InputError: not a mapping, an empty list, a key outside ``train.``, or an unknown suffix.
    """
    try:
        data = read_mapping(path)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    if not isinstance(data, dict) or not data:
        raise InputError(f"{path}: a grid maps settings (train.model ...) to lists of values")
    grid = {}
    for key, values in data.items():
        if not str(key).startswith("train."):
            raise InputError(f"{path}: {key!r} cannot vary in a sweep: only train.* settings share one store group")
        values = values if isinstance(values, list) else [values]
        if not values:
            raise InputError(f"{path}: {key!r} has no values")
        grid[str(key)] = values
    return grid


def expand(config: PipelineConfig, grid: dict[str, list[Any]]) -> list[tuple[str, PipelineConfig]]:
    """Every combination of ``grid`` applied to ``config``: ``(name, config)`` in grid order.

    The name lists the varied settings without their section: ``model=tdnn learning_rate=0.003``.

    Raises:
        ValueError: a combination that fails validation (an unknown key, a value out of range).
    """
    keys = list(grid)
    out = []
    for values in itertools.product(*(grid[k] for k in keys)):
        combo = dict(zip(keys, values, strict=True))
        name = " ".join(f"{k.split('.', 1)[1]}={v}" for k, v in combo.items())
        out.append((name, config.with_overrides(combo)))
    return out
