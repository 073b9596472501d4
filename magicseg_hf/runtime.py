"""Where and in what precision a model runs, and which packages a record was made with.

One owner for three things every verb that runs a model needs:

* **Devices.** One rule everywhere a model runs (``generate``, ``evaluate``, ``predict``; ``train``
  takes TrainingArguments' own ``--use_cpu`` and accelerate's placement): a device is ``auto``,
  ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. ``auto`` is CUDA when available, else the CPU (MPS is
  asked for by name: not every operator of the stack runs there yet). A name is checked for its
  form without torch when settings are made (:func:`check_device_name`), and for its presence on
  this machine before anything is read or written (:func:`resolve_device`): a CUDA GPU index past
  the GPUs present, CUDA or MPS where there is none, are refused in one line. ``generate`` spells
  ``auto`` by leaving ``device`` out (``None``: each process of a multi-process run takes its own
  GPU), and also accepts ``auto``.
* **Dtypes.** ``float32``, ``float16``, ``bfloat16`` (:data:`DTYPE_NAMES`); ``auto`` (where a verb
  offers it, :data:`DTYPES`) is float16 on CUDA, float32 elsewhere (:func:`resolve_dtype`).
* **Versions.** Every record a run writes (``generation.json``, ``training_summary.json``,
  evaluation results, ``export.json``) holds ``package_versions`` with the keys of
  :data:`VERSION_KEYS` (:func:`package_versions`); :func:`recorded_versions` also reads the keys
  older records used (``package_version`` + ``library_versions``).

Importing this module imports no model library: names stay strings until resolved.
"""

from __future__ import annotations

import platform
import re
from importlib import metadata
from typing import Any

from magicseg_hf.errors import InputError

#: The device kinds a model runs on; ``cuda`` may carry a GPU index (``cuda:1``).
DEVICE_KINDS = ("cpu", "cuda", "mps")
#: "Whichever is best here": CUDA when available, else the CPU.
AUTO = "auto"
_DEVICE_PATTERN = re.compile(r"(cpu|cuda(:\d+)?|mps)")

#: Weight types a model may be loaded in.
DTYPE_NAMES = ("float32", "float16", "bfloat16")
#: ... and ``auto``: float16 on CUDA, float32 elsewhere.
DTYPES = (AUTO, *DTYPE_NAMES)

#: The packages every record names (a missing one is left out), then ``python``.
VERSION_PACKAGES = ("magicseg_hf", "torch", "transformers", "datasets", "diffusers", "accelerate",
                    "huggingface_hub", "numpy", "pillow")
VERSION_KEYS = (*VERSION_PACKAGES, "python")
#: The key of the version record in every file a run writes.
VERSIONS_RECORD_KEY = "package_versions"
#: Distribution names of :data:`VERSION_PACKAGES` where they differ from the key.
_DISTRIBUTIONS = {"huggingface_hub": "huggingface-hub"}


# ----------------------------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------------------------
def device_spellings(auto: bool = True) -> str:
    """The accepted spellings, for messages and help: ``auto, cpu, cuda, cuda:N or mps``."""
    return ("auto, " if auto else "") + "cpu, cuda, cuda:N or mps"


def check_device_name(name: Any, parameter: str = "device", auto: bool = True) -> None:
    """Raise :class:`InputError` unless ``name`` is written as a device (``auto`` only when ``auto``
    is offered; ``generate`` spells it ``None``). Imports nothing: whether the device exists here is
    :func:`resolve_device`'s question."""
    text = name if isinstance(name, str) else None
    if text is not None and (_DEVICE_PATTERN.fullmatch(text) or (auto and text == AUTO)):
        return
    raise InputError(f"`{parameter}` must be {device_spellings(auto)} (got {name!r})")


def resolve_device(name: str | None, parameter: str = "device", auto: bool = True) -> Any:
    """``name`` as a ``torch.device`` of this machine (``None`` or ``auto``: CUDA when available,
    else the CPU).

    Raises:
        InputError: a name that is not a device (:func:`check_device_name`), CUDA or MPS where this
            machine has none, or ``cuda:N`` past its GPUs.
    """
    if name is not None:
        check_device_name(name, parameter, auto)
    import torch

    text = AUTO if name is None else name
    if text == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(text)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"`{parameter}` {name!r}: this machine has no CUDA GPU (use `{parameter}` cpu)")
        if device.index is not None and device.index >= count:
            raise InputError(f"`{parameter}` {name!r}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"`{parameter}` {name!r}: MPS is not available on this machine")
    return device


# ----------------------------------------------------------------------------------------------
# Dtypes
# ----------------------------------------------------------------------------------------------
def check_dtype_name(name: Any, parameter: str = "dtype", auto: bool = True) -> None:
    """Raise :class:`InputError` unless ``name`` is one of :data:`DTYPES` (:data:`DTYPE_NAMES`
    without ``auto``)."""
    allowed = DTYPES if auto else DTYPE_NAMES
    if name not in allowed:
        raise InputError(f"`{parameter}` must be one of {', '.join(allowed)} (got {name!r})")


def resolve_dtype(dtype: Any, device: Any = "cpu") -> Any:
    """``dtype`` as a ``torch.dtype``: ``auto`` is float16 on CUDA and float32 elsewhere;
    ``float32``, ``float16`` and ``bfloat16`` name themselves; a ``torch.dtype`` is returned as is."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == AUTO:
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    check_dtype_name(dtype)
    return getattr(torch, dtype)


# ----------------------------------------------------------------------------------------------
# Versions
# ----------------------------------------------------------------------------------------------
def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """The installed version of each of :data:`VERSION_PACKAGES` (and of ``extra`` ones), by
    distribution metadata (no import), and ``python``; packages not installed are left out."""
    from magicseg_hf import __version__

    versions: dict[str, str] = {"magicseg_hf": __version__}  # this checkout's, installed or not
    for name in (*VERSION_PACKAGES[1:], *extra):
        try:
            versions[name] = metadata.version(_DISTRIBUTIONS.get(name, name))
        except metadata.PackageNotFoundError:
            pass
    versions["python"] = platform.python_version()
    return versions


def recorded_versions(record: dict[str, Any] | None) -> dict[str, str]:
    """The package versions a record holds: ``package_versions``, or an older record's
    ``library_versions`` with its ``package_version`` as ``magicseg_hf``."""
    if not isinstance(record, dict):
        return {}
    versions = record.get(VERSIONS_RECORD_KEY)
    if isinstance(versions, dict):
        return {str(key): str(value) for key, value in versions.items()}
    older = record.get("library_versions")
    versions = {str(key): str(value) for key, value in older.items()} if isinstance(older, dict) else {}
    if record.get("package_version") is not None:
        versions = {"magicseg_hf": str(record["package_version"]), **versions}
    return versions
