"""Configuration of `CLIPForOpenSegmentation` (MagicSeg / ZegCLIP-style open-vocabulary segmentation).

Self-contained: imports only transformers, so this folder can be pushed to the Hub as remote code.
"""

from __future__ import annotations

from typing import Any

from transformers import CLIPConfig, PreTrainedConfig
from transformers.utils import logging

logger = logging.get_logger(__name__)

# The 15 prompt templates the paper's code (ZegCLIP's `get_embedding` notebook) averages per class.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "a {} in the scene.",
    "a photo of a {} in the scene.",
    "There is a {} in the scene.",
    "There is the {} in the scene.",
    "This is a {} in the scene.",
    "This is the {} in the scene.",
    "This is one {} in the scene.",
)


def clip_vit_b16_config() -> dict:
    """Sizes of `openai/clip-vit-base-patch16`, the paper's backbone: the nested CLIP config used when none is
    given (transformers' own `CLIPConfig()` default is ViT-B/32). A fresh dict on every call."""
    return {
        "projection_dim": 512,
        "vision_config": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "patch_size": 16,
            "image_size": 224,
        },
        "text_config": {
            "hidden_size": 512,
            "intermediate_size": 2048,
            "num_hidden_layers": 12,
            "num_attention_heads": 8,
        },
    }


def format_class_prompts(
    names: list[str] | tuple[str, ...], templates: list[str] | tuple[str, ...]
) -> list[str]:
    """Expand class names through a template ensemble, class-major.

    Returns `len(names) * len(templates)` strings: all templates of `names[0]`, then of `names[1]`, ...
    This is the single place where names meet templates (processor, pipeline and `encode_classes` use it).
    """
    if len(templates) == 0:
        raise ValueError("templates must hold at least one template (got an empty list)")
    for template in templates:
        if template.count("{}") != 1:
            raise ValueError(f"each template must contain exactly one '{{}}' placeholder (got {template!r})")
    return [template.format(name) for name in names for template in templates]


#: How the label -1 ("no class reached the threshold") reads in `id2label`.
NO_CLASS_NAME = "no class"


class LabelNames(dict):
    """`id2label`: class position -> name, where -1 (no class reached the decision threshold) reads as
    `NO_CLASS_NAME`, so transformers' `image-segmentation` pipeline names the pixels left unlabelled instead of
    failing on them."""

    def __missing__(self, key: Any) -> str:
        if key == -1:
            return NO_CLASS_NAME
        raise KeyError(key)


