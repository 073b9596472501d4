"""Training-free CLIP segmenters (MaskCLIP, SCLIP, ClearCLIP, NACLIP) on any transformers ``CLIPModel``.

Each method changes only the *last* block of CLIP's vision tower, at inference, reusing that block's own
transformers modules (``CLIPAttention``'s ``q_proj``/``k_proj``/``v_proj``/``out_proj``, the block's layer norms
and MLP); every earlier block runs unchanged through ``CLIPEncoderLayer``. Patch tokens then go through
``post_layernorm`` and ``visual_projection`` and are scored against template-averaged text embeddings by cosine.

==============  ===================================================  ==========================  ===============
method          last-block attention (per head, ``s = d**-0.5``)     residual / feed-forward     reference
==============  ===================================================  ==========================  ===============
``maskclip``    identity (each token keeps its own value)             neither                     ClearCLIP harness
``sclip``       ``softmax(q q^T s) + softmax(k k^T s)``               both kept                   SCLIP
``clearclip``   ``softmax(q q^T s)``                                  neither                     ClearCLIP
``naclip``      ``softmax(k k^T s + G)``, G a Gaussian (std 5 patches)  neither                   NACLIP
                over patch distance, 0 on the class token's row/column
==============  ===================================================  ==========================  ===============

Position embeddings for a grid other than the checkpoint's are interpolated as the references do (bicubic,
``scale_factor = (grid + 0.1) / side``), so logits match theirs on any window.

The wrapper :class:`TrainingFreeCLIP` answers the interface the one inference path
(:func:`magicseg_hf.modeling.inference_clip_open_seg.segment_images`) asks of a model: ``mask_logits`` returns
``(n, Q, h/p, w/p)`` cosines (scored by the harness's softmax with ``softmax_scale``), ``encode_classes`` the
template-averaged text embeddings.

Example::

    from transformers import CLIPModel, CLIPTokenizer
    from magicseg_hf.evaluation.methods import TrainingFreeCLIP

    model = TrainingFreeCLIP(CLIPModel.from_pretrained("openai/clip-vit-base-patch16"), "naclip",
                             tokenizer=CLIPTokenizer.from_pretrained("openai/clip-vit-base-patch16"))
    logits = model.mask_logits(pixel_values, model.encode_classes(["cat", "dog"]))   # (n, 2, h/16, w/16)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from magicseg_hf.errors import InputError, ModelLoadError
from magicseg_hf.evaluation.protocols import (
    DEFAULT_PROTOCOLS,
    METHODS,
    TRAINING_FREE_METHODS,
    check_method,
)
from magicseg_hf.evaluation.templates import OPENAI_IMAGENET_TEMPLATES

#: NACLIP's Gaussian standard deviation (patches): NACLIP@0cac3a6:naclip.py:21 (gaussian_std=5.).
NACLIP_GAUSSIAN_STD = 5.0
#: OpenAI CLIP's normalisation, for a CLIP checkpoint saved without an image processor.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def reference_position_embeddings(weight: torch.Tensor, rows: int, cols: int, square_pixels: bool) -> torch.Tensor:
    """Position embeddings for a ``rows x cols`` patch grid, interpolated as SCLIP/NACLIP/ClearCLIP do.

    Args:
        weight: ``(1 + N, D)`` the checkpoint's embeddings (class token first, then an ``sqrt(N)`` square grid).
        rows, cols: the patch grid.
        square_pixels: whether the input's pixel height equals its width (the references skip interpolation only
            for the checkpoint's own grid on a square input).

    Returns:
        ``(1 + rows * cols, D)``.
    """
    count = weight.shape[0] - 1
    side = int(math.sqrt(count))
    if rows * cols == count and square_pixels:
        return weight
    grid = weight[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)  # (1, D, side, side)
    grid = F.interpolate(
        grid.float(), scale_factor=((rows + 0.1) / side, (cols + 0.1) / side), mode="bicubic", align_corners=False,
        recompute_scale_factor=False,
    ).to(weight.dtype)  # (1, D, rows, cols)
    if grid.shape[-2:] != (rows, cols):
        raise ValueError(f"position interpolation gave a {tuple(grid.shape[-2:])} grid for {(rows, cols)}")
    return torch.cat([weight[:1], grid.permute(0, 2, 3, 1).reshape(rows * cols, -1)])


def gaussian_neighbourhood(rows: int, cols: int, std: float) -> torch.Tensor:
    """NACLIP's additive attention bias: ``(1 + rows*cols, 1 + rows*cols)``, ``exp(-d^2 / (2 std^2))`` between
    patches at grid distance ``d``, 0 on the class token's row and column."""
    r = torch.arange(rows, dtype=torch.float32).repeat_interleave(cols)  # (P,)
    c = torch.arange(cols, dtype=torch.float32).repeat(rows)  # (P,)
    distance = (r[:, None] - r[None]) ** 2 + (c[:, None] - c[None]) ** 2  # (P, P)
    bias = torch.zeros(rows * cols + 1, rows * cols + 1)
    bias[1:, 1:] = torch.exp(-distance / (2.0 * std**2))
    return bias


