"""The OWLv2 twin: ``tiny:owlv2``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from magicseg_hf.twins._common import seeded, tokenizer_fields
from magicseg_hf.twins.tokenizers import tiny_owlv2_tokenizer

if TYPE_CHECKING:
    from transformers import Owlv2ForObjectDetection, Owlv2Processor


def tiny_owlv2(seed: int = 0) -> tuple[Owlv2ForObjectDetection, Owlv2Processor]:
    """``tiny:owlv2``: 64 px images in 32 px patches (4 boxes per image), text over
    :func:`tiny_owlv2_tokenizer`."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    tokenizer = tiny_owlv2_tokenizer()
    text_config = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 16,
        **tokenizer_fields(tokenizer),
    }
    # 64 px / 32 px patches = 4 patches = 4 boxes per image (one per patch).
    vision_config = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 64,
        "patch_size": 32,
    }
    # projection_dim must equal the text hidden size (OWLv2's class head).
    config = Owlv2Config(text_config=text_config, vision_config=vision_config, projection_dim=32)
    with seeded(seed):
        model = Owlv2ForObjectDetection(config)
    image_processor = Owlv2ImageProcessor(size={"height": 64, "width": 64})
    return model.eval(), Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer)



def write_tiny_owlv2(folder: Path, seed: int) -> None:
    """Save :func:`tiny_owlv2` (model and processor) into ``folder``."""
    model, processor = tiny_owlv2(seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
