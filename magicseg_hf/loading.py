"""Loading the external models: real checkpoints (Hub ids or local folders) and ``tiny:`` twins.

Every loader takes a Hub id, a local folder or a ``tiny:`` id (see :mod:`magicseg_hf.presets`) and
loads it through the family's ``from_pretrained``: :func:`magicseg_hf.twins.resolve` first turns a
``tiny:`` id into the folder its twin builder wrote once into the cache (and refuses a twin of
another role), so a twin takes exactly the code a Hub id or a user's folder takes. Before that,
:func:`check_model_available` fails at once — a missing folder, an uncached id while offline, an
unreachable Hub — instead of letting huggingface_hub retry for 20-45 s, and whatever the library
raises while loading becomes one :class:`ModelLoadError` line. Each loader imports its own model
family when called, so loading a detector does not import diffusers.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from magicseg_hf import hub_access, twins
from magicseg_hf.errors import ModelLoadError, first_line
from magicseg_hf.hub_access import check_model_available
from magicseg_hf.presets import (
    DETECTOR_ROLES,
    OPEN_SEG_PRESETS,
    PAPER_MODELS,
    SEGMENTER_ROLES,
    TINY_OPEN_SEG_MODEL,
)
from magicseg_hf.runtime import resolve_dtype

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

    from magicseg_hf.modeling import CLIPForOpenSegmentation, CLIPOpenSegProcessor


def _weight_file_errors() -> tuple[type[BaseException], ...]:
    """Exception types of a weights file that is not what it claims (garbage safetensors)."""
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - safetensors comes with transformers
        return ()
    return (SafetensorError,)


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """No transformers (and, when imported, diffusers) progress bars in the block: loading or saving
    a local folder reads no network, so its "Loading weights" / "Writing model shards" bars say
    nothing a log line does not. Each library's setting, and huggingface_hub's, is restored after."""
    import sys

    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    libraries = [transformers_logging]
    if "diffusers" in sys.modules:  # never imported for this: loading a detector does not import diffusers
        from diffusers.utils import logging as diffusers_logging

        libraries.append(diffusers_logging)
    enabled = [library.is_progress_bar_enabled() for library in libraries]
    hub_disabled = are_progress_bars_disabled()
    for library in libraries:
        library.disable_progress_bar()
    try:
        yield
    finally:
        for library, was_enabled in zip(libraries, enabled):
            if was_enabled:
                library.enable_progress_bar()
        (disable_progress_bars if hub_disabled else enable_progress_bars)()


@contextlib.contextmanager
def load_errors(model_id: str, what: str) -> Iterator[None]:
    """Turn what loading ``model_id`` raises for a bad model — an ``OSError`` or ``ValueError`` (a
    bad folder, a wrong revision, a broken config), a weights file that is garbage, a pickle
    weights file that holds more than tensors, a Hub that stops answering — into a one-line
    :class:`ModelLoadError` naming ``what`` (credentials of ``HF_ENDPOINT`` redacted).

    A pickle (``pytorch_model.bin``) is read with ``weights_only=True`` by transformers and
    diffusers: code in it is never run, and such a file is refused here with a hint instead of
    torch's advice to load it unsafely. A local folder loads without progress bars
    (:func:`quiet_progress_bars`); a Hub id keeps its download bars.
    """
    local = Path(model_id).expanduser().is_dir()
    try:
        with quiet_progress_bars() if local else contextlib.nullcontext():
            yield
    except ModelLoadError:
        raise
    except pickle.UnpicklingError as error:
        raise ModelLoadError(
            f"cannot load {what} {model_id!r}: a pickle weights file in it holds more than tensors and is "
            "refused (loading it could run code); save the model with safetensors weights"
        ) from error
    except hub_access.network_errors() as error:
        raise ModelLoadError(
            f"cannot load {what} {model_id!r}: the Hugging Face Hub at {hub_access.hub_endpoint_for_display()} "
            f"stopped answering ({type(error).__name__}); check the network or pass a local folder"
        ) from error
    except (OSError, ValueError, *_weight_file_errors()) as error:
        raise ModelLoadError(f"cannot load {what} {model_id!r}: {hub_access.redact(first_line(error))}") from error


def own_memory(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with every CPU weight and buffer in freshly allocated (aligned) memory.

    A tensor loaded from safetensors can be a view into the memory-mapped file at whatever offset
    it was stored; CPU kernels sum in another order for data that is not 64-byte aligned, so the
    same weights then give results that differ in the last bits depending on where the file was
    mapped, and rows would differ between a straight run and a multi-process or resumed one. Such
    a tensor is copied (once, at load); tensors on an accelerator were copied there already.
    """
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.device.type == "cpu" and tensor.data_ptr() % 64:
                tensor.data = tensor.data.clone()
    return module


