"""`CLIPForOpenSegmentation` and its config, processors and pipeline (installed as `magicseg_hf.modeling`).

The files of this folder import only torch and transformers (and PIL/numpy) and import each other relatively,
so a saved model folder carries them as Hub remote code (`trust_remote_code=True`).
"""

from __future__ import annotations

from .configuration_clip_open_seg import DEFAULT_TEMPLATES, CLIPOpenSegConfig, format_class_prompts
from .image_processing_clip_open_seg import CLIPOpenSegImageProcessor
from .modeling_clip_open_seg import (
    CLIPForOpenSegmentation,
    CLIPOpenSegOutput,
    CLIPOpenSegPreTrainedModel,
    counterfactual_loss,
    dice_loss,
    sigmoid_focal_loss,
)
from .pipeline_clip_open_seg import TASK, OpenVocabularySegmentationPipeline, slide_inference, sliding_windows
from .processing_clip_open_seg import CLIPOpenSegProcessor, check_class_names, tokenize_class_prompts


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

    if TASK not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline(
            TASK,
            pipeline_class=OpenVocabularySegmentationPipeline,
            pt_model=AutoModelForSemanticSegmentation,
            type="multimodal",
        )


# Importing the package registers it (idempotent); a model folder's remote-code copies of these
# files are loaded by transformers itself and do not go through this.
register_auto_classes()

__all__ = [
    "DEFAULT_TEMPLATES",
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
    "slide_inference",
    "sliding_windows",
    "tokenize_class_prompts",
]
