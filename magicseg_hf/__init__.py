"""magicseg-hf: the MagicSeg method, Hugging Face-native.

Class names -> descriptive prompts -> counterfactual diffusion image pairs -> detector + SAM
pixel labels -> a ``datasets`` dataset; and ``CLIPForOpenSegmentation``, a transformers model
pretrained on it that segments any class named in text.
"""

from __future__ import annotations

__version__ = "0.1.0"

from magicseg_hf.errors import InputError, MagicSegError, ModelLoadError  # noqa: E402

# CLIPForOpenSegmentation: AutoConfig / AutoModel / AutoModelForSemanticSegmentation / AutoImageProcessor /
# AutoProcessor registration, remote-code registration, and the "open-vocabulary-segmentation" pipeline task.
from magicseg_hf.modeling import register_auto_classes as _register_open_seg  # noqa: E402

_register_open_seg()

__all__ = ["InputError", "MagicSegError", "ModelLoadError", "__version__"]
