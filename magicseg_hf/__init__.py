"""magicseg-hf: the MagicSeg method, Hugging Face-native.

Class names -> descriptive prompts -> counterfactual diffusion image pairs -> detector + SAM
pixel labels -> a ``datasets`` dataset; and ``CLIPForOpenSegmentation``, a transformers model
pretrained on it that segments any class named in text.

Importing the package is cheap (no torch): the model classes load on first use, and
transformers' Auto classes and the ``open-vocabulary-segmentation`` pipeline task learn about
the model as soon as transformers is imported (see :mod:`magicseg_hf.registration`).
"""

from __future__ import annotations

from magicseg_hf.errors import InputError, MagicSegError, ModelLoadError
from magicseg_hf.lazy import lazy_exports
from magicseg_hf.registration import install as _install_registration

__version__ = "0.1.0"

# A global effect, on purpose: `import magicseg_hf` promises that AutoModel/AutoProcessor and
# pipeline("open-vocabulary-segmentation") know CLIPForOpenSegmentation, without importing torch
# here (the CLI's --help must stay fast). So a one-shot sys.meta_path hook registers the model
# right after transformers is first imported (at once if it already is). Why and how:
# magicseg_hf/registration.py; `import magicseg_hf.modeling` registers explicitly.
_install_registration()

#: Public names loaded on first access: name -> module.
_LAZY = {
    "CLIPForOpenSegmentation": "magicseg_hf.modeling",
    "CLIPOpenSegConfig": "magicseg_hf.modeling",
    "CLIPOpenSegImageProcessor": "magicseg_hf.modeling",
    "CLIPOpenSegProcessor": "magicseg_hf.modeling",
    "GenerationConfig": "magicseg_hf.generation",
    "generate": "magicseg_hf.generation",
}

__all__ = ["InputError", "MagicSegError", "ModelLoadError", "__version__", *sorted(_LAZY)]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
