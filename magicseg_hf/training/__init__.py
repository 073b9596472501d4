"""Pretraining: ``MagicSegCollator`` (category random sampling, shared pair augmentation), ``MagicSegTrainer``
and ``magicseg train``."""
