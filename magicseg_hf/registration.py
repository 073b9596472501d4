"""Register ``CLIPForOpenSegmentation`` with transformers — without importing torch to do it.

``import magicseg_hf`` promises that ``AutoModel.from_pretrained(folder)``,
``AutoProcessor.from_pretrained(folder)`` and ``pipeline("open-vocabulary-segmentation")`` know
our model. Registering means importing the model (torch, transformers), which the command line's
``--help`` and the light modules (settings, validation) must not pay for. So registration waits
for transformers: if transformers is already imported it happens at once, otherwise an import
hook runs it right after ``transformers`` itself finishes importing — the first moment anyone
could ask an Auto class for our model. ``magicseg_hf.modeling`` registers itself when imported,
so importing it directly works too.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

_MODELING = "magicseg_hf.modeling"


def register_now() -> None:
    """Import ``magicseg_hf.modeling`` (which registers the Auto classes and the pipeline task).

    When the modeling package is itself being imported (it imports transformers, which fires the
    hook), nothing is done here: the package registers at the end of its own import.
    """
    if _MODELING in sys.modules:
        return
    importlib.import_module(_MODELING)


class _RegisterAfterImport(importlib.abc.Loader):
    """Wraps transformers' loader: run it, then register."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        try:
            register_now()
        except Exception as error:  # never break the user's `import transformers`
            logger.warning("could not register CLIPForOpenSegmentation with transformers: %s", error)

    def __getattr__(self, name: str) -> Any:  # e.g. get_resource_reader, is_package
        return getattr(self._loader, name)


class _TransformersHook(importlib.abc.MetaPathFinder):
    """A one-shot finder: wraps the loader of the top-level ``transformers`` package."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "transformers":
            return None
        uninstall()
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _RegisterAfterImport(spec.loader)
        return spec


_HOOK = _TransformersHook()


def install() -> None:
    """Register now if transformers is loaded, else when it is first imported. Idempotent."""
    if "transformers" in sys.modules:
        register_now()
    elif _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


def uninstall() -> None:
    """Remove the import hook (it removes itself once it has fired)."""
    while _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)
