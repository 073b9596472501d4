"""Dataset generation: class names -> counterfactual image pairs -> pixel labels -> a dataset folder.

Public names: :class:`GenerationConfig`, :func:`generate`, :class:`GenerationSummary`,
:func:`counterfactual_prompt`, :func:`load_vocabulary`. Imported lazily, so
``import magicseg_hf.generation`` is cheap.

The stages, in data-flow order: ``vocabulary`` -> ``names`` (class-name matching) -> ``prompts``
-> ``counterfactual`` (prompt text) -> ``images`` -> ``annotate`` -> ``class_scores`` (the CLIP
class check) -> ``modes`` (each counterfactual mode's steps) -> ``components`` (the assembler)
-> ``pipeline`` (``generate()``) -> ``writer``; ``config`` holds the settings.
"""

from __future__ import annotations

from magicseg_hf.lazy import lazy_exports

#: Public name -> the module that defines it.
_EXPORTS = {
    "GenerationConfig": "magicseg_hf.generation.config",
    "generate": "magicseg_hf.generation.pipeline",
    "GenerationSummary": "magicseg_hf.generation.writer",
    "counterfactual_prompt": "magicseg_hf.generation.counterfactual",
    "load_vocabulary": "magicseg_hf.generation.vocabulary",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