class CLIPOpenSegConfig(PreTrainedConfig):
    r"""
    Configuration of [`CLIPForOpenSegmentation`]: a frozen CLIP with deep visual prompt tuning, a relationship
    descriptor and a 3-layer cross-attention decoder whose attention maps are the per-class mask logits
    (ZegCLIP's architecture, trained with MagicSeg's counterfactual loss). Defaults are the paper's (ViT-B/16, 512 px).

    Args:
        clip_config (`dict` or `CLIPConfig`, *optional*):
            The nested CLIP configuration (text and vision towers). Defaults to the sizes of
            `openai/clip-vit-base-patch16` (ViT-B/16: patch 16, width 768, 12 layers; text width 512), see
            [`clip_vit_b16_config`].
        image_size (`int`, *optional*, defaults to 512):
            Training/inference crop size; CLIP's position embeddings are interpolated to `image_size / patch_size`.
        num_prompt_tokens (`int`, *optional*, defaults to 10):
            Learned visual prompt tokens inserted in each prompted encoder layer (deep VPT).
        prompt_depth (`int`, *optional*):
            Number of encoder layers (from the first) that get their own prompts. `None` = all layers (paper).
        prompt_dropout (`float`, *optional*, defaults to 0.1):
            Dropout applied to the prompt tokens in training (after `prompt_proj`).
        use_prompt_proj (`bool`, *optional*, defaults to `True`):
            Pass each layer's learned prompts through a trainable `Linear(hidden_size, hidden_size)` before the
            dropout, as the paper's code (ZegCLIP's VPT backbone) does. `False` inserts the raw prompts.
        use_prompt_norm (`bool`, *optional*, defaults to `True`):
            Apply a trainable LayerNorm (`prompt_norm`) to the last encoder layer's tokens before CLIP's frozen
            post-layernorm, as the paper's code does. `False` goes straight to the post-layernorm.
        drop_path_rate (`float`, *optional*, defaults to 0.0):
            Stochastic depth in the frozen vision tower (training only): each residual branch (attention, MLP)
            of encoder layer `i` is dropped per sample with probability `drop_path_rate * i / (num_layers - 1)`,
            rising linearly from 0 at the first layer to `drop_path_rate` at the last (the rule of the DenseCLIP/
            ZegCLIP backbone). 0 (the default) turns it off, which is what the paper's released code runs: its
            config asks for 0.1 and its `ResidualAttentionBlock` builds a `DropPath`, but its `forward` never
            calls it. With it on, the positive and the counterfactual get independent masks inside the
            counterfactual term (identical images no longer give a loss of 1).
        decoder_hidden_size (`int`, *optional*, defaults to 512): width of the decoder.
        decoder_num_layers (`int`, *optional*, defaults to 3): cross-attention decoder layers.
        decoder_num_heads (`int`, *optional*, defaults to 8): attention heads of the decoder.
        decoder_intermediate_size (`int`, *optional*, defaults to 2048): FFN width of the decoder.
        decoder_dropout (`float`, *optional*, defaults to 0.1): dropout in the decoder (attention and FFN).
        templates (`list[str]`, *optional*): prompt-template ensemble averaged per class (15 templates by default).
        vocabulary (`list[str]`, *optional*): default class names; their embeddings are stored with the weights
            so that `model(pixel_values)` and `pipeline("image-segmentation")` work without text.
        focal_alpha, focal_gamma (`float`): sigmoid focal loss parameters (0.25, 2.0).
        focal_loss_weight, dice_loss_weight, counterfactual_loss_weight (`float`): 100, 1, 1.
        none_label (`int`, *optional*, defaults to 255): label value meaning "none of these classes".
        ignore_label (`int`, *optional*, defaults to -100): label value excluded from every loss.
        slide_crop_size, slide_stride (`int`): sliding-window inference crop and stride (512 / 426).
        use_lora (`bool`, *optional*, defaults to `False`): add LoRA (peft) adapters to the vision tower.
        lora_rank, lora_alpha, lora_dropout, lora_target_modules: LoRA settings (vision tower only).
        initializer_range (`float`, *optional*, defaults to 0.02): std of the decoder's initial weights.
    """

    model_type = "clip_open_seg"
    sub_configs_defaults = {"clip_config": CLIPConfig}

    clip_config: dict | CLIPConfig | None = None
    image_size: int = 512
    num_prompt_tokens: int = 10
    prompt_depth: int | None = None
    prompt_dropout: float = 0.1
    use_prompt_proj: bool = True
    use_prompt_norm: bool = True
    drop_path_rate: float = 0.0
    decoder_hidden_size: int = 512
    decoder_num_layers: int = 3
    decoder_num_heads: int = 8
    decoder_intermediate_size: int = 2048
    decoder_dropout: float = 0.1
    templates: list[str] | tuple[str, ...] = DEFAULT_TEMPLATES
    vocabulary: list[str] | tuple[str, ...] = ()
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    focal_loss_weight: float = 100.0
    dice_loss_weight: float = 1.0
    counterfactual_loss_weight: float = 1.0
    none_label: int = 255
    ignore_label: int = -100
    slide_crop_size: int = 512
    slide_stride: int = 426
    use_lora: bool = False
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | tuple[str, ...] = ("q_proj", "v_proj")
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.clip_config is None:
            self.clip_config = clip_vit_b16_config()
        if isinstance(self.clip_config, dict):  # transformers < 5.20 (no sub_configs_defaults) keeps the dict
            self.clip_config = CLIPConfig(**self.clip_config)
        super().__post_init__(**kwargs)
        self.templates = list(self.templates)
        self.vocabulary = list(self.vocabulary)
        self.lora_target_modules = list(self.lora_target_modules)
        if self.vocabulary:
            self.id2label = LabelNames(enumerate(self.vocabulary))
            self.label2id = {name: i for i, name in enumerate(self.vocabulary)}
        self.validate_architecture()

    def validate_architecture(self):
        """Checks the values that would otherwise fail deep inside the forward pass."""
        vision = self.clip_config.vision_config
        num_layers = vision.num_hidden_layers
        if self.decoder_hidden_size % self.decoder_num_heads != 0:
            raise ValueError(
                f"decoder_hidden_size must be divisible by decoder_num_heads (got decoder_hidden_size: "
                f"{self.decoder_hidden_size} and decoder_num_heads: {self.decoder_num_heads})"
            )
        if self.prompt_depth is not None and not 0 <= self.prompt_depth <= num_layers:
            raise ValueError(
                f"prompt_depth must be between 0 and the vision tower's {num_layers} layers (got {self.prompt_depth})"
            )
        if self.image_size % vision.patch_size != 0:
            raise ValueError(
                f"image_size must be a multiple of the vision patch_size (got image_size: {self.image_size} and "
                f"patch_size: {vision.patch_size})"
            )
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1) (got {self.drop_path_rate})")
        if self.none_label == self.ignore_label:
            raise ValueError(f"none_label and ignore_label must differ (both are {self.none_label})")
        duplicates = sorted({name for name in self.vocabulary if self.vocabulary.count(name) > 1})
        if duplicates:
            raise ValueError(f"vocabulary must name each class once (got duplicates: {duplicates})")
        format_class_prompts([], self.templates)

    def check_num_classes(self, num_classes: int) -> None:
        """Raise if `num_classes` classes in one call cannot be trained against labels.

        Label value `none_label` (255) means "none of these classes" and class positions are `0..K-1`, so a call
        with labels holds fewer than `none_label` classes (at most 254 by default). Calls without labels
        (inference, `encode_classes` of a whole vocabulary) may hold any number.
        """
        if self.none_label >= 0 and num_classes >= self.none_label:
            raise ValueError(
                f"labels can only be used with fewer than none_label={self.none_label} classes per call, the label "
                f"value {self.none_label} meaning 'none of these classes' (got {num_classes} classes)"
            )

    @property
    def num_prompted_layers(self) -> int:
        """How many vision encoder layers carry learned prompts."""
        total = self.clip_config.vision_config.num_hidden_layers
        return total if self.prompt_depth is None else self.prompt_depth

    @property
    def projection_dim(self) -> int:
        """Dimension of the joint CLIP embedding space (text and image embeddings)."""
        return self.clip_config.projection_dim


__all__ = ["CLIPOpenSegConfig", "DEFAULT_TEMPLATES", "clip_vit_b16_config", "format_class_prompts"]
