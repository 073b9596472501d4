"""The tiny random twins of every external model, saved once as real model folders in the cache.

A ``tiny:`` id (:mod:`magicseg_hf.presets`) is resolved by :func:`resolve` to a folder that the
twin's builder wrote into the cache the first time it was asked for (:mod:`magicseg_hf.twins.cache`:
keyed by name, package version, seed and a digest of the builders, written atomically); the
loaders of :mod:`magicseg_hf.loading` then load that folder through exactly the code a Hub id or a
user's folder takes. So tests, CI and ``magicseg demo`` run the production loading code without
the network, and a twin folder is an ordinary checkpoint (``save_pretrained`` output, safetensors
weights, tokenizer and processor included).

Seeds: every ``tiny:`` id resolves to its twin drawn under seed 0. The builders here take a
``seed`` (``tiny_clip(seed)``, ``tiny_open_seg(seed)``, ...) and :func:`twin_folder` keys each seed
(and each set of builder options) to its own folder; ``build_open_seg("tiny", seed=S, **overrides)``
loads the folder of seed ``S`` with those overrides.

Each family's builders live in their own module (``stable_diffusion``, ``sdxl``, ``sd3``, ``flux``,
``grounding_dino``, ``owlv2``, ``sam``, ``sam2``, ``segment_anything``, ``clip``, ``open_seg``,
``causal_lm``; the offline tokenizers in ``tokenizers``). Each builder imports its own model family
when called, so building a tiny detector does not import diffusers or segment-anything. Weights are
drawn under a fixed seed (torch's global RNG is seeded for the build and the caller's state
restored after it), so every process on every machine builds the same twin, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from magicseg_hf.errors import ModelLoadError
from magicseg_hf.families import TINY_DIFFUSION_MODELS, family_of_class
from magicseg_hf.presets import (
    TINY_CAUSAL_LM,
    TINY_CLIP,
    TINY_GROUNDING_DINO,
    TINY_MM_GROUNDING_DINO,
    TINY_OPEN_SEG_MODEL,
    TINY_OWLV2,
    TINY_SAM,
    TINY_SAM2,
    TINY_SEGMENT_ANYTHING,
    is_tiny,
)
from magicseg_hf.twins._common import seeded
from magicseg_hf.twins._diffusion import tiny_t5_config
from magicseg_hf.twins.cache import TWINS_CACHE_VARIABLE, cache_root, twin_folder, twin_folder_path
from magicseg_hf.twins.causal_lm import tiny_causal_lm, write_tiny_causal_lm
from magicseg_hf.twins.clip import tiny_clip, tiny_clip_config, tiny_clip_text_config, write_tiny_clip
from magicseg_hf.twins.diffusion import (
    check_diffusion_role,
    tiny_diffusion_pipeline,
    write_tiny_diffusion_pipeline,
)
from magicseg_hf.twins.flux import random_flux, tiny_flux
from magicseg_hf.twins.grounding_dino import (
    tiny_grounding_dino,
    tiny_mm_grounding_dino,
    write_tiny_grounding_dino,
    write_tiny_mm_grounding_dino,
)
from magicseg_hf.twins.open_seg import tiny_open_seg, write_tiny_open_seg
from magicseg_hf.twins.owlv2 import tiny_owlv2, write_tiny_owlv2
from magicseg_hf.twins.sam import tiny_transformers_sam, write_tiny_transformers_sam
from magicseg_hf.twins.sam2 import tiny_sam2, write_tiny_sam2
from magicseg_hf.twins.sd3 import random_sd3, tiny_sd3
from magicseg_hf.twins.sdxl import random_sdxl, tiny_sdxl
from magicseg_hf.twins.segment_anything import (
    CHECKPOINT_NAME,
    MODEL_TYPE,
    SEGMENT_ANYTHING_MODEL_TYPES,
    tiny_segment_anything,
    tiny_segment_anything_architecture,
    write_tiny_segment_anything,
)
from magicseg_hf.twins.stable_diffusion import random_stable_diffusion, tiny_stable_diffusion
from magicseg_hf.twins.tokenizers import (
    tiny_bert_tokenizer,
    tiny_clip_tokenizer,
    tiny_owlv2_tokenizer,
    tiny_t5_tokenizer,
)


@dataclass(frozen=True)
class Twin:
    """A ``tiny:`` id: the role it may be loaded for and the function that writes its folder.

    ``role`` is what the loaders ask for: ``text-to-image`` or ``inpainting`` (diffusion), a
    detector kind (``grounding-dino``, ``mm-grounding-dino``, ``owlv2``), a segmenter backend
    (``transformers``, ``sam2``, ``segment-anything``), ``class-score``, ``prompt`` or ``open-seg``.
    """

    model_id: str
    role: str
    write: Callable[..., None]


def _diffusion_twins() -> dict[str, Twin]:
    twins = {}
    for model_id, cls in TINY_DIFFUSION_MODELS.items():
        role = "inpainting" if family_of_class(cls).inpainting else "text-to-image"
        twins[model_id] = Twin(model_id, role, partial(write_tiny_diffusion_pipeline, model_id))
    return twins


#: Every ``tiny:`` id -> its twin.
TWINS: dict[str, Twin] = {
    **_diffusion_twins(),
    TINY_GROUNDING_DINO: Twin(TINY_GROUNDING_DINO, "grounding-dino", write_tiny_grounding_dino),
    TINY_MM_GROUNDING_DINO: Twin(TINY_MM_GROUNDING_DINO, "mm-grounding-dino", write_tiny_mm_grounding_dino),
    TINY_OWLV2: Twin(TINY_OWLV2, "owlv2", write_tiny_owlv2),
    TINY_SAM: Twin(TINY_SAM, "transformers", write_tiny_transformers_sam),
    TINY_SAM2: Twin(TINY_SAM2, "sam2", write_tiny_sam2),
    TINY_SEGMENT_ANYTHING: Twin(TINY_SEGMENT_ANYTHING, "segment-anything", write_tiny_segment_anything),
    TINY_CLIP: Twin(TINY_CLIP, "class-score", write_tiny_clip),
    TINY_CAUSAL_LM: Twin(TINY_CAUSAL_LM, "prompt", write_tiny_causal_lm),
    TINY_OPEN_SEG_MODEL: Twin(TINY_OPEN_SEG_MODEL, "open-seg", write_tiny_open_seg),
}
_DIFFUSION_ROLES = {"text-to-image": False, "inpainting": True}


def _check_role(model_id: str, role: str, what: str) -> Twin:
    """The twin ``model_id`` if it may be loaded for ``role``; else one :class:`ModelLoadError` line."""
    if role in _DIFFUSION_ROLES:
        check_diffusion_role(model_id, _DIFFUSION_ROLES[role], what)
    twin = TWINS.get(model_id)
    if twin is None or twin.role != role:
        expected = ", ".join(repr(t.model_id) for t in TWINS.values() if t.role == role)
        raise ModelLoadError(f"unknown tiny {what} {model_id!r}; the tiny preset has {expected}")
    return twin


def resolve(
    model_id: str, role: str, what: str, *, seed: int = 0, options: Mapping[str, Any] | None = None
) -> str:
    """``model_id`` as a loader passes it to ``from_pretrained``: a ``tiny:`` id becomes its twin's
    cache folder (written on first use, :func:`twin_folder`); any other id is returned unchanged.

    Args:
        model_id: a Hub id, a local folder or a ``tiny:`` id.
        role: what the loader loads (see :class:`Twin`); a twin of another role is refused.
        what: the model's name in messages (e.g. ``"SAM 2 model"``).
        seed, options: the twin's seed and builder options (each has its own folder).

    Raises:
        ModelLoadError: an unknown ``tiny:`` id, or one of another role.
    """
    if not is_tiny(model_id):
        return model_id
    twin = _check_role(model_id, role, what)
    return str(twin_folder(twin.model_id, twin.write, seed, options))


def segment_anything_checkpoint(model_id: str | None) -> tuple[str, str]:
    """``(checkpoint file, model type)`` of the segment-anything backend when no checkpoint is given.

    The backend reads a ``.pth`` file, not a model id: a ``tiny:`` id (any: the tiny preset names
    its SAM role's id) selects the tiny twin's checkpoint in the cache, model type ``tiny``.

    Raises:
        ModelLoadError: ``model_id`` is not a ``tiny:`` id (a real checkpoint file is needed).
    """
    if not is_tiny(model_id):
        raise ModelLoadError(
            "the segment-anything backend needs `sam_checkpoint` (a .pth file) outside the tiny preset"
        )
    twin = TWINS[TINY_SEGMENT_ANYTHING]
    folder = twin_folder(twin.model_id, twin.write)
    return str(folder / CHECKPOINT_NAME), MODEL_TYPE


__all__ = [
    "SEGMENT_ANYTHING_MODEL_TYPES",
    "TWINS",
    "TWINS_CACHE_VARIABLE",
    "Twin",
    "cache_root",
    "random_flux",
    "random_sd3",
    "random_sdxl",
    "random_stable_diffusion",
    "resolve",
    "seeded",
    "segment_anything_checkpoint",
    "tiny_bert_tokenizer",
    "tiny_causal_lm",
    "tiny_clip",
    "tiny_clip_config",
    "tiny_clip_text_config",
    "tiny_clip_tokenizer",
    "tiny_diffusion_pipeline",
    "tiny_flux",
    "tiny_grounding_dino",
    "tiny_mm_grounding_dino",
    "tiny_open_seg",
    "tiny_owlv2",
    "tiny_owlv2_tokenizer",
    "tiny_sam2",
    "tiny_sd3",
    "tiny_sdxl",
    "tiny_segment_anything",
    "tiny_segment_anything_architecture",
    "tiny_stable_diffusion",
    "tiny_t5_config",
    "tiny_t5_tokenizer",
    "tiny_transformers_sam",
    "twin_folder",
    "twin_folder_path",
]
