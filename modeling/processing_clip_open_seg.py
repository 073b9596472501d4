"""Processor of `CLIPForOpenSegmentation`: the image processor plus a CLIP tokenizer that expands each class
name through the template ensemble (the model averages the templates).

Self-contained: imports only torch and transformers, so this folder can be pushed to the Hub as remote code.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import BatchEncoding, BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging

from .configuration_clip_open_seg import DEFAULT_TEMPLATES, format_class_prompts
from .inference_clip_open_seg import DEFAULT_THRESHOLD, check_class_names

logger = logging.get_logger(__name__)


def tokenize_class_prompts(
    tokenizer: Any, names: list[str], templates: list[str] | tuple[str, ...]
) -> BatchEncoding:
    """Tokenise every (name, template) prompt.

    Returns a `BatchEncoding` with `input_ids` and `attention_mask` of shape `(len(names), len(templates), L)`
    (padded to the longest prompt, truncated at the tokenizer's `model_max_length`).
    """
    prompts = format_class_prompts(names, templates)
    encoding = tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
    num_classes, num_templates = len(names), len(templates)
    return BatchEncoding(
        {
            "input_ids": encoding["input_ids"].view(num_classes, num_templates, -1),
            "attention_mask": encoding["attention_mask"].view(num_classes, num_templates, -1),
        }
    )


class CLIPOpenSegProcessor(ProcessorMixin):
    r"""
    Image processor + CLIP tokenizer for [`CLIPForOpenSegmentation`].

    `processor(images=..., text=class_names, return_tensors="pt")` returns everything `model(**enc)` needs:
    `pixel_values` `(B, 3, H, W)` and, for `text` a list of C names, `input_ids`/`attention_mask` of shape
    `(C, T, L)` (each name through the T templates); for `text` a list of B lists of K names (one per image),
    `(B, K, T, L)`.

    Args:
        image_processor ([`CLIPOpenSegImageProcessor`]): the image processor.
        tokenizer ([`CLIPTokenizer`] or [`CLIPTokenizerFast`]): the CLIP tokenizer.
        templates (`list[str]`, *optional*): the template ensemble (the model config's; the paper's 15 by default).
    """

    def __init__(
        self, image_processor: Any = None, tokenizer: Any = None, templates: list[str] | None = None, **kwargs
    ):
        super().__init__(image_processor, tokenizer, **kwargs)
        self.templates = list(templates) if templates is not None else list(DEFAULT_TEMPLATES)
        format_class_prompts([], self.templates)  # validates the templates

    def tokenize_classes(self, names: list[str], templates: list[str] | None = None) -> BatchEncoding:
        """`input_ids`/`attention_mask` of shape `(C, T, L)` for one list of class names."""
        names = check_class_names(names)
        return tokenize_class_prompts(
            self.tokenizer, names, templates if templates is not None else self.templates
        )

    def __call__(
        self,
        images: Any = None,
        text: list[str] | list[list[str]] | str | None = None,
        templates: list[str] | None = None,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """Prepare images and/or class names.

        Args:
            images: one image or a list (PIL, numpy or torch).
            text: class names shared by every image (`list[str]`, -> `(C, T, L)`) or one list per image
                (`list[list[str]]`, all of the same length K, -> `(B, K, T, L)`).
            templates: override the template ensemble for this call.
            return_tensors: only `"pt"` is supported for text.
        """
        if images is None and text is None:
            raise ValueError("pass images, text (class names) or both (got neither)")
        data: dict[str, Any] = {}
        if images is not None:
            data.update(self.image_processor(images, return_tensors=return_tensors, **kwargs))
        if text is not None:
            if return_tensors not in ("pt", None):
                raise ValueError(
                    f"class names are tokenised to torch tensors only (got return_tensors={return_tensors!r})"
                )
            if (
                isinstance(text, (list, tuple))
                and text
                and all(isinstance(item, (list, tuple)) for item in text)
            ):
                per_image = [self.tokenize_classes(list(names), templates) for names in text]
                counts = {encoding["input_ids"].shape[0] for encoding in per_image}
                if len(counts) != 1:
                    raise ValueError(
                        f"every image must have the same number of classes (got {sorted(counts)})"
                    )
                length = max(encoding["input_ids"].shape[-1] for encoding in per_image)
                pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
                data["input_ids"] = torch.stack(
                    [_pad_last(encoding["input_ids"], length, pad_id) for encoding in per_image]
                )  # (B, K, T, L)
                data["attention_mask"] = torch.stack(
                    [_pad_last(encoding["attention_mask"], length, 0) for encoding in per_image]
                )
                if images is not None and data["input_ids"].shape[0] != data["pixel_values"].shape[0]:
                    raise ValueError(
                        f"text must hold one class list per image (got {data['input_ids'].shape[0]} class lists for "
                        f"{data['pixel_values'].shape[0]} images)"
                    )
            else:
                data.update(self.tokenize_classes(text, templates))
        return BatchFeature(data=data)

    def post_process_semantic_segmentation(
        self, outputs: Any, target_sizes: Any = None, threshold: float | None = DEFAULT_THRESHOLD
    ) -> list[torch.Tensor]:
        """See [`CLIPOpenSegImageProcessor.post_process_semantic_segmentation`].

        `threshold` defaults to 0.5 (the sigmoid the model is trained to separate at): pixels whose best class
        probability is below it get -1 ("no class"); `threshold=None` takes the plain argmax.
        """
        return self.image_processor.post_process_semantic_segmentation(outputs, target_sizes, threshold)

    @property
    def model_input_names(self) -> list[str]:
        return ["pixel_values", "input_ids", "attention_mask"]


def _pad_last(tensor: torch.Tensor, length: int, value: int) -> torch.Tensor:
    """Right-pad the last dimension of `tensor` to `length` with `value`."""
    missing = length - tensor.shape[-1]
    return torch.nn.functional.pad(tensor, (0, missing), value=value) if missing > 0 else tensor


__all__ = ["CLIPOpenSegProcessor", "check_class_names", "tokenize_class_prompts"]