class TrainingFreeCLIP(nn.Module):
    """A CLIPModel whose last vision block is changed at inference as ``method`` says.

    Args:
        clip: a transformers ``CLIPModel`` (its weights are used as they are, not copied).
        method: one of :data:`TRAINING_FREE_METHODS`.
        tokenizer: the CLIP tokenizer used by :meth:`encode_classes`.
        templates: prompt templates averaged per class name (default: the 80 OpenAI ImageNet templates, as all
            four references use).
        gaussian_std: NACLIP's neighbourhood standard deviation (patches).
        text_cache: name -> ``(E,)`` template-averaged embedding, shared by wrappers of one CLIP (see
            :meth:`with_method`) so that a class list is encoded once whatever the method.
    """

    def __init__(
        self,
        clip: Any,
        method: str,
        tokenizer: Any = None,
        templates: Sequence[str] = OPENAI_IMAGENET_TEMPLATES,
        gaussian_std: float = NACLIP_GAUSSIAN_STD,
        text_cache: dict[tuple[tuple[str, ...], str], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if method not in TRAINING_FREE_METHODS:
            raise InputError(f"unknown training-free method {method!r} (expected one of "
                             f"{', '.join(TRAINING_FREE_METHODS)})")
        self.clip = clip
        self.method = method
        self.tokenizer = tokenizer
        self.templates = tuple(templates)
        self.gaussian_std = float(gaussian_std)
        self.config = SimpleNamespace(clip_config=clip.config, method=method)
        self._bias_cache: dict[tuple[int, int], torch.Tensor] = {}
        self.text_cache = text_cache if text_cache is not None else {}

    def with_method(self, method: str) -> TrainingFreeCLIP:
        """The same CLIP (weights not copied) under another method, sharing tokenizer and text cache."""
        return TrainingFreeCLIP(self.clip, method, self.tokenizer, self.templates, self.gaussian_std, self.text_cache)

    @property
    def device(self) -> torch.device:
        return next(self.clip.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.clip.parameters()).dtype

    # ---- text ----------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_classes(self, names: Sequence[str], tokenizer: Any = None) -> torch.Tensor:
        """``(S, D)`` per name: each template's projected text embedding L2-normalised, averaged over the
        templates, normalised again (the references' query features)."""
        tokenizer = tokenizer or self.tokenizer
        if tokenizer is None:
            raise ValueError("encode_classes needs a CLIP tokenizer")
        features = []
        for name in names:
            cached = self.text_cache.get((self.templates, name))
            if cached is not None:
                features.append(cached.to(self.device))
                continue
            prompts = [template.format(name) for template in self.templates]
            tokens = tokenizer(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
            output = self.clip.get_text_features(
                input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
            )
            embeds = getattr(output, "pooler_output", output).float()  # (T, D)
            embeds = F.normalize(F.normalize(embeds, dim=-1).mean(dim=0), dim=-1)
            self.text_cache[(self.templates, name)] = embeds
            features.append(embeds)
        return torch.stack(features)  # (S, D)

    # ---- image ---------------------------------------------------------------------------------
    def _neighbourhood(self, rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
        bias = self._bias_cache.get((rows, cols))
        if bias is None:
            bias = self._bias_cache[(rows, cols)] = gaussian_neighbourhood(rows, cols, self.gaussian_std)
        return bias.to(device=like.device, dtype=like.dtype)

    def _last_block(self, layer: Any, hidden: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """The changed last block: ``(n, T, D)`` in, ``(n, T, D)`` out."""
        attention = layer.self_attn
        heads = attention.num_heads
        n, tokens, width = hidden.shape
        head_dim = width // heads
        scale = head_dim**-0.5
        normed = layer.layer_norm1(hidden)

        def split(x: torch.Tensor) -> torch.Tensor:  # (n, T, D) -> (n, heads, T, head_dim)
            return x.view(n, tokens, heads, head_dim).transpose(1, 2)

        value = split(attention.v_proj(normed))
        if self.method == "maskclip":
            mixed = value
        else:
            if self.method in ("sclip", "clearclip"):
                query = split(attention.q_proj(normed))
                weights = (query @ query.transpose(-1, -2) * scale).softmax(dim=-1)
            if self.method in ("sclip", "naclip"):
                key = split(attention.k_proj(normed))
                similarity = key @ key.transpose(-1, -2) * scale
                if self.method == "naclip":
                    weights = (similarity + self._neighbourhood(rows, cols, similarity)).softmax(dim=-1)
                else:
                    weights = weights + similarity.softmax(dim=-1)
            mixed = weights @ value  # (n, heads, T, head_dim)
        output = attention.out_proj(mixed.transpose(1, 2).reshape(n, tokens, width))
        if self.method != "sclip":
            return output  # no residual, no feed-forward
        hidden = hidden + output
        return hidden + layer.mlp(layer.layer_norm2(hidden))

    def patch_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` normalised pixels -> ``(n, H/p, W/p, E)`` L2-normalised projected patch features."""
        vision = self.clip.vision_model
        embeddings = vision.embeddings
        pixel_values = pixel_values.to(self.dtype)
        patches = embeddings.patch_embedding(pixel_values)  # (n, D, rows, cols)
        n, width, rows, cols = patches.shape
        patches = patches.flatten(2).transpose(1, 2)  # (n, P, D)
        cls = embeddings.class_embedding.to(patches.dtype).expand(n, 1, width)
        positions = reference_position_embeddings(
            embeddings.position_embedding.weight, rows, cols, pixel_values.shape[-2] == pixel_values.shape[-1]
        )
        hidden = torch.cat([cls, patches], dim=1) + positions.to(patches.dtype)  # (n, 1 + P, D)
        hidden = vision.pre_layrnorm(hidden)
        layers = vision.encoder.layers
        for layer in layers[:-1]:
            hidden = layer(hidden, None)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        hidden = self._last_block(layers[-1], hidden, rows, cols)
        features = self.clip.visual_projection(vision.post_layernorm(hidden)[:, 1:])  # (n, P, E)
        return F.normalize(features.float(), dim=-1).view(n, rows, cols, -1)

    @torch.no_grad()
    def mask_logits(
        self, pixel_values: torch.Tensor, class_embeds: torch.Tensor, classes_per_chunk: int | None = None
    ) -> torch.Tensor:
        """``(n, Q, H/p, W/p)`` cosine of each patch with each query embedding ``(Q, E)`` (unit norm)."""
        features = self.patch_features(pixel_values)  # (n, rows, cols, E)
        return torch.einsum("nhwe,qe->nqhw", features, class_embeds.float())


def methods_for_model_type(model_type: str | None) -> tuple[str, ...]:
    """The methods a checkpoint of ``model_type`` (its config's) can run."""
    if model_type == "clip":
        return TRAINING_FREE_METHODS
    if model_type == "clip_open_seg":
        return ("magicseg",)
    return ()


def checkpoint_source(model_id: str, method: str) -> str:
    """What ``from_pretrained`` reads for ``model_id``: a ``tiny:`` id's twin folder (``tiny:open-seg`` for
    ``magicseg``, ``tiny:clip`` for the training-free methods), any other id as it is."""
    from magicseg_hf import twins

    role = "open-seg" if method == "magicseg" else "class-score"
    return twins.resolve(model_id, role, "segmentation model" if method == "magicseg" else "CLIP model")


def check_checkpoint(model_id: str, revision: str | None, method: str) -> str:
    """The checkpoint's ``model_type`` when it can run ``method``; otherwise one line (ModelLoadError for a model
    that is not CLIP, InputError for a method this CLIP checkpoint cannot run, naming those it can)."""
    from transformers import AutoConfig

    from magicseg_hf.hub_access import check_model_available
    from magicseg_hf.loading import load_errors

    check_method(method)
    source = checkpoint_source(model_id, method)
    check_model_available(source, revision, "model")
    with load_errors(model_id, "model"):
        model_type = getattr(AutoConfig.from_pretrained(source, revision=revision), "model_type", None)
    allowed = methods_for_model_type(model_type)
    if not allowed:
        raise ModelLoadError(
            f"model {model_id!r} is a {model_type!r} model, not a CLIP model (clip) or a CLIPForOpenSegmentation "
            "(clip_open_seg): no `method` runs it"
        )
    if method not in allowed:
        kind = "a CLIPForOpenSegmentation" if model_type == "clip_open_seg" else "a plain CLIP model"
        raise InputError(
            f"`method` {method} cannot run {model_id!r}, {kind}: it can run `method` {' or '.join(allowed)}"
        )
    return str(model_type)


def load_training_free(
    model_id: str, method: str, revision: str | None = None
) -> tuple[TrainingFreeCLIP, tuple[float, ...], tuple[float, ...]]:
    """``(model, image_mean, image_std)`` for a training-free ``method`` on a CLIPModel checkpoint (folder or
    Hub id); the image processor's normalisation when the checkpoint has one, else OpenAI CLIP's."""
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    from magicseg_hf.loading import load_errors

    check_checkpoint(model_id, revision, method)
    source = checkpoint_source(model_id, method)
    with load_errors(model_id, "CLIP model"):
        clip = CLIPModel.from_pretrained(source, revision=revision).eval()
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    try:
        processor = CLIPImageProcessor.from_pretrained(source, revision=revision)
        mean, std = tuple(processor.image_mean), tuple(processor.image_std)
    except (OSError, ValueError):
        mean, std = CLIP_MEAN, CLIP_STD
    return TrainingFreeCLIP(clip, method, tokenizer=tokenizer).eval(), mean, std


__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_PROTOCOLS",
    "METHODS",
    "NACLIP_GAUSSIAN_STD",
    "TRAINING_FREE_METHODS",
    "TrainingFreeCLIP",
    "check_checkpoint",
    "check_method",
    "gaussian_neighbourhood",
    "load_training_free",
    "methods_for_model_type",
    "reference_position_embeddings",
]
