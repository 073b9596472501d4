"""`CLIPForOpenSegmentation` and its config, processors and pipeline (installed as `magicseg_hf.modeling`).

The files of this folder import only torch and transformers (and PIL/numpy) and import each other relatively,
so a saved model folder carries them as Hub remote code (`trust_remote_code=True`).
"""

from __future__ import annotations

from typing import Any

from .configuration_clip_open_seg import DEFAULT_TEMPLATES, CLIPOpenSegConfig, format_class_prompts
from .image_processing_clip_open_seg import CLIPOpenSegImageProcessor
from .inference_clip_open_seg import (
    DECISION_RULES,
    DEFAULT_THRESHOLD,
    Decision,
    InferenceGeometry,
    Queries,
    SegmentationResult,
    check_class_names,
    segment_images,
    sliding_windows,
)
from .modeling_clip_open_seg import (
    CLIPForOpenSegmentation,
    CLIPOpenSegOutput,
    CLIPOpenSegPreTrainedModel,
    counterfactual_loss,
    dice_loss,
    sigmoid_focal_loss,
)
from .pipeline_clip_open_seg import TASK, OpenVocabularySegmentationPipeline
from .processing_clip_open_seg import CLIPOpenSegProcessor, tokenize_class_prompts


def register_auto_classes() -> None:
    """Register the model with transformers' Auto classes and the `open-vocabulary-segmentation` pipeline task.

    - `AutoConfig`, `AutoModel`, `AutoModelForSemanticSegmentation`, `AutoImageProcessor`, `AutoProcessor`
      resolve `model_type="clip_open_seg"` to these classes in this process;
    - `register_for_auto_class` makes `save_pretrained` copy these files into the folder with an `auto_map`, so
      the folder also loads with `trust_remote_code=True` where magicseg_hf is not installed.
    Idempotent.
    """
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModel,
        AutoModelForSemanticSegmentation,
        AutoProcessor,
    )
    from transformers.pipelines import PIPELINE_REGISTRY

    AutoConfig.register(CLIPOpenSegConfig.model_type, CLIPOpenSegConfig, exist_ok=True)
    AutoModel.register(CLIPOpenSegConfig, CLIPForOpenSegmentation, exist_ok=True)
    AutoModelForSemanticSegmentation.register(CLIPOpenSegConfig, CLIPForOpenSegmentation, exist_ok=True)
    AutoImageProcessor.register(
        CLIPOpenSegConfig, image_processor_classes={"torchvision": CLIPOpenSegImageProcessor}, exist_ok=True
    )
    AutoProcessor.register(CLIPOpenSegConfig, CLIPOpenSegProcessor, exist_ok=True)

    CLIPOpenSegConfig.register_for_auto_class("AutoConfig")
    CLIPForOpenSegmentation.register_for_auto_class("AutoModelForSemanticSegmentation")
    CLIPOpenSegImageProcessor.register_for_auto_class("AutoImageProcessor")
    CLIPOpenSegProcessor.register_for_auto_class("AutoProcessor")

    _quiet_image_segmentation_check()
    if TASK not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline(
            TASK,
            pipeline_class=OpenVocabularySegmentationPipeline,
            pt_model=AutoModelForSemanticSegmentation,
            type="multimodal",
        )


class _SupportedModelFilter:
    """Drops transformers' "model 'CLIPForOpenSegmentation' is not supported for image-segmentation" error.

    `pipeline("image-segmentation", model=FOLDER)` checks the model class against transformers' built-in name
    tables only, so a registered model is reported unsupported although the pipeline runs it (through the image
    processor's `post_process_semantic_segmentation`). Only that message, for this model, is dropped.
    """

    def filter(self, record: Any) -> bool:
        message = record.getMessage()
        return f"'{CLIPForOpenSegmentation.__name__}' is not supported for" not in message


def _quiet_image_segmentation_check() -> None:
    import logging as std_logging

    base_logger = std_logging.getLogger("transformers.pipelines.base")
    if not any(isinstance(f, _SupportedModelFilter) for f in base_logger.filters):
        base_logger.addFilter(_SupportedModelFilter())


# Importing the package registers it (idempotent); a model folder's remote-code copies of these
# files are loaded by transformers itself and do not go through this.
register_auto_classes()

__all__ = [
    "DECISION_RULES",
    "DEFAULT_TEMPLATES",
    "DEFAULT_THRESHOLD",
    "Decision",
    "InferenceGeometry",
    "Queries",
    "SegmentationResult",
    "segment_images",
    "TASK",
    "CLIPForOpenSegmentation",
    "CLIPOpenSegConfig",
    "CLIPOpenSegImageProcessor",
    "CLIPOpenSegOutput",
    "CLIPOpenSegPreTrainedModel",
    "CLIPOpenSegProcessor",
    "OpenVocabularySegmentationPipeline",
    "check_class_names",
    "counterfactual_loss",
    "dice_loss",
    "format_class_prompts",
    "register_auto_classes",
    "sigmoid_focal_loss",
    "sliding_windows",
    "tokenize_class_prompts",
]
