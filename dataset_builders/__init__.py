"""``datasets`` builders for MagicSeg data (installed as ``magicseg_hf.dataset_builders``).

- :mod:`magicseg_hf.dataset_builders.magicseg`: :class:`MagicSeg`, a ``GeneratorBasedBuilder`` whose
  config is a :class:`~magicseg_hf.generation.GenerationConfig` and whose data is made by
  :func:`~magicseg_hf.generation.generate`.

Importing this package imports no builder (and so no ``datasets`` or ``torch``); import the builder's
own package to use it.
"""
