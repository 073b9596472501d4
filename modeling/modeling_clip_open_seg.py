"""`CLIPForOpenSegmentation`: segment any class named in text (MagicSeg, on ZegCLIP's architecture).

A frozen CLIP (ViT-B/16 at 512 px in the paper) with deep visual prompt tuning as the paper's code does it
(each layer's prompts through `prompt_proj` and dropout, a `prompt_norm` LayerNorm on the final tokens, drop path
in the frozen encoder layers); the projected, L2-normalised patch and [CLS] embeddings feed a relationship
descriptor and a small cross-attention decoder whose head-averaged pre-softmax attention maps are the
per-class mask logits (one sigmoid per class).

Self-contained: imports only torch and transformers (peft lazily, for the LoRA option), so this folder can be
pushed to the Hub as remote code.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoTokenizer, CLIPModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_clip_open_seg import CLIPOpenSegConfig, LabelNames
from .processing_clip_open_seg import tokenize_class_prompts

logger = logging.get_logger(__name__)

LORA_ADAPTER_NAME = "default"
LORA_ADAPTER_CONFIG = "adapter_config.json"
LORA_ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass
class CLIPOpenSegOutput(ModelOutput):
    r"""
    Output of [`CLIPForOpenSegmentation`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` or counterfactual images are given):
            `focal_loss_weight * focal_loss + dice_loss_weight * dice_loss + counterfactual_loss_weight *
            counterfactual_loss` (the terms that could be computed).
        logits (`torch.FloatTensor` of shape `(batch_size, num_classes, height, width)`):
            Per-class mask logits at the input resolution; `sigmoid(logits)` is each class's probability per pixel.
        focal_loss (`torch.FloatTensor` of shape `()`, *optional*): unweighted sigmoid focal loss (ZegCLIP's
            normalisation: sum over (image, class) of the per-pixel mean, divided by `num_masks`).
        dice_loss (`torch.FloatTensor` of shape `()`, *optional*): unweighted dice loss over the ground-truth
            (image, class) pairs, divided by `num_masks`.
        counterfactual_loss (`torch.FloatTensor` of shape `()`, *optional*): unweighted
            `mean(max(0, cos(image_embeds, counterfactual_image_embeds)))`.
        image_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
            L2-normalised projected [CLS] embedding of each image (the `g` of the relationship descriptor).
        patch_embeds (`torch.FloatTensor` of shape `(batch_size, grid_height * grid_width, projection_dim)`):
            L2-normalised projected patch embeddings (prompt tokens removed).
        class_embeds (`torch.FloatTensor` of shape `(batch_size, num_classes, projection_dim)`):
            L2-normalised class text embeddings the masks were computed for.
        counterfactual_image_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`, *optional*):
            L2-normalised [CLS] embeddings of the counterfactual images.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    focal_loss: torch.FloatTensor | None = None
    dice_loss: torch.FloatTensor | None = None
    counterfactual_loss: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    patch_embeds: torch.FloatTensor | None = None
    class_embeds: torch.FloatTensor | None = None
    counterfactual_image_embeds: torch.FloatTensor | None = None


