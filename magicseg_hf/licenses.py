"""Which licence binds each model a run loads, and which commit of it was loaded.

A generated dataset inherits obligations from its models: the generator's licence binds the
images, and the card says so for every model (generator, inpainting model, detector, segmenter,
class-check CLIP, prompt LLM). The licence of a known checkpoint comes from the table below; of any
other one from its model card's ``license`` field, read from a local folder or the local Hub cache
(never the network); otherwise it is reported as unknown with a pointer to the model's card.

Torch-free: :mod:`magicseg_hf.cards` and the generation record import it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

__all__ = ["MODEL_LICENSES", "TINY_LICENSE", "License", "loaded_commit", "model_license"]

#: (Hub licence id, the licence's name).
License = tuple[str, str]

#: The licence of the ``tiny:`` twins: random weights built by this package.
TINY_LICENSE: License = ("apache-2.0", "Apache-2.0 (random tiny weights built by magicseg-hf)")
#: The licence of drawn scenes (``--source procedural``): magicseg-hf's own output, no model involved.
PROCEDURAL_LICENSE: License = ("apache-2.0", "Apache-2.0 (scenes drawn by magicseg-hf's procedural source)")

_OPENRAIL_M: License = ("creativeml-openrail-m", "CreativeML OpenRAIL-M")
_OPENRAIL_PP: License = ("openrail++", "CreativeML OpenRAIL++-M")
_STABILITY_COMMUNITY: License = ("other", "Stability AI Community License")
_FLUX_DEV: License = ("other", "FLUX.1 [dev] Non-Commercial License")
_APACHE: License = ("apache-2.0", "Apache-2.0")
_MIT: License = ("mit", "MIT")

#: Known checkpoints -> licence, as their model cards state it. Prefixes end with "/" or "-"
#: and match every checkpoint that starts with them.
MODEL_LICENSES: dict[str, License] = {
    "stable-diffusion-v1-5/": _OPENRAIL_M,
    "runwayml/stable-diffusion-": _OPENRAIL_M,
    "CompVis/stable-diffusion-": _OPENRAIL_M,
    "stabilityai/stable-diffusion-2-": _OPENRAIL_PP,
    "stabilityai/stable-diffusion-xl-": _OPENRAIL_PP,
    "diffusers/stable-diffusion-xl-1.0-inpainting-0.1": _OPENRAIL_PP,
    "stabilityai/stable-diffusion-3-": _STABILITY_COMMUNITY,
    "stabilityai/stable-diffusion-3.5-": _STABILITY_COMMUNITY,
    "black-forest-labs/FLUX.1-schnell": _APACHE,
    "black-forest-labs/FLUX.1-dev": _FLUX_DEV,
    "black-forest-labs/FLUX.1-Fill-dev": _FLUX_DEV,
    "IDEA-Research/grounding-dino-": _APACHE,
    "openmmlab-community/mm_grounding_dino_": _APACHE,
    "google/owlv2-": _APACHE,
    "facebook/sam-vit-": _APACHE,
    "facebook/sam2": _APACHE,
    "openai/clip-vit-": _MIT,
    "Qwen/Qwen2.5-0.5B-Instruct": _APACHE,
    "Qwen/Qwen2.5-1.5B-Instruct": _APACHE,
    "Qwen/Qwen2.5-7B-Instruct": _APACHE,
}

_UNKNOWN_NAME = "unknown: see the model's card"


def _card_license(model_id: str, revision: str | None) -> License | None:
    """The ``license`` (and ``license_name``) of a local folder's or a cached repo's model card."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.repocard import metadata_load

    path = Path(model_id).expanduser()
    card: Path | None = path / "README.md" if path.is_dir() else None
    if card is None and not path.exists():
        with contextlib.suppress(Exception):
            cached = try_to_load_from_cache(model_id, "README.md", revision=revision)
            card = Path(cached) if isinstance(cached, str) else None
    if card is None or not card.is_file():
        return None
    with contextlib.suppress(Exception):
        metadata = metadata_load(card) or {}
        license_id = metadata.get("license")
        if isinstance(license_id, str) and license_id:
            name = metadata.get("license_name") or metadata.get("license_link") or license_id
            return license_id, str(name)
    return None


def model_license(model_id: str | None, revision: str | None = None) -> License:
    """(Hub licence id, name) of ``model_id``: a ``tiny:`` twin, a known checkpoint, or the licence
    its model card declares (local folder or cache only); ``("other", "unknown: ...")`` otherwise."""
    if not model_id:
        return "other", _UNKNOWN_NAME
    if str(model_id).startswith("tiny:"):
        return TINY_LICENSE
    for key, found in MODEL_LICENSES.items():
        if model_id == key or (key.endswith(("/", "-", "_", "sam2")) and model_id.startswith(key)):
            return found
    return _card_license(model_id, revision) or ("other", _UNKNOWN_NAME)


def loaded_commit(model_id: str | None, revision: str | None = None) -> str | None:
    """The commit of ``model_id`` in the local Hub cache that ``revision`` resolves to (the one a
    load reads), or None for a ``tiny:`` twin, a local folder or an uncached repo."""
    if not model_id or str(model_id).startswith("tiny:") or Path(model_id).expanduser().exists():
        return None
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model_index.json", "config.json", "preprocessor_config.json"):
        with contextlib.suppress(Exception):
            cached = try_to_load_from_cache(model_id, filename, revision=revision)
            if isinstance(cached, str):
                parts = Path(cached).parts
                if "snapshots" in parts:
                    return parts[parts.index("snapshots") + 1]
    return None