# ---- diffusion -----------------------------------------------------------------------------------
#: Pipeline classes of a supported family that diffusers 0.42's ``AutoPipelineForInpainting`` has
#: no mapping for (it raises "AutoPipeline can't find a pipeline linked to FluxFillPipeline"):
#: such a checkpoint loads as the class its ``model_index.json`` names.
_INPAINTING_OUTSIDE_AUTO_PIPELINES = frozenset({"FluxFillPipeline"})


def load_diffusion_pipeline(
    model_id: str,
    revision: str | None = None,
    *,
    inpainting: bool = False,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device = "cpu",
    safety_checker: bool = True,
) -> Any:
    """A text-to-image (or inpainting) diffusers pipeline from a Hub id, folder or ``tiny:`` id.

    Any family of :mod:`magicseg_hf.families` loads: Stable Diffusion 1.x/2.x, SDXL, SD3 and
    FLUX.1. A ``tiny:`` id is its twin's cache folder (:func:`magicseg_hf.twins.resolve`) and must
    be a twin of the role asked for (a text-to-image twin where ``inpainting`` is asked is a
    :class:`ModelLoadError`). Checkpoints load through ``AutoPipelineForText2Image`` /
    ``AutoPipelineForInpainting`` — a FLUX Fill checkpoint, which diffusers' auto pipelines do not
    map, as its own ``FluxFillPipeline``. ``safety_checker=False`` drops the checker of a pipeline
    that has one (Stable Diffusion 1.x/2.x; SDXL, SD3 and FLUX have none, and are given nothing).
    The pipeline is moved to ``device`` in ``dtype`` and has its progress bar disabled.

    Raises:
        ModelLoadError: an unknown ``tiny:`` id or one of the other role; a checkpoint that is
            missing, unreachable or does not load.
    """
    torch_dtype = resolve_dtype(dtype, device)
    what = "inpainting model" if inpainting else "diffusion model"
    model_id = twins.resolve(model_id, "inpainting" if inpainting else "text-to-image", what)
    from diffusers import AutoPipelineForInpainting, AutoPipelineForText2Image, DiffusionPipeline

    check_model_available(model_id, revision, what)
    with load_errors(model_id, what):
        index = DiffusionPipeline.load_config(model_id, revision=revision)  # model_index.json
    cls = AutoPipelineForInpainting if inpainting else AutoPipelineForText2Image
    if inpainting and index.get("_class_name") in _INPAINTING_OUTSIDE_AUTO_PIPELINES:
        cls = DiffusionPipeline
    kwargs: dict[str, Any] = {"revision": revision, "dtype": torch_dtype}
    if not safety_checker and "safety_checker" in index:  # only pipelines with a checker slot
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    with load_errors(model_id, what):
        pipe = cls.from_pretrained(model_id, **kwargs)
    pipe = pipe.to(device)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            own_memory(component)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---- prompts -------------------------------------------------------------------------------------
def load_causal_lm(
    model_id: str, revision: str | None = None, *, dtype: str | torch.dtype = "auto", device: str = "cpu"
) -> tuple[Any, Any]:
    """(model, tokenizer) of an instruct LLM for the ``transformers`` prompt backend, from a Hub id,
    a folder or ``tiny:causal-lm``."""
    model_id = twins.resolve(model_id, "prompt", "prompt model")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_available(model_id, revision, "prompt model")
    with load_errors(model_id, "prompt model"):
        tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(
            model_id, revision=revision, dtype=resolve_dtype(dtype, device)
        )
    return own_memory(model.to(device).eval()), tokenizer