# ----------------------------------------------------------------------------------------------------------
# Losses (ZegCLIP's normalisation). Each takes logits (B, C, H, W) and integer labels (B, H, W).
# ----------------------------------------------------------------------------------------------------------
def _targets_from_labels(
    labels: torch.Tensor, num_classes: int, ignore_label: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One-hot targets, validity mask and ground-truth presence from position labels.

    Returns `targets` (B, C, H, W) float (1 where the pixel's label is class c), `valid` (B, 1, H, W) float
    (0 on `ignore_label` pixels) and `present` (B, C) bool (class c has at least one valid pixel in image b).
    Any label outside `0..C-1` that is not `ignore_label` (e.g. `none_label`) is a negative for every class.
    """
    classes = torch.arange(num_classes, device=labels.device).view(1, num_classes, 1, 1)
    targets = (labels.unsqueeze(1) == classes).float()  # (B, C, H, W)
    valid = (labels != ignore_label).unsqueeze(1).float()  # (B, 1, H, W)
    present = targets.flatten(2).amax(dim=-1) > 0  # (B, C); ignore pixels are never == a class position
    return targets, valid, present


def count_masks(present: torch.Tensor) -> float:
    """`num_masks`: ground-truth (image, class) pairs in the batch, averaged over processes, at least 1.

    As in ZegCLIP/Mask2Former: all-reduce the sum, divide by the world size (gradients are averaged across
    processes), clamp at 1 so an image batch with no ground-truth class does not divide by zero.
    """
    num_masks = present.sum().to(torch.float32).reshape(1)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(num_masks)
        num_masks = num_masks / torch.distributed.get_world_size()
    return max(float(num_masks.item()), 1.0)


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor,
    num_masks: float,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> torch.Tensor:
    """Sum over (image, class) of the per-pixel mean focal loss over valid pixels, divided by `num_masks`.

    Args:
        logits: (B, C, H, W) mask logits. targets: (B, C, H, W) in {0, 1}. valid: (B, 1, H, W) in {0, 1}.
    Returns:
        Scalar tensor.
    """
    logits = logits.float()
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    pixels = valid.flatten(1).sum(-1).clamp(min=1).unsqueeze(1)  # (B, 1)
    per_mask = (loss * valid).flatten(2).sum(-1) / pixels  # (B, C)
    return per_mask.sum() / num_masks


def dice_loss(
    logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, present: torch.Tensor, num_masks: float
) -> torch.Tensor:
    """Dice loss `1 - (2|p t| + 1) / (|p| + |t| + 1)` summed over ground-truth (image, class) pairs / `num_masks`.

    Args:
        logits: (B, C, H, W). targets: (B, C, H, W). valid: (B, 1, H, W). present: (B, C) bool.
    Returns:
        Scalar tensor (0 when no pair is present).
    """
    prob = logits.float().sigmoid() * valid
    targets = targets * valid
    numerator = 2 * (prob * targets).flatten(2).sum(-1)  # (B, C)
    denominator = prob.flatten(2).sum(-1) + targets.flatten(2).sum(-1)  # (B, C)
    loss = 1 - (numerator + 1) / (denominator + 1)
    return (loss * present).sum() / num_masks


def counterfactual_loss(
    image_embeds: torch.Tensor, counterfactual_image_embeds: torch.Tensor
) -> torch.Tensor:
    """MagicSeg's counterfactual contrast: `mean(max(0, cos(g_pos, g_cf)))` over the batch.

    Args:
        image_embeds, counterfactual_image_embeds: (B, D) image [CLS] embeddings.
    """
    cosine = F.cosine_similarity(image_embeds.float(), counterfactual_image_embeds.float(), dim=-1)  # (B,)
    return cosine.clamp(min=0).mean()


# ----------------------------------------------------------------------------------------------------------
# Stochastic depth in the frozen backbone
# ----------------------------------------------------------------------------------------------------------
def drop_path(hidden_states: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth on a residual branch: zero the whole branch of a random `drop_prob` share of the samples
    and scale the kept ones by `1 / (1 - drop_prob)` (identity in eval mode or at `drop_prob` 0).

    hidden_states: (B, ...) the branch output, before it is added to the residual stream.
    """
    if not training or drop_prob == 0.0:
        return hidden_states
    keep_prob = 1.0 - drop_prob
    # One draw per sample: shape (B, 1, ..., 1).
    shape = (hidden_states.shape[0],) + (1,) * (hidden_states.dim() - 1)
    keep = hidden_states.new_empty(shape).bernoulli_(keep_prob)
    return hidden_states * keep / keep_prob


def drop_path_schedule(drop_path_rate: float, num_layers: int) -> list[float]:
    """Per-layer drop probabilities, linear from 0 (first layer) to `drop_path_rate` (last layer).

    This is `torch.linspace(0, drop_path_rate, num_layers)`, the stochastic-depth decay rule written in the paper's
    backbone (DenseCLIP/ZegCLIP's CLIP `Transformer`, as in timm's ViT): shallow layers, whose features every later
    layer builds on, are dropped least. (The released `ResidualAttentionBlock.forward` never applies its
    `DropPath`, so the paper ran with none: `CLIPOpenSegConfig.drop_path_rate` defaults to 0.)
    """
    if num_layers <= 1:
        return [0.0] * num_layers
    return [drop_path_rate * index / (num_layers - 1) for index in range(num_layers)]


# ----------------------------------------------------------------------------------------------------------
# Decoder
# ----------------------------------------------------------------------------------------------------------
class CLIPOpenSegDecoderLayer(nn.Module):
    """Class queries cross-attend to patch tokens (post-norm, as ZegCLIP's TPN layer; no self-attention).

    Returns the updated queries and the head-averaged pre-softmax attention map. With `update_queries=False`
    (the last layer) only the attention map is computed, so only the query/key projections exist: the value
    path and FFN of that layer could never reach a loss, and distributed training needs every parameter used.
    """

    def __init__(self, config: CLIPOpenSegConfig, update_queries: bool = True):
        super().__init__()
        width = config.decoder_hidden_size
        self.num_heads = config.decoder_num_heads
        self.head_dim = width // self.num_heads
        self.scale = self.head_dim**-0.5
        self.update_queries = update_queries
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        if update_queries:
            self.v_proj = nn.Linear(width, width)
            self.out_proj = nn.Linear(width, width)
            self.dropout = nn.Dropout(config.decoder_dropout)
            self.norm1 = nn.LayerNorm(width)
            self.fc1 = nn.Linear(width, config.decoder_intermediate_size)
            self.fc2 = nn.Linear(config.decoder_intermediate_size, width)
            self.norm2 = nn.LayerNorm(width)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """queries: (B, C, W) class queries; memory: (B, N, W) patch tokens.

        Returns `(queries (B, C, W), attention_logits (B, C, N))`.
        """
        batch, num_queries, width = queries.shape
        num_tokens = memory.shape[1]
        q = self.q_proj(queries).view(batch, num_queries, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(memory).view(batch, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale  # (B, heads, C, N)
        attention_logits = scores.mean(dim=1)  # (B, C, N)
        if not self.update_queries:
            return queries, attention_logits

        v = self.v_proj(memory).view(batch, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        probs = self.dropout(scores.softmax(dim=-1))
        attended = torch.matmul(probs, v).transpose(1, 2).reshape(batch, num_queries, width)  # (B, C, W)
        queries = self.norm1(queries + self.dropout(self.out_proj(attended)))
        hidden = self.fc2(self.dropout(F.relu(self.fc1(queries))))
        queries = self.norm2(queries + self.dropout(hidden))
        return queries, attention_logits


class CLIPOpenSegDecoder(nn.Module):
    """Relationship descriptor + cross-attention decoder -> (B, C, h, w) mask logits on the patch grid."""

    def __init__(self, config: CLIPOpenSegConfig):
        super().__init__()
        dim, width = config.projection_dim, config.decoder_hidden_size
        # Relationship descriptor q_c = Linear([t_c * g, t_c]).
        self.query_proj = nn.Linear(2 * dim, width)
        self.patch_proj = nn.Linear(dim, width)
        self.patch_norm = nn.LayerNorm(width)
        self.layers = nn.ModuleList(
            [
                CLIPOpenSegDecoderLayer(config, update_queries=i < config.decoder_num_layers - 1)
                for i in range(config.decoder_num_layers)
            ]
        )

    def forward(
        self,
        patch_embeds: torch.Tensor,
        image_embeds: torch.Tensor,
        class_embeds: torch.Tensor,
        grid_size: tuple[int, int],
    ) -> torch.Tensor:
        """patch_embeds (B, N, D), image_embeds (B, D), class_embeds (B, C, D) -> mask logits (B, C, h, w)."""
        batch, num_classes, _ = class_embeds.shape
        descriptor = torch.cat([class_embeds * image_embeds.unsqueeze(1), class_embeds], dim=-1)  # (B, C, 2D)
        queries = self.query_proj(descriptor)  # (B, C, W)
        memory = self.patch_norm(self.patch_proj(patch_embeds))  # (B, N, W)
        attention_logits = None
        for layer in self.layers:
            queries, attention_logits = layer(queries, memory)
        return attention_logits.view(batch, num_classes, *grid_size)  # (B, C, h, w)


# ----------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------
class CLIPOpenSegPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading rules shared by the open-vocabulary segmentation models."""

    config_class = CLIPOpenSegConfig
    config: CLIPOpenSegConfig
    base_model_prefix = "open_seg"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = [
        "CLIPEncoderLayer",
        "CLIPTextEmbeddings",
        "CLIPVisionEmbeddings",
        "CLIPOpenSegDecoderLayer",
    ]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # decoder Linear: normal(0, initializer_range), LayerNorm: (1, 0)
        if isinstance(module, CLIPForOpenSegmentation):
            # VPT: uniform(-v, v), v = sqrt(6 / (3 * patch^2 + hidden)) (Xavier-uniform over the patch embedding).
            vision = self.config.clip_config.vision_config
            bound = math.sqrt(6.0 / float(3 * vision.patch_size**2 + vision.hidden_size))
            init.uniform_(module.visual_prompts, -bound, bound)
            init.zeros_(module.vocabulary_embeds)
            # prompt_proj as the paper's code: Kaiming normal (fan_out), zero bias.
            if isinstance(module.prompt_proj, nn.Linear):
                init.kaiming_normal_(module.prompt_proj.weight, a=0, mode="fan_out")
                init.zeros_(module.prompt_proj.bias)


class CLIPForOpenSegmentation(CLIPOpenSegPreTrainedModel):
    r"""
    Open-vocabulary semantic segmentation on a frozen CLIP (MagicSeg / ZegCLIP).

    Only the visual prompts, `prompt_proj`, `prompt_norm`, the decoder (and LoRA adapters when `config.use_lora`)
    are trainable; CLIP stays frozen, also after `from_pretrained`.

    Example:

    ```python
    >>> from magicseg_hf.loading import build_open_seg
    >>> model, processor = build_open_seg("tiny")
    >>> enc = processor(images=image, text=["cat", "dog"], return_tensors="pt")
    >>> logits = model(**enc).logits  # (1, 2, H, W)
    >>> segmentation = processor.post_process_semantic_segmentation(
    ...     model(**enc), target_sizes=[image.size[::-1]], threshold=0.5
    ... )[0]  # (H, W): class position, -1 where no class clears the threshold
    ```
    """

    #: The loss is a per-batch mean that takes no `num_items_in_batch`: the Trainer scales it for accumulation.
    accepts_loss_kwargs = False

    def __init__(self, config: CLIPOpenSegConfig):
        super().__init__(config)
        self.clip = CLIPModel(config.clip_config)
        vision = config.clip_config.vision_config
        self.visual_prompts = nn.Parameter(
            torch.zeros(config.num_prompted_layers, config.num_prompt_tokens, vision.hidden_size)
        )
        prompted = config.num_prompted_layers > 0 and config.num_prompt_tokens > 0
        # Each layer's prompts go through prompt_proj, then dropout (paper: Linear 768 -> 768); an Identity when
        # off or when there are no prompts (a parameter that never reaches a loss breaks distributed training).
        width = vision.hidden_size
        self.prompt_proj = nn.Linear(width, width) if config.use_prompt_proj and prompted else nn.Identity()
        self.prompt_dropout = nn.Dropout(config.prompt_dropout)
        # Trainable LayerNorm on the last layer's tokens, before CLIP's frozen post-layernorm (paper: eps 1e-6).
        self.prompt_norm = nn.LayerNorm(width, eps=1e-6) if config.use_prompt_norm else nn.Identity()
        self.drop_path_rates = drop_path_schedule(config.drop_path_rate, vision.num_hidden_layers)
        self.decoder = CLIPOpenSegDecoder(config)
        # Text embeddings of `config.vocabulary`, saved with the weights: the default classes without text input.
        self.register_buffer(
            "vocabulary_embeds", torch.zeros(len(config.vocabulary), config.projection_dim), persistent=True
        )
        self.gradient_checkpointing = False
        self._tokenizer: Any = None
        self._class_cache: dict[tuple[str, tuple[str, ...]], torch.Tensor] = {}
        if config.use_lora:
            self._inject_lora()
        self.post_init()
        self.freeze_backbone()

    # ---- loading, freezing -------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> CLIPForOpenSegmentation:
        """`PreTrainedModel.from_pretrained`, then re-freeze CLIP (loading re-enables `requires_grad`)."""
        model = super().from_pretrained(*args, **kwargs)
        if isinstance(model, tuple):  # output_loading_info=True
            model[0].freeze_backbone()
        else:
            model.freeze_backbone()
        return model

    @classmethod
    def from_clip(
        cls,
        clip: str | os.PathLike | CLIPModel,
        tokenizer: Any = None,
        clip_kwargs: dict[str, Any] | None = None,
        **config_kwargs: Any,
    ) -> CLIPForOpenSegmentation:
        """Build the model around pretrained CLIP weights (paper: `openai/clip-vit-base-patch16`).

        Args:
            clip: a Hub id or local folder of a `CLIPModel`, or a `CLIPModel` instance.
            tokenizer: the CLIP tokenizer; loaded from `clip` when it is a path/id and none is given.
            clip_kwargs: extra `CLIPModel.from_pretrained` arguments (e.g. `revision`).
            **config_kwargs: any [`CLIPOpenSegConfig`] field (e.g. `image_size=512`, `vocabulary=[...]`).
        """
        if isinstance(clip, CLIPModel):
            clip_model = clip
        else:
            clip_model = CLIPModel.from_pretrained(clip, **(clip_kwargs or {}))
            if tokenizer is None:
                tokenizer = AutoTokenizer.from_pretrained(clip, **(clip_kwargs or {}))
        use_lora = bool(config_kwargs.pop("use_lora", False))
        vocabulary = list(config_kwargs.pop("vocabulary", []))
        config = CLIPOpenSegConfig(clip_config=clip_model.config.to_dict(), **config_kwargs)
        model = cls(config)
        missing, unexpected = model.clip.load_state_dict(clip_model.state_dict(), strict=False)
        if missing or unexpected:
            raise ValueError(f"CLIP weights do not fit (missing: {missing}, unexpected: {unexpected})")
        model._tokenizer = tokenizer
        if use_lora:
            model.enable_lora()
        if vocabulary:
            model.set_vocabulary(vocabulary)
        model.freeze_backbone()
        return model

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        """`PreTrainedModel.save_pretrained`; when registered for remote code, the folder's `auto_map` names this
        class for both `AutoModel` and `AutoModelForSemanticSegmentation`."""
        if self._auto_class is not None:
            reference = f"{type(self).__module__.split('.')[-1]}.{type(self).__name__}"
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.update({"AutoModel": reference, "AutoModelForSemanticSegmentation": reference})
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    def freeze_backbone(self) -> None:
        """Freeze every CLIP weight except LoRA adapters; prompts and decoder stay trainable."""
        for name, parameter in self.named_parameters():
            if name.startswith("clip."):
                parameter.requires_grad_("lora_" in name)
            else:
                parameter.requires_grad_(True)

    def _set_gradient_checkpointing(
        self, enable: bool = True, gradient_checkpointing_func: Any = None, every_n_layers: int = 1
    ) -> None:
        """Activation checkpointing happens in this model's prompted layer loop (CLIP's own flag stays off:
        the loop calls the layers directly, and checkpointing both would recompute twice)."""
        from torch.utils.checkpoint import checkpoint

        self.gradient_checkpointing = enable
        self._gradient_checkpointing_func = gradient_checkpointing_func or checkpoint
        for module in self.clip.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = False

    def get_input_embeddings(self) -> nn.Module:
        return self.clip.vision_model.embeddings.patch_embedding

    # ---- LoRA (peft) on the vision tower ---------------------------------------------------------------
    def _lora_config(self) -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=self.config.lora_rank,
            lora_alpha=self.config.lora_alpha,
            lora_dropout=self.config.lora_dropout,
            target_modules=list(self.config.lora_target_modules),
        )

    def _inject_lora(self) -> None:
        try:
            from peft import inject_adapter_in_model
        except ImportError as error:  # pragma: no cover - peft is a dependency of magicseg-hf
            raise ImportError("use_lora=True needs the `peft` package (pip install peft)") from error
        inject_adapter_in_model(self._lora_config(), self.clip.vision_model, adapter_name=LORA_ADAPTER_NAME)

    def enable_lora(
        self,
        rank: int | None = None,
        alpha: int | None = None,
        dropout: float | None = None,
        target_modules: list[str] | None = None,
    ) -> None:
        """Add LoRA adapters (peft) to the vision tower's attention projections; sets `config.use_lora`.

        The adapters are trainable, saved with `save_pretrained` and re-created by `from_pretrained`; they can
        also be saved and loaded alone with `save_lora_adapter` / `load_lora_adapter`.
        """
        if self.config.use_lora:
            raise ValueError("LoRA is already enabled on this model")
        for field, value in (
            ("lora_rank", rank),
            ("lora_alpha", alpha),
            ("lora_dropout", dropout),
            ("lora_target_modules", target_modules),
        ):
            if value is not None:
                setattr(self.config, field, list(value) if field == "lora_target_modules" else value)
        device = self.visual_prompts.device
        self._inject_lora()
        self.clip.vision_model.to(device)
        self.config.use_lora = True
        self.freeze_backbone()

    def save_lora_adapter(self, save_directory: str | os.PathLike) -> None:
        """Write the vision tower's LoRA weights as a peft adapter (`adapter_config.json`,
        `adapter_model.safetensors`)."""
        if not self.config.use_lora:
            raise ValueError(
                "this model has no LoRA adapter (enable it with `enable_lora()` or use_lora=True)"
            )
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        os.makedirs(save_directory, exist_ok=True)
        state = get_peft_model_state_dict(self.clip.vision_model, adapter_name=LORA_ADAPTER_NAME)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in state.items()},
            os.path.join(save_directory, LORA_ADAPTER_WEIGHTS),
        )
        lora_config = self._lora_config()
        lora_config.base_model_name_or_path = self.name_or_path or None
        lora_config.save_pretrained(save_directory)

    def load_lora_adapter(self, adapter_directory: str | os.PathLike) -> None:
        """Load a LoRA adapter written by `save_lora_adapter` into the vision tower (enabling LoRA if needed)."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        with open(os.path.join(adapter_directory, LORA_ADAPTER_CONFIG), encoding="utf-8") as handle:
            adapter_config = json.load(handle)
        settings = {
            "rank": adapter_config["r"],
            "alpha": adapter_config["lora_alpha"],
            "dropout": adapter_config.get("lora_dropout", 0.0),
            "target_modules": sorted(adapter_config["target_modules"]),
        }
        if not self.config.use_lora:
            self.enable_lora(**settings)
        elif (self.config.lora_rank, sorted(self.config.lora_target_modules)) != (
            settings["rank"],
            settings["target_modules"],
        ):
            raise ValueError(
                f"the adapter (rank {settings['rank']}, modules {settings['target_modules']}) does not match this "
                f"model's LoRA (rank {self.config.lora_rank}, modules {sorted(self.config.lora_target_modules)})"
            )
        state = load_file(
            os.path.join(adapter_directory, LORA_ADAPTER_WEIGHTS), device=str(self.visual_prompts.device)
        )
        result = set_peft_model_state_dict(self.clip.vision_model, state, adapter_name=LORA_ADAPTER_NAME)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"adapter weights must fit this model's LoRA layers (got unknown keys: {unexpected[:5]})")
        self.freeze_backbone()

    # ---- text: class embeddings --------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        """The CLIP tokenizer used by `encode_classes` (set by `from_clip`/presets, else loaded from the folder
        the model was loaded from)."""
        if self._tokenizer is None and self.name_or_path and os.path.isdir(self.name_or_path):
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.name_or_path)
            except (OSError, ValueError) as error:
                logger.warning(f"No tokenizer could be loaded from {self.name_or_path}: {error}")
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def get_text_embeddings(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Template-averaged, L2-normalised class embeddings from tokenised prompts.

        Args:
            input_ids: `(C, T, L)` (C classes x T templates, as the processor returns) -> `(C, D)`;
                `(B, K, T, L)` (K classes per image) -> `(B, K, D)`; `(C, L)` is one template per class.
            attention_mask: same shape as `input_ids`.
        Returns:
            Embeddings: each template's text feature is normalised, the templates averaged, then normalised again.
        """
        if input_ids.dim() == 2:
            input_ids = input_ids.unsqueeze(1)
            attention_mask = attention_mask.unsqueeze(1) if attention_mask is not None else None
        if input_ids.dim() not in (3, 4):
            raise ValueError(
                f"input_ids must have shape (C, L), (C, T, L) or (B, K, T, L) (got {tuple(input_ids.shape)})"
            )
        leading, (num_templates, length) = input_ids.shape[:-2], input_ids.shape[-2:]
        flat_ids = input_ids.reshape(-1, length)
        flat_mask = attention_mask.reshape(-1, length) if attention_mask is not None else None
        needs_grad = torch.is_grad_enabled() and any(
            p.requires_grad for p in self.clip.text_model.parameters()
        )
        features = []
        with torch.set_grad_enabled(needs_grad):
            for start in range(0, flat_ids.shape[0], 1024):  # bounded memory for (B, K, T) prompt batches
                chunk_mask = flat_mask[start : start + 1024] if flat_mask is not None else None
                output = self.clip.get_text_features(
                    input_ids=flat_ids[start : start + 1024], attention_mask=chunk_mask
                )
                features.append(F.normalize(output.pooler_output, dim=-1))
        embeds = torch.cat(features).view(*leading, num_templates, -1).mean(dim=-2)  # (..., D)
        return F.normalize(embeds, dim=-1)

    def encode_classes(
        self,
        names: list[str] | tuple[str, ...],
        templates: list[str] | tuple[str, ...] | None = None,
        tokenizer: Any = None,
    ) -> torch.Tensor:
        """Class text embeddings through the template ensemble, cached per (name, templates).

        Args:
            names: class names (any order; duplicates allowed, each encoded once).
            templates: template ensemble (default `config.templates`, the paper's 15).
            tokenizer: CLIP tokenizer (default `self.tokenizer`).
        Returns:
            `(len(names), projection_dim)` L2-normalised embeddings on the model's device. The text encoder only
            runs for names not encoded before with the same templates.
        """
        names = list(names)
        if not names:
            raise ValueError("encode_classes needs at least one class name (got an empty list)")
        bad = [name for name in names if not isinstance(name, str) or not name.strip()]
        if bad:
            raise ValueError(f"class names must be non-empty strings (got {bad!r})")
        templates = tuple(templates if templates is not None else self.config.templates)
        missing = [name for name in dict.fromkeys(names) if (name, templates) not in self._class_cache]
        if missing:
            tokenizer = tokenizer if tokenizer is not None else self.tokenizer
            if tokenizer is None:
                raise ValueError(
                    "encode_classes needs a CLIP tokenizer: pass tokenizer=..., set model.tokenizer, or load the "
                    "model from a folder that also holds the processor"
                )
            encoding = tokenize_class_prompts(tokenizer, missing, templates)
            device = self.visual_prompts.device
            with torch.no_grad():
                embeds = self.get_text_embeddings(
                    encoding["input_ids"].to(device), encoding["attention_mask"].to(device)
                )
            for name, embed in zip(missing, embeds):
                self._class_cache[(name, templates)] = embed.detach()
        device, dtype = self.visual_prompts.device, self.visual_prompts.dtype
        return torch.stack([self._class_cache[(name, templates)] for name in names]).to(
            device=device, dtype=dtype
        )

    def clear_class_cache(self) -> None:
        """Forget cached class embeddings (only needed if the text tower's weights were changed)."""
        self._class_cache.clear()

    def set_vocabulary(
        self, names: list[str] | tuple[str, ...], templates: list[str] | None = None, tokenizer: Any = None
    ) -> None:
        """Make `names` the default classes: stores their embeddings (saved with the weights) and sets
        `config.vocabulary`, `id2label` and `label2id`."""
        names = list(names)
        if len(set(names)) != len(names):
            duplicates = sorted({name for name in names if names.count(name) > 1})
            raise ValueError(f"vocabulary must name each class once (got duplicates: {duplicates})")
        embeds = self.encode_classes(names, templates=templates, tokenizer=tokenizer)
        self.vocabulary_embeds = embeds.detach().clone()
        self.config.vocabulary = names
        self.config.id2label = LabelNames(enumerate(names))
        self.config.label2id = {name: i for i, name in enumerate(names)}

    def _resolve_class_embeds(
        self,
        batch_size: int,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        class_embeds: torch.Tensor | None,
    ) -> torch.Tensor:
        """Class embeddings as (B, C, D), from text, given embeddings, or the saved vocabulary."""
        if input_ids is not None and class_embeds is not None:
            raise ValueError("pass either input_ids/attention_mask or class_embeds, not both (got both)")
        if input_ids is not None:
            class_embeds = self.get_text_embeddings(input_ids, attention_mask)
        elif class_embeds is None:
            if self.vocabulary_embeds.shape[0] == 0:
                raise ValueError(
                    "no classes: pass input_ids (processor(text=...)) or class_embeds, or save a vocabulary "
                    "with model.set_vocabulary([...])"
                )
            class_embeds = self.vocabulary_embeds
        if class_embeds.dim() == 2:  # (C, D) shared by the batch
            class_embeds = class_embeds.unsqueeze(0).expand(batch_size, -1, -1)
        elif class_embeds.dim() != 3 or class_embeds.shape[0] != batch_size:
            raise ValueError(
                f"class_embeds must have shape (C, D) or (batch_size={batch_size}, K, D) "
                f"(got {tuple(class_embeds.shape)})"
            )
        if class_embeds.shape[-1] != self.config.projection_dim:
            raise ValueError(
                f"class embeddings must have projection_dim={self.config.projection_dim} features "
                f"(got {class_embeds.shape[-1]})"
            )
        return F.normalize(class_embeds.to(self.visual_prompts.dtype), dim=-1)

    # ---- vision: prompted CLIP encoder -------------------------------------------------------------------
    def _prompted_layer(self, hidden_states: torch.Tensor, layer_index: int) -> torch.Tensor:
        """Insert (replace) layer `layer_index`'s prompts after [CLS], then run the CLIP encoder layer with drop path.

        The prompts are `prompt_dropout(prompt_proj(visual_prompts[layer_index]))`. The layer is CLIP's own pre-norm
        block (`x + attn(ln1(x))`, then `x + mlp(ln2(x))`, the same weights and operations as
        `CLIPEncoderLayer.forward`) written out so that each residual branch can pass through `drop_path` with this
        layer's probability (the paper's `ResidualAttentionBlock` builds a `DropPath` but its `forward` skips it, so
        the default rate is 0); in eval mode, or at rate 0, it equals `layer(hidden_states, None)` exactly.

        hidden_states: (B, 1 [+ P] + N, E) -> (B, 1 + P + N, E) once prompting has started.
        """
        num_prompts = self.config.num_prompt_tokens
        if layer_index < self.visual_prompts.shape[0] and num_prompts > 0:
            batch = hidden_states.shape[0]
            prompts = self.prompt_dropout(self.prompt_proj(self.visual_prompts[layer_index]))  # (P, E)
            prompts = prompts.expand(batch, -1, -1)  # (B, P, E)
            patches = hidden_states[:, 1:] if layer_index == 0 else hidden_states[:, 1 + num_prompts :]
            hidden_states = torch.cat([hidden_states[:, :1], prompts.to(hidden_states.dtype), patches], dim=1)
        layer = self.clip.vision_model.encoder.layers[layer_index]
        drop_prob = self.drop_path_rates[layer_index]
        attended, _ = layer.self_attn(hidden_states=layer.layer_norm1(hidden_states), attention_mask=None)
        hidden_states = hidden_states + drop_path(attended, drop_prob, self.training)  # (B, T, E)
        transformed = layer.mlp(layer.layer_norm2(hidden_states))
        return hidden_states + drop_path(transformed, drop_prob, self.training)  # (B, T, E)

    def get_image_embeddings(
        self, pixel_values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Prompted CLIP vision forward: embeddings (position embeddings interpolated), pre-layernorm, the prompted
        layer loop (activation checkpointing wraps each layer when enabled), `prompt_norm`, post-layernorm and
        projection.

        Args:
            pixel_values: (B, 3, H, W), H and W multiples of the patch size (position embeddings interpolated).
        Returns:
            `image_embeds` (B, D) and `patch_embeds` (B, h*w, D), both projected and L2-normalised, and the grid
            size `(h, w)`.
        """
        vision = self.clip.vision_model
        patch = self.config.clip_config.vision_config.patch_size
        height, width = pixel_values.shape[-2:]
        if height % patch or width % patch:
            raise ValueError(
                f"pixel_values height and width must be multiples of {patch} (got {height}x{width})"
            )
        hidden_states = vision.embeddings(
            pixel_values.to(self.visual_prompts.dtype), interpolate_pos_encoding=True
        )  # (B, 1 + N, E)
        hidden_states = vision.pre_layrnorm(hidden_states)
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for index in range(len(vision.encoder.layers)):
            if checkpointing:
                hidden_states = self._gradient_checkpointing_func(self._prompted_layer, hidden_states, index)
            else:
                hidden_states = self._prompted_layer(hidden_states, index)
        prompted = self.visual_prompts.shape[0] > 0 and self.config.num_prompt_tokens > 0
        first_patch = 1 + self.config.num_prompt_tokens if prompted else 1
        tokens = torch.cat([hidden_states[:, :1], hidden_states[:, first_patch:]], dim=1)  # (B, 1 + N, E)
        tokens = self.prompt_norm(tokens)  # per-token LayerNorm: dropping the prompts first changes nothing
        tokens = self.clip.visual_projection(vision.post_layernorm(tokens))  # (B, 1 + N, D)
        tokens = F.normalize(tokens, dim=-1)
        return tokens[:, 0], tokens[:, 1:], (height // patch, width // patch)

    def mask_logits(
        self, pixel_values: torch.Tensor, class_embeds: torch.Tensor, classes_per_chunk: int | None = None
    ) -> torch.Tensor:
        """Per-class mask logits on the patch grid, before `forward`'s upsampling; the inference path's model call.

        The vision tower runs once; the decoder runs on `classes_per_chunk` classes at a time (its class queries
        never attend to each other, so chunks give the classes' logits as one call would), which bounds the
        memory of a large vocabulary.

        Args:
            pixel_values: `(B, 3, H, W)` normalised images, H and W multiples of the patch size.
            class_embeds: `(C, D)` class embeddings shared by the batch.
            classes_per_chunk: classes per decoder call (default: all).
        Returns:
            `(B, C, H / patch, W / patch)` mask logits.
        """
        batch_size = pixel_values.shape[0]
        image_embeds, patch_embeds, grid = self.get_image_embeddings(pixel_values)
        class_embeds = self._resolve_class_embeds(batch_size, None, None, class_embeds)  # (B, C, D)
        step = classes_per_chunk or class_embeds.shape[1]
        return torch.cat(
            [
                self.decoder(patch_embeds, image_embeds, class_embeds[:, start : start + step], grid)
                for start in range(0, class_embeds.shape[1], step)
            ],
            dim=1,
        )  # (B, C, h, w)

    # ---- forward -----------------------------------------------------------------------------------------
    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        class_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        counterfactual_pixel_values: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> CLIPOpenSegOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, height, width)`): normalised images.
            input_ids (`torch.LongTensor` of shape `(C, T, L)` or `(batch_size, K, T, L)`, *optional*):
                tokenised class prompts (C shared classes or K per image, T templates), from the processor.
            attention_mask (`torch.LongTensor`, same shape as `input_ids`, *optional*).
            class_embeds (`torch.FloatTensor` of shape `(C, D)` or `(batch_size, K, D)`, *optional*):
                precomputed class embeddings (e.g. `model.encode_classes(names)`), instead of `input_ids`.
                Without either, the saved vocabulary's embeddings are used.
            labels (`torch.LongTensor` of shape `(batch_size, height, width)`, *optional*): 0..C-1 class position,
                `config.none_label` (255) none of these classes, `config.ignore_label` (-100) excluded. With labels
                a call holds fewer than `none_label` classes (ValueError otherwise).
            counterfactual_pixel_values (`torch.FloatTensor`, same shape as `pixel_values`, *optional*):
                the counterfactual images (the same scenes without the target classes).

        The loss is a mean over this batch: `focal_loss_weight * focal + dice_loss_weight * dice` (each divided by
        the batch's number of present masks) `+ counterfactual_loss_weight * counterfactual` (averaged over the
        pairs). There is no `num_items_in_batch` and no catch-all keyword (a misspelt argument is a TypeError):
        the Trainer divides the loss by the gradient-accumulation steps itself.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        batch_size, _, height, width = pixel_values.shape
        class_embeds = self._resolve_class_embeds(
            batch_size, input_ids, attention_mask, class_embeds
        )  # (B, C, D)
        if labels is not None:
            self.config.check_num_classes(class_embeds.shape[1])  # before the vision pass, not after

        counterfactual_image_embeds = None
        if counterfactual_pixel_values is not None:
            if counterfactual_pixel_values.shape != pixel_values.shape:
                raise ValueError(
                    f"counterfactual_pixel_values must have the shape of pixel_values {tuple(pixel_values.shape)} "
                    f"(got {tuple(counterfactual_pixel_values.shape)})"
                )
            both = torch.cat([pixel_values, counterfactual_pixel_values.to(pixel_values.dtype)], dim=0)
            image_embeds, patch_embeds, grid = self.get_image_embeddings(both)
            counterfactual_image_embeds = image_embeds[batch_size:]
            image_embeds, patch_embeds = image_embeds[:batch_size], patch_embeds[:batch_size]
        else:
            image_embeds, patch_embeds, grid = self.get_image_embeddings(pixel_values)

        mask_logits = self.decoder(patch_embeds, image_embeds, class_embeds, grid)  # (B, C, h, w)
        logits = F.interpolate(mask_logits, size=(height, width), mode="bilinear", align_corners=False)

        loss = focal = dice = contrast = None
        terms = []
        if labels is not None:
            focal, dice = self.segmentation_losses(logits, labels)
            terms += [self.config.focal_loss_weight * focal, self.config.dice_loss_weight * dice]
        if counterfactual_image_embeds is not None:
            contrast = counterfactual_loss(image_embeds, counterfactual_image_embeds)
            terms.append(self.config.counterfactual_loss_weight * contrast)
        if terms:
            loss = torch.stack(terms).sum()

        output = CLIPOpenSegOutput(
            loss=loss,
            logits=logits,
            focal_loss=focal,
            dice_loss=dice,
            counterfactual_loss=contrast,
            image_embeds=image_embeds,
            patch_embeds=patch_embeds,
            class_embeds=class_embeds,
            counterfactual_image_embeds=counterfactual_image_embeds,
        )
        return output if return_dict else output.to_tuple()

    def segmentation_losses(
        self, logits: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unweighted (focal, dice) losses of `logits` (B, C, H, W) against position `labels` (B, H', W')."""
        if labels.dim() != 3 or labels.shape[0] != logits.shape[0]:
            raise ValueError(
                f"labels must have shape (batch_size={logits.shape[0]}, height, width) (got {tuple(labels.shape)})"
            )
        num_classes = logits.shape[1]
        self.config.check_num_classes(num_classes)
        labels = labels.to(device=logits.device, dtype=torch.long)
        allowed = (labels >= 0) & (labels < num_classes)
        allowed |= (labels == self.config.none_label) | (labels == self.config.ignore_label)
        if not bool(allowed.all()):
            bad = torch.unique(labels[~allowed])[:5].tolist()
            raise ValueError(
                f"labels hold values {bad} that are neither a class position 0..{num_classes - 1}, "
                f"none_label={self.config.none_label} nor ignore_label={self.config.ignore_label}"
            )
        if labels.shape[-2:] != logits.shape[-2:]:
            logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        targets, valid, present = _targets_from_labels(labels, num_classes, self.config.ignore_label)
        num_masks = count_masks(present)
        focal = sigmoid_focal_loss(
            logits, targets, valid, num_masks, alpha=self.config.focal_alpha, gamma=self.config.focal_gamma
        )
        dice = dice_loss(logits, targets, valid, present, num_masks)
        return focal, dice


__all__ = [
    "CLIPForOpenSegmentation",
    "CLIPOpenSegOutput",
    "CLIPOpenSegPreTrainedModel",
    "count_masks",
    "counterfactual_loss",
    "dice_loss",
    "drop_path",
    "drop_path_schedule",
    "sigmoid_focal_loss",
]
