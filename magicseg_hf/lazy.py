"""Public names of a module imported on first use (PEP 562), so importing the module stays cheap.

The package's ``__init__`` files (and :mod:`magicseg_hf.presets`) name what they export and the
module that defines each name; the defining module (and torch, transformers, ... with it) is
imported only when the name is first looked up. This module imports nothing of the package.

Example::

    from magicseg_hf.lazy import lazy_exports

    _EXPORTS = {"generate": "magicseg_hf.generation.pipeline"}
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    module_name: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of module ``module_name`` for its lazy names.

    Args:
        module_name: the ``__name__`` of the module that exports the names.
        exports: public name -> the full name of the module that defines it.

    Returns:
        ``(__getattr__, __dir__)``: the first imports the defining module of a name in ``exports``
        and returns the name's value (an :class:`AttributeError` for any other name); the second
        lists the module's own names and the lazy ones.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[module_name]), *exports})

    return __getattr__, __dir__