# ---- annotation: detectors and segmenters --------------------------------------------------------
def _check_model_type(
    model_id: str, revision: str | None, what: str, accepted: tuple[str, ...], hints: dict[str, str]
) -> None:
    """Refuse, with one :class:`ModelLoadError` line, a checkpoint whose ``config.json`` names
    another architecture than ``accepted`` (its ``model_type``).

    transformers' ``from_pretrained`` only logs a warning for a mismatched ``model_type`` and then
    either fails deep inside the model's constructor or, for related architectures (a Grounding
    DINO folder loaded as MM-Grounding-DINO, any folder as ``SamModel``), loads with the missing
    weights drawn at random. ``hints`` maps another model_type to the option that loads it.
    """
    from transformers import PreTrainedConfig

    with load_errors(model_id, what):
        config, _ = PreTrainedConfig.get_config_dict(model_id, revision=revision)
    model_type = config.get("model_type")
    if model_type in accepted:
        return
    expected = " or ".join(repr(t) for t in accepted)
    if not model_type:
        raise ModelLoadError(f"{what} {model_id!r}: its config.json names no model_type, expected {expected}")
    hint = f"; for this model use {hints[model_type]}" if model_type in hints else ""
    raise ModelLoadError(f"{what} {model_id!r} holds a {model_type!r} model, expected model_type {expected}{hint}")


def _detector_classes() -> dict[str, Any]:
    """Detector kind -> its transformers ``...ForObjectDetection`` class."""
    from transformers import (
        GroundingDinoForObjectDetection,
        MMGroundingDinoForObjectDetection,
        Owlv2ForObjectDetection,
    )

    return {
        "grounding-dino": GroundingDinoForObjectDetection,
        "mm-grounding-dino": MMGroundingDinoForObjectDetection,
        "owlv2": Owlv2ForObjectDetection,
    }


def load_detector(
    kind: str,
    model_id: str,
    revision: str | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "auto",
) -> tuple[Any, Any]:
    """(model, processor) of an open-vocabulary detector: ``kind`` is ``grounding-dino``,
    ``mm-grounding-dino`` or ``owlv2``.

    ``model_id`` is a Hub id, a local folder or the kind's ``tiny:`` id. A real checkpoint loads
    through the kind's ``...ForObjectDetection.from_pretrained`` and ``AutoProcessor`` (a
    ``GroundingDinoProcessor`` for both Grounding DINOs), after its ``model_type`` is checked
    against the kind (a folder of another detector is one :class:`ModelLoadError` line). The model
    is put in eval mode on ``device`` in ``dtype`` (``auto``: float16 on CUDA, float32 otherwise).
    """
    if kind not in DETECTOR_ROLES:
        raise ModelLoadError(f"unknown detector {kind!r}; known: {', '.join(DETECTOR_ROLES)}")
    torch_dtype = resolve_dtype(dtype, device)
    what = f"{kind} detector"
    model_id = twins.resolve(model_id, kind, what)
    from transformers import AutoProcessor

    check_model_available(model_id, revision, what)
    classes = _detector_classes()
    cls = classes[kind]
    hints = {other.config_class.model_type: f"--detector {name}" for name, other in classes.items()}
    _check_model_type(model_id, revision, what, (cls.config_class.model_type,), hints)
    with load_errors(model_id, what):
        processor = AutoProcessor.from_pretrained(model_id, revision=revision)
        model = cls.from_pretrained(model_id, revision=revision, dtype=torch_dtype)
    return own_memory(model.to(device=device, dtype=torch_dtype).eval()), processor


def _segment_anything_architecture(model_type: str) -> Sam:
    """An untrained segment-anything ``Sam`` of ``model_type``: the library's vit_h, vit_l or vit_b,
    or one of :data:`magicseg_hf.twins.SEGMENT_ANYTHING_MODEL_TYPES` (``tiny``)."""
    from segment_anything import sam_model_registry

    builders: dict[str, Any] = {
        **{name: partial(build, checkpoint=None) for name, build in sam_model_registry.items() if name != "default"},
        **twins.SEGMENT_ANYTHING_MODEL_TYPES,
    }  # checkpoint=None: no torch.load inside build_sam
    if model_type not in builders:
        raise ModelLoadError(f"unknown segment-anything model type {model_type!r}; known: {', '.join(builders)}")
    return builders[model_type]()


