"""The ``MagicSeg`` dataset builder (``magicseg_hf.dataset_builders.magicseg``)."""

from magicseg_hf.dataset_builders.magicseg.magicseg import MagicSeg, MagicSegConfig, vocabulary_digest

__all__ = ["MagicSeg", "MagicSegConfig", "vocabulary_digest"]
