"""The Grounding DINO twins: ``tiny:grounding-dino`` and ``tiny:mm-grounding-dino`` (one architecture)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicseg_hf.twins._common import seeded
from magicseg_hf.twins.tokenizers import tiny_bert_tokenizer

if TYPE_CHECKING:
    from transformers import (
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
        MMGroundingDinoForObjectDetection,
    )


def _tiny_grounding_dino_config(config_class: type[Any], tokenizer: Any) -> Any:
    """The tiny Grounding DINO architecture as a ``config_class`` (``GroundingDinoConfig`` or
    ``MMGroundingDinoConfig``, which share their fields): a Swin backbone at 128 px, a 1-layer BERT
    text encoder over ``tokenizer``'s vocabulary, d_model 32 and 5 queries."""
    from transformers import BertConfig, SwinConfig

    backbone = SwinConfig(
        image_size=128,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
    )
    return config_class(
        backbone_config=backbone,
        text_config=text,
        num_queries=5,  # with the tiny preset's 0.0 thresholds every query is a detection
        encoder_layers=1,
        decoder_layers=2,  # 1 breaks transformers' bbox_embed weight tying
        d_model=32,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=2,
        decoder_n_points=2,
    )


def _tiny_grounding_dino_processor(tokenizer: Any) -> GroundingDinoProcessor:
    """A ``GroundingDinoProcessor`` resizing to 128 px, over ``tokenizer``."""
    from transformers import GroundingDinoImageProcessor, GroundingDinoProcessor

    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 128})
    return GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)


def tiny_grounding_dino(seed: int = 0) -> tuple[GroundingDinoForObjectDetection, GroundingDinoProcessor]:
    """``tiny:grounding-dino``: a Swin backbone at 128 px, a 1-layer BERT text encoder over
    :func:`tiny_bert_tokenizer`, and 5 queries (5 boxes per image)."""
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    tokenizer = tiny_bert_tokenizer()
    config = _tiny_grounding_dino_config(GroundingDinoConfig, tokenizer)
    with seeded(seed):
        model = GroundingDinoForObjectDetection(config)
    return model.eval(), _tiny_grounding_dino_processor(tokenizer)


def tiny_mm_grounding_dino(
    seed: int = 0,
) -> tuple[MMGroundingDinoForObjectDetection, GroundingDinoProcessor]:
    """``tiny:mm-grounding-dino``: :func:`tiny_grounding_dino`'s architecture and processor as an
    ``MMGroundingDinoForObjectDetection`` (whose contrastive class head adds a learnt bias, drawn
    set to its prior, -log(99), so untrained token probabilities sit near 0.01), weights drawn
    under ``seed``."""
    from transformers import MMGroundingDinoConfig, MMGroundingDinoForObjectDetection

    tokenizer = tiny_bert_tokenizer()
    config = _tiny_grounding_dino_config(MMGroundingDinoConfig, tokenizer)
    with seeded(seed):
        model = MMGroundingDinoForObjectDetection(config)
    return model.eval(), _tiny_grounding_dino_processor(tokenizer)



def write_tiny_grounding_dino(folder: Path, seed: int) -> None:
    """Save :func:`tiny_grounding_dino` (model and processor) into ``folder``."""
    model, processor = tiny_grounding_dino(seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def write_tiny_mm_grounding_dino(folder: Path, seed: int) -> None:
    """Save :func:`tiny_mm_grounding_dino` (model and processor) into ``folder``."""
    model, processor = tiny_mm_grounding_dino(seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