def load_segment_anything_checkpoint(checkpoint: str | os.PathLike, model_type: str = "vit_h") -> Sam:
    """A segment-anything ``Sam`` of ``model_type`` with weights from ``checkpoint`` (a .pth state dict).

    The file is read with ``torch.load(..., weights_only=True)``, never through ``build_sam``'s own
    unrestricted ``torch.load``.
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"segment-anything checkpoint {str(checkpoint)!r}: no such file")
    model = _segment_anything_architecture(model_type)
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state_dict)
    except Exception as error:  # unpickling, wrong keys or shapes: all mean "not this checkpoint"
        raise ModelLoadError(
            f"cannot load segment-anything checkpoint {str(checkpoint)!r} as {model_type}: {first_line(error)}"
        ) from error
    return model


#: The transformers segmenter backends: (what the messages call the model, its model_type values).
#: SAM 2.1 checkpoints on the Hub (facebook/sam2.1-hiera-*) are saved as ``sam2_video``, a superset
#: that ``Sam2Model`` loads (transformers maps both to it for mask generation).
_TRANSFORMERS_SEGMENTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "transformers": ("SAM model", ("sam",)),
    "sam2": ("SAM 2 model", ("sam2", "sam2_video")),
}


def _load_transformers_segmenter(
    backend: str, model_id: str, revision: str | None, torch_dtype: torch.dtype
) -> tuple[Any, Any]:
    """(model, processor) of the ``transformers`` (SAM) or ``sam2`` backend from a ``tiny:`` id,
    a Hub id or a folder (whose ``model_type`` is checked first)."""
    what, accepted = _TRANSFORMERS_SEGMENTERS[backend]
    model_id = twins.resolve(model_id, backend, what)
    from transformers import Sam2Model, Sam2Processor, SamModel, SamProcessor

    model_cls, processor_cls = (Sam2Model, Sam2Processor) if backend == "sam2" else (SamModel, SamProcessor)
    check_model_available(model_id, revision, what)
    hints = {"sam": "--segmenter transformers", "sam2": "--segmenter sam2", "sam2_video": "--segmenter sam2"}
    _check_model_type(model_id, revision, what, accepted, hints)
    with load_errors(model_id, what):
        processor = processor_cls.from_pretrained(model_id, revision=revision)
        model = model_cls.from_pretrained(model_id, revision=revision, dtype=torch_dtype)
    return model, processor


def load_segmenter(
    backend: str,
    model_id: str | None = None,
    revision: str | None = None,
    *,
    sam_checkpoint: str | os.PathLike | None = None,
    sam_model_type: str = "vit_h",
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "auto",
) -> tuple[Any, Any]:
    """(model, processor) of a SAM or SAM 2 segmenter.

    ``backend="transformers"``: a ``SamModel`` and ``SamProcessor`` from ``model_id`` (Hub id, folder
    or ``tiny:sam``). ``backend="sam2"``: a ``Sam2Model`` and ``Sam2Processor`` from ``model_id``
    (e.g. ``facebook/sam2.1-hiera-large``, a folder, or ``tiny:sam2``). For both, a folder of another
    architecture is one :class:`ModelLoadError` line. ``backend="segment-anything"``: a
    ``segment_anything.modeling.Sam`` and ``None``; weights from ``sam_checkpoint``
    (``sam_model_type`` names its architecture; ``tiny`` is the tiny one), or, with no checkpoint
    and a ``tiny:`` ``model_id``, from the ``tiny:segment-anything`` twin's checkpoint file in the
    cache (:func:`magicseg_hf.twins.segment_anything_checkpoint`), read the same way.
    """
    torch_dtype = resolve_dtype(dtype, device)
    if backend in _TRANSFORMERS_SEGMENTERS:
        if model_id is None:
            raise ModelLoadError(f"the {backend} segmenter backend needs a segmenter model id or folder")
        model, processor = _load_transformers_segmenter(backend, model_id, revision, torch_dtype)
        return own_memory(model.to(device=device, dtype=torch_dtype).eval()), processor
    if backend == "segment-anything":
        if sam_checkpoint is None:
            sam_checkpoint, sam_model_type = twins.segment_anything_checkpoint(model_id)
        sam = load_segment_anything_checkpoint(sam_checkpoint, sam_model_type)
        return sam.to(device=device, dtype=torch_dtype).eval(), None
    raise ModelLoadError(f"unknown segmenter backend {backend!r}; known: {', '.join(SEGMENTER_ROLES)}")


def load_clip_scorer(
    model_id: str,
    revision: str | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "auto",
) -> tuple[Any, Any]:
    """(model, processor) of the CLIP that scores each class's masked crop (the ``class_scores``
    column, :class:`magicseg_hf.generation.class_scores.ClassScorer`).

    ``model_id`` is a Hub id or folder of a ``CLIPModel`` (e.g. ``openai/clip-vit-large-patch14``)
    or ``tiny:clip``. The model is put in eval mode on ``device`` in ``dtype`` (``auto``: float16 on
    CUDA, float32 otherwise).
    """
    torch_dtype = resolve_dtype(dtype, device)
    model_id = twins.resolve(model_id, "class-score", "class-score model")
    from transformers import CLIPModel, CLIPProcessor

    check_model_available(model_id, revision, "class-score model")
    with load_errors(model_id, "class-score model"):
        processor = CLIPProcessor.from_pretrained(model_id, revision=revision)
        model = CLIPModel.from_pretrained(model_id, revision=revision, dtype=torch_dtype)
    return own_memory(model.to(device=device, dtype=torch_dtype).eval()), processor


# ---- the open-vocabulary segmentation model ------------------------------------------------------
def build_open_seg(
    preset: str = "tiny", seed: int = 0, **overrides: Any
) -> tuple[CLIPForOpenSegmentation, CLIPOpenSegProcessor]:
    """``(CLIPForOpenSegmentation, CLIPOpenSegProcessor)`` for ``preset``, ready to train (train mode).

    ``paper`` wraps ``openai/clip-vit-base-patch16`` via ``CLIPForOpenSegmentation.from_clip``;
    ``tiny`` loads, with :func:`load_open_seg`, the ``tiny:open-seg`` twin's folder for ``seed`` and
    ``overrides`` (each pair its own folder in the cache, written the first time by
    :func:`magicseg_hf.twins.tiny_open_seg`: random CLIP, offline tokenizer, drawn under ``seed``).
    ``overrides`` are :class:`CLIPOpenSegConfig` fields (e.g. ``vocabulary=[...]``,
    ``use_lora=True``, ``image_size=...``); the processor's resize/pad size follows ``image_size``.
    """
    if preset not in OPEN_SEG_PRESETS:
        raise ModelLoadError(f"unknown preset {preset!r}; known presets: {', '.join(OPEN_SEG_PRESETS)}")
    if preset != "paper":
        folder = twins.resolve(TINY_OPEN_SEG_MODEL, "open-seg", "segmentation model", seed=seed, options=overrides)
        model, processor = load_open_seg(folder)
        return model.train(), processor
    from transformers import AutoTokenizer

    from magicseg_hf.modeling import CLIPForOpenSegmentation

    model_id, revision = PAPER_MODELS["clip_model"]
    check_model_available(model_id, revision, "CLIP model")
    with load_errors(model_id, "CLIP model"):
        tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
        model = CLIPForOpenSegmentation.from_clip(
            model_id, tokenizer=tokenizer, clip_kwargs={"revision": revision}, **overrides
        )
    return model, open_seg_processor(model, tokenizer)


def open_seg_processor(model: CLIPForOpenSegmentation, tokenizer: Any) -> CLIPOpenSegProcessor:
    """The ``CLIPOpenSegProcessor`` of a freshly built ``model``: resize and pad to its
    ``image_size``, ``tokenizer``, its config's prompt templates."""
    from magicseg_hf.modeling import CLIPOpenSegImageProcessor, CLIPOpenSegProcessor

    size = model.config.image_size
    image_processor = CLIPOpenSegImageProcessor(
        size={"max_height": size, "max_width": size}, pad_size={"height": size, "width": size}
    )
    return CLIPOpenSegProcessor(image_processor, tokenizer, templates=list(model.config.templates))


