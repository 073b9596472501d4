"""Test helpers over the package's procedural scene source (:mod:`magicseg_hf.generation.procedural`).

There is one procedural generator in the tree, the package's; this module only keeps the helper
names other tests import: :data:`CLASSES`, :func:`procedural_rows` (``num_rows`` first) and
:func:`write_procedural_dataset`, which writes a folder through ``generate(... source="procedural")``,
exactly as ``magicseg generate --source procedural`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicseg_hf.generation import procedural

#: The tests' scene classes (each drawn as itself).
CLASSES: list[str] = ["sun", "house", "tree"]


def procedural_rows(num_rows: int, seed: int = 0, size: int = 64, classes: list[str] | None = None) -> list[dict[str, Any]]:
    """The package's :func:`~magicseg_hf.generation.procedural.procedural_rows` (``num_rows`` first)."""
    return procedural.procedural_rows(list(classes or CLASSES), num_rows, seed=seed, size=size)


def write_procedural_dataset(
    folder: str | Path, num_rows: int = 128, seed: int = 0, size: int = 64, classes: list[str] | None = None
) -> Path:
    """A dataset folder of ``num_rows`` procedural scenes (``vocabulary.txt`` = the classes), written by
    the generation run with ``source="procedural"``."""
    from magicseg_hf.generation.config import GenerationConfig
    from magicseg_hf.generation.pipeline import generate

    config = GenerationConfig(source="procedural", classes=list(classes or CLASSES), num_pairs=num_rows, seed=seed,
                              height=size, width=size, preset="tiny")
    generate(config, folder)
    return Path(folder)
