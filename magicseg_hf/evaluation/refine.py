"""PAMR: pixel-adaptive mask refinement of segmentation logits, guided by the image's colours.

PAMR (Araslanov & Roth, "Single-Stage Semantic Segmentation from Image Labels", CVPR 2020) replaces,
``num_iterations`` times, every pixel's logits by a weighted average of its neighbours' logits. The
neighbours are the 8 pixels at distance ``d`` (the 3x3 ring dilated by ``d``) for each dilation ``d``,
with replicate padding at the borders; the pixel itself is not one of them. The weights come from the
image once, before the iterations: for neighbour ``p`` of pixel ``x``,

    a(x, p) = mean over colour channels k of  -|I_k(x) - I_k(p)| / (1e-8 + 0.1 * sigma_k(x))
    w(x, p) = softmax over the neighbours p of a(x, p)

where ``sigma_k(x)`` is the standard deviation (unbiased) of channel ``k`` over the pixel and its
neighbours (the pixel counted once per dilation). Similar colours get large weights, so labels
spread inside regions and stop at edges. Training-free CLIP segmenters (NACLIP) apply it with 10
iterations and dilations 8 and 16, the defaults here.

Example::

    import torch
    from magicseg_hf.evaluation.refine import pamr

    logits = torch.randn(1, 21, 336, 448)     # (B, C, H, W)
    image = torch.rand(1, 3, 336, 448)        # (B, 3, H, W), the normalized input image
    refined = pamr(image, logits)             # (B, C, H, W)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: NACLIP's settings.
PAMR_ITERATIONS = 10
PAMR_DILATIONS = (8, 16)

#: The 8 neighbour offsets (dy, dx) of the 3x3 ring, before dilation.
_RING = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def _shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` (..., H, W) read at (y + dy, x + dx), coordinates clamped to the border (replicate padding)."""
    height, width = x.shape[-2:]
    rows = (torch.arange(height, device=x.device) + dy).clamp(0, height - 1)
    columns = (torch.arange(width, device=x.device) + dx).clamp(0, width - 1)
    return x[..., rows[:, None], columns[None, :]]


def _offsets(dilations: Sequence[int]) -> list[tuple[int, int]]:
    return [(dy * d, dx * d) for d in dilations for dy, dx in _RING]


def pamr_weights(image: torch.Tensor, dilations: Sequence[int] = PAMR_DILATIONS) -> torch.Tensor:
    """The neighbour weights of :func:`pamr`.

    Args:
        image: (B, K, H, W) float image (K colour channels).
        dilations: ring distances; each adds 8 neighbours.

    Returns:
        (B, P, H, W) weights, P = 8 * len(dilations), summing to 1 over P (order: per dilation, the
        ring's offsets row by row).
    """
    if image.dim() != 4:
        raise ValueError(f"image must be (B, K, H, W) (got shape {tuple(image.shape)})")
    if not dilations or any(d < 1 for d in dilations):
        raise ValueError(f"dilations must be positive integers (got {tuple(dilations)})")
    offsets = _offsets(dilations)
    neighbours = torch.stack([_shifted(image, dy, dx) for dy, dx in offsets], dim=2)  # (B, K, P, H, W)
    # Spread of each channel over the pixel and its neighbours, the pixel counted once per dilation.
    centre = image.unsqueeze(2).expand(-1, -1, len(dilations), -1, -1)  # (B, K, D, H, W)
    sigma = torch.cat([neighbours, centre], dim=2).std(dim=2, keepdim=True)  # (B, K, 1, H, W)
    affinity = -(image.unsqueeze(2) - neighbours).abs() / (1e-8 + 0.1 * sigma)  # (B, K, P, H, W)
    return affinity.mean(dim=1).softmax(dim=1)  # (B, P, H, W)


def pamr(
    image: torch.Tensor,
    logits: torch.Tensor,
    num_iterations: int = PAMR_ITERATIONS,
    dilations: Sequence[int] = PAMR_DILATIONS,
) -> torch.Tensor:
    """Refine ``logits`` with PAMR guided by ``image`` (see the module docstring).

    Args:
        image: (B, K, H, W) float image, usually the normalized model input (K = 3).
        logits: (B, C, h, w) per-class scores; resized bilinearly (corners aligned) to (H, W) first
            when their size differs from the image's.
        num_iterations: number of averaging passes.
        dilations: ring distances of the neighbourhood.

    Returns:
        (B, C, H, W) refined scores, in ``logits``' dtype.
    """
    if logits.dim() != 4 or logits.shape[0] != image.shape[0]:
        raise ValueError(
            f"logits must be (B, C, H, W) with the image's batch size (got {tuple(logits.shape)} and image "
            f"{tuple(image.shape)})"
        )
    if num_iterations < 0:
        raise ValueError(f"num_iterations must be >= 0 (got {num_iterations})")
    dtype = logits.dtype
    compute_dtype = torch.promote_types(dtype, torch.float32)  # half precision is refined in float32
    image = image.to(compute_dtype)
    masks = logits.to(compute_dtype)
    if masks.shape[-2:] != image.shape[-2:]:
        masks = F.interpolate(masks, size=image.shape[-2:], mode="bilinear", align_corners=True)
    weights = pamr_weights(image, dilations).unsqueeze(1)  # (B, 1, P, H, W)
    offsets = _offsets(dilations)
    for _ in range(num_iterations):
        refined = torch.zeros_like(masks)
        for index, (dy, dx) in enumerate(offsets):  # one neighbour at a time: memory stays (B, C, H, W)
            refined += weights[:, :, index] * _shifted(masks, dy, dx)
        masks = refined
    return masks.to(dtype)