def load_open_seg(
    model_id: str, revision: str | None = None, allow_pickle: bool | None = None
) -> tuple[CLIPForOpenSegmentation, CLIPOpenSegProcessor]:
    """``(CLIPForOpenSegmentation, CLIPOpenSegProcessor)`` saved in a folder or a Hub repo (or the
    ``tiny:open-seg`` twin's folder, seed 0).

    Fails at once, with one line, when the folder is missing, the Hub unreachable, or the folder
    holds something else (:class:`ModelLoadError`), a local folder whose weights do not fit its
    ``config.json``, or one holding only pickle weights (``pytorch_model.bin``) unless ``allow_pickle``
    (default: the ``MAGICSEG_ALLOW_PICKLE_WEIGHTS=1`` environment variable). The model's tokenizer is the
    processor's, so ``model.encode_classes`` works right away.
    """
    from transformers import AutoConfig

    from magicseg_hf.modeling import CLIPForOpenSegmentation, CLIPOpenSegProcessor

    model_id = twins.resolve(model_id, "open-seg", "segmentation model")
    check_model_available(model_id, revision, "segmentation model")
    with load_errors(model_id, "segmentation model"):
        config = AutoConfig.from_pretrained(model_id, revision=revision)
        if config.model_type != CLIPForOpenSegmentation.config_class.model_type:
            raise ModelLoadError(
                f"segmentation model {model_id!r} is a {config.model_type!r} model, not a CLIPForOpenSegmentation "
                f"(model_type {CLIPForOpenSegmentation.config_class.model_type!r})"
            )
        _check_local_weights(model_id, config, allow_pickle)
        model = CLIPForOpenSegmentation.from_pretrained(model_id, revision=revision, config=config)
        processor = CLIPOpenSegProcessor.from_pretrained(model_id, revision=revision)
    model.tokenizer = processor.tokenizer
    return own_memory(model), processor


