"""Dataset generation: class names -> counterfactual image pairs -> pixel labels -> a dataset folder.

Public names: :class:`GenerationConfig`, :func:`generate`, :class:`GenerationSummary`,
:func:`counterfactual_prompt`, :func:`load_vocabulary`. Imported lazily, so
``import magicseg_hf.generation`` is cheap.

The stages, in data-flow order: ``vocabulary`` -> ``names`` (class-name matching) -> ``prompts``
-> ``counterfactual`` (prompt text) -> ``images`` -> ``annotate`` -> ``modes`` (each
counterfactual mode's steps) -> ``components`` (the assembler) -> ``pipeline`` (``generate()``)
-> ``writer``; ``config`` holds the settings.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GenerationConfig": "magicseg_hf.generation.config",
    "generate": "magicseg_hf.generation.pipeline",
    "GenerationSummary": "magicseg_hf.generation.writer",
    "counterfactual_prompt": "magicseg_hf.generation.counterfactual",
    "load_vocabulary": "magicseg_hf.generation.vocabulary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
