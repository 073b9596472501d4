"""The tiny diffusion twins by id, and the check that a twin fits the role it is loaded for."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from magicseg_hf.errors import ModelLoadError
from magicseg_hf.families import TINY_DIFFUSION_MODELS
from magicseg_hf.twins.flux import tiny_flux
from magicseg_hf.twins.sd3 import tiny_sd3
from magicseg_hf.twins.sdxl import tiny_sdxl
from magicseg_hf.twins.stable_diffusion import tiny_stable_diffusion


def tiny_diffusion_pipeline(model_id: str, seed: int = 0) -> Any:
    """The ``tiny:`` diffusion twin ``model_id`` (any id of
    :data:`~magicseg_hf.families.TINY_DIFFUSION_MODELS`), weights drawn under ``seed``.

    Raises:
        ModelLoadError: ``model_id`` is not a tiny diffusion twin.
    """
    builders = {
        "tiny:stable-diffusion": partial(tiny_stable_diffusion, inpainting=False),
        "tiny:stable-diffusion-inpainting": partial(tiny_stable_diffusion, inpainting=True),
        "tiny:sdxl": partial(tiny_sdxl, inpainting=False),
        "tiny:sdxl-inpainting": partial(tiny_sdxl, inpainting=True),
        "tiny:sd3": partial(tiny_sd3, inpainting=False),
        "tiny:sd3-inpainting": partial(tiny_sd3, inpainting=True),
        "tiny:flux": partial(tiny_flux, fill=False),
        "tiny:flux-fill": partial(tiny_flux, fill=True),
    }
    if model_id not in builders:
        raise ModelLoadError(
            f"unknown tiny diffusion model {model_id!r}; the tiny diffusion twins are {', '.join(TINY_DIFFUSION_MODELS)}"
        )
    return builders[model_id](seed=seed)



def write_tiny_diffusion_pipeline(model_id: str, folder: Path, seed: int) -> None:
    """Save the diffusion twin ``model_id`` (every component, tokenizers included) into ``folder``."""
    tiny_diffusion_pipeline(model_id, seed=seed).save_pretrained(folder)


def check_diffusion_role(model_id: str, inpainting: bool, what: str) -> None:
    """Refuse, with one :class:`ModelLoadError` line, a ``tiny:`` id that is no diffusion twin or a
    twin of the other role (a text-to-image twin where an inpainting model is asked, or the reverse).

    ``what`` names the model in the message (``diffusion model`` or ``inpainting model``).
    """
    from magicseg_hf.families import family_of_class

    roles = {name: family_of_class(cls).inpainting for name, cls in TINY_DIFFUSION_MODELS.items()}
    wanted = ", ".join(name for name, role in roles.items() if role == inpainting)
    if model_id not in roles:
        raise ModelLoadError(f"unknown tiny {what} {model_id!r}; the tiny {what}s are {wanted}")
    if roles[model_id] != inpainting:
        kind = "an inpainting" if roles[model_id] else "a text-to-image"
        raise ModelLoadError(
            f"tiny {what} {model_id!r} is {kind} twin ({TINY_DIFFUSION_MODELS[model_id]}); "
            f"the tiny {what}s are {wanted}"
        )