#: Opt-in for a model folder whose only weights are a pickle (``pytorch_model.bin``; read with weights_only).
ALLOW_PICKLE_VARIABLE = "MAGICSEG_ALLOW_PICKLE_WEIGHTS"


def _check_local_weights(model_id: str, config: Any, allow_pickle: bool | None) -> None:
    """Refuse, before loading, a local folder whose weights are pickle only (unless allowed) or whose
    safetensors shapes do not fit its ``config.json`` (an edited config): one line each."""
    from safetensors import safe_open

    from magicseg_hf.modeling import CLIPForOpenSegmentation

    folder = Path(model_id).expanduser()
    if not folder.is_dir():
        return  # a Hub id: transformers prefers its safetensors and reads a pickle with weights_only
    tensors = sorted(folder.glob("*.safetensors"))
    if not tensors:
        pickles = sorted(path.name for path in folder.glob("*.bin"))
        allowed = allow_pickle if allow_pickle is not None else os.environ.get(ALLOW_PICKLE_VARIABLE) == "1"
        if pickles and not allowed:
            raise ModelLoadError(
                f"segmentation model {model_id!r} holds only pickle weights ({', '.join(pickles)}): refused; "
                f"save it with safetensors, or set {ALLOW_PICKLE_VARIABLE}=1 to read it (tensors only, weights_only)"
            )
        return
    with torch.device("meta"):
        expected = {name: tuple(tensor.shape) for name, tensor in CLIPForOpenSegmentation(config).state_dict().items()}
    for path in tensors:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                shape = tuple(handle.get_slice(name).get_shape())
                if name in expected and expected[name] != shape:
                    raise ModelLoadError(
                        f"segmentation model {model_id!r}: its weights do not fit its config.json ({name} is "
                        f"{list(shape)} in {path.name}, the config makes it {list(expected[name])}); was config.json edited?"
                    )
