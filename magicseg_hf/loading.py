"""Loading the external models: real checkpoints (Hub ids or local folders) and ``tiny:`` twins.

Every loader takes a Hub id, a local folder or a ``tiny:`` id (see :mod:`magicseg_hf.presets`);
``tiny:`` ids are built by :mod:`magicseg_hf.tiny`, everything else goes through the family's
``from_pretrained``. Before that, :func:`check_model_available` fails at once — a missing folder, an
uncached id while offline, an unreachable Hub — instead of letting huggingface_hub retry for
20-45 s, and whatever the library raises while loading becomes one :class:`ModelLoadError` line.
Each loader imports its own model family when called, so loading a detector does not import
diffusers.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from magicseg_hf import hub_access, tiny
from magicseg_hf.errors import ModelLoadError, first_line
from magicseg_hf.hub_access import check_model_available
from magicseg_hf.presets import (
    OPEN_SEG_PRESETS,
    PAPER_MODELS,
    TINY_CLIP,
    TINY_DETECTORS,
    TINY_MODELS,
    TINY_SEGMENTERS,
    is_tiny,
)

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

    from magicseg_hf.modeling import CLIPForOpenSegmentation, CLIPOpenSegProcessor

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device) -> torch.dtype:
    """``dtype`` as a ``torch.dtype``: ``auto`` is float16 on CUDA and float32 elsewhere;
    ``float32``, ``float16`` and ``bfloat16`` name themselves."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    return _DTYPES[dtype]


def _weight_file_errors() -> tuple[type[BaseException], ...]:
    """Exception types of a weights file that is not what it claims (garbage safetensors)."""
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - safetensors comes with transformers
        return ()
    return (SafetensorError,)


@contextlib.contextmanager
def load_errors(model_id: str, what: str) -> Iterator[None]:
    """Turn what loading ``model_id`` raises for a bad model — an ``OSError`` or ``ValueError`` (a
    bad folder, a wrong revision, a broken config), a weights file that is garbage, a pickle
    weights file that holds more than tensors, a Hub that stops answering — into a one-line
    :class:`ModelLoadError` naming ``what`` (credentials of ``HF_ENDPOINT`` redacted).

    A pickle (``pytorch_model.bin``) is read with ``weights_only=True`` by transformers and
    diffusers: code in it is never run, and such a file is refused here with a hint instead of
    torch's advice to load it unsafely.
    """
    try:
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


def _check_tiny_id(model_id: str, expected: str, what: str) -> None:
    if model_id != expected:
        raise ModelLoadError(f"unknown tiny {what} {model_id!r}; the tiny preset has {expected!r}")


# ---- diffusion -----------------------------------------------------------------------------------
#: Pipeline classes of a supported family that diffusers 0.42's ``AutoPipelineForInpainting`` has
#: no mapping for (it raises "AutoPipeline can't find a pipeline linked to FluxFillPipeline"):
#: such a checkpoint loads as the class its ``model_index.json`` names.
_INPAINTING_OUTSIDE_AUTO_PIPELINES = frozenset({"FluxFillPipeline"})


def _tiny_diffusion_pipeline(model_id: str, inpainting: bool, what: str) -> Any:
    """The ``tiny:`` twin ``model_id``, checked to be a twin of the role asked for."""
    from magicseg_hf.families import TINY_DIFFUSION_MODELS, family_of_class

    roles = {name: family_of_class(cls).inpainting for name, cls in TINY_DIFFUSION_MODELS.items()}
    wanted = ", ".join(name for name, role in roles.items() if role == inpainting)
    if model_id not in roles:
        raise ModelLoadError(f"unknown tiny {what} {model_id!r}; the tiny {what}s are {wanted}")
    if roles[model_id] != inpainting:
        kind = "an inpainting" if roles[model_id] else "a text-to-image"
        raise ModelLoadError(
            f"tiny {what} {model_id!r} is {kind} twin ({TINY_DIFFUSION_MODELS[model_id]}); "
            f"the tiny {what}s are {wanted}"
        )
    return tiny.tiny_diffusion_pipeline(model_id)


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
    FLUX.1. A ``tiny:`` id is built by :func:`magicseg_hf.tiny.tiny_diffusion_pipeline` and must be
    a twin of the role asked for (a text-to-image twin where ``inpainting`` is asked is a
    :class:`ModelLoadError`). Real checkpoints load through ``AutoPipelineForText2Image`` /
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
    if is_tiny(model_id):
        pipe = _tiny_diffusion_pipeline(model_id, inpainting, what)
        if torch_dtype != torch.float32:
            pipe = pipe.to(dtype=torch_dtype)
    else:
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
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---- prompts -------------------------------------------------------------------------------------
def load_causal_lm(
    model_id: str, revision: str | None = None, *, dtype: str | torch.dtype = "auto", device: str = "cpu"
) -> tuple[Any, Any]:
    """(model, tokenizer) of an instruct LLM for the ``transformers`` prompt backend."""
    if is_tiny(model_id):
        _check_tiny_id(model_id, TINY_MODELS["prompt_model"][0], "prompt model")
        model, tokenizer = tiny.tiny_causal_lm()
        return model.to(device), tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_available(model_id, revision, "prompt model")
    with load_errors(model_id, "prompt model"):
        tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(
            model_id, revision=revision, dtype=resolve_dtype(dtype, device)
        )
    return model.to(device).eval(), tokenizer


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
    if kind not in TINY_DETECTORS:
        raise ModelLoadError(f"unknown detector {kind!r}; known: {', '.join(TINY_DETECTORS)}")
    torch_dtype = resolve_dtype(dtype, device)
    what = f"{kind} detector"
    if is_tiny(model_id):
        _check_tiny_id(model_id, TINY_DETECTORS[kind], what)
        builders = {
            "grounding-dino": tiny.tiny_grounding_dino,
            "mm-grounding-dino": tiny.tiny_mm_grounding_dino,
            "owlv2": tiny.tiny_owlv2,
        }
        model, processor = builders[kind]()
    else:
        from transformers import AutoProcessor

        check_model_available(model_id, revision, what)
        classes = _detector_classes()
        cls = classes[kind]
        hints = {other.config_class.model_type: f"--detector {name}" for name, other in classes.items()}
        _check_model_type(model_id, revision, what, (cls.config_class.model_type,), hints)
        with load_errors(model_id, what):
            processor = AutoProcessor.from_pretrained(model_id, revision=revision)
            model = cls.from_pretrained(model_id, revision=revision, dtype=torch_dtype)
    return model.to(device=device, dtype=torch_dtype).eval(), processor


def _segment_anything_architecture(model_type: str) -> Sam:
    """An untrained segment-anything ``Sam`` of ``model_type`` (vit_h, vit_l, vit_b or tiny)."""
    if model_type == "tiny":
        return tiny.tiny_segment_anything_architecture()
    from segment_anything import sam_model_registry

    if model_type not in sam_model_registry or model_type == "default":
        known = ", ".join(k for k in sam_model_registry if k != "default")
        raise ModelLoadError(f"unknown segment-anything model type {model_type!r}; known: {known}, tiny")
    return sam_model_registry[model_type](checkpoint=None)  # checkpoint=None: no torch.load inside


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
    if is_tiny(model_id):
        _check_tiny_id(model_id, TINY_SEGMENTERS[backend], what)
        return tiny.tiny_sam2() if backend == "sam2" else tiny.tiny_transformers_sam()
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
    and a ``tiny:`` ``model_id``, the tiny random ``Sam`` (``tiny:segment-anything``).
    """
    torch_dtype = resolve_dtype(dtype, device)
    if backend in _TRANSFORMERS_SEGMENTERS:
        if model_id is None:
            raise ModelLoadError(f"the {backend} segmenter backend needs a segmenter model id or folder")
        model, processor = _load_transformers_segmenter(backend, model_id, revision, torch_dtype)
        return model.to(device=device, dtype=torch_dtype).eval(), processor
    if backend == "segment-anything":
        if sam_checkpoint is not None:
            sam = load_segment_anything_checkpoint(sam_checkpoint, sam_model_type)
        elif is_tiny(model_id):
            sam = tiny.tiny_segment_anything()
        else:
            raise ModelLoadError(
                "the segment-anything backend needs --sam-checkpoint (a .pth file) outside the tiny preset"
            )
        return sam.to(device=device, dtype=torch_dtype).eval(), None
    raise ModelLoadError(f"unknown segmenter backend {backend!r}; known: {', '.join(TINY_SEGMENTERS)}")


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
    if is_tiny(model_id):
        _check_tiny_id(model_id, TINY_CLIP, "class-score model")
        model, processor = tiny.tiny_clip()
    else:
        from transformers import CLIPModel, CLIPProcessor

        check_model_available(model_id, revision, "class-score model")
        with load_errors(model_id, "class-score model"):
            processor = CLIPProcessor.from_pretrained(model_id, revision=revision)
            model = CLIPModel.from_pretrained(model_id, revision=revision, dtype=torch_dtype)
    return model.to(device=device, dtype=torch_dtype).eval(), processor


# ---- the open-vocabulary segmentation model ------------------------------------------------------
def build_open_seg(
    preset: str = "tiny", seed: int = 0, **overrides: Any
) -> tuple[CLIPForOpenSegmentation, CLIPOpenSegProcessor]:
    """``(CLIPForOpenSegmentation, CLIPOpenSegProcessor)`` for ``preset``.

    ``tiny`` builds offline from configs (random CLIP, offline tokenizer, seeded with ``seed``);
    ``paper`` wraps ``openai/clip-vit-base-patch16`` via ``CLIPForOpenSegmentation.from_clip``.
    ``overrides`` are :class:`CLIPOpenSegConfig` fields (e.g. ``vocabulary=[...]``,
    ``use_lora=True``, ``image_size=...``); the processor's resize/pad size follows ``image_size``.
    """
    from magicseg_hf.modeling import CLIPForOpenSegmentation, CLIPOpenSegImageProcessor, CLIPOpenSegProcessor

    if preset == "tiny":
        model, tokenizer = tiny.tiny_open_seg(seed, **overrides)
    elif preset == "paper":
        from transformers import AutoTokenizer

        model_id, revision = PAPER_MODELS["clip_model"]
        check_model_available(model_id, revision, "CLIP model")
        with load_errors(model_id, "CLIP model"):
            tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
            model = CLIPForOpenSegmentation.from_clip(
                model_id, tokenizer=tokenizer, clip_kwargs={"revision": revision}, **overrides
            )
    else:
        raise ModelLoadError(f"unknown preset {preset!r}; known presets: {', '.join(OPEN_SEG_PRESETS)}")
    size = model.config.image_size
    image_processor = CLIPOpenSegImageProcessor(
        size={"max_height": size, "max_width": size}, pad_size={"height": size, "width": size}
    )
    processor = CLIPOpenSegProcessor(image_processor, tokenizer, templates=list(model.config.templates))
    return model, processor


def load_open_seg(
    model_id: str, revision: str | None = None, allow_pickle: bool | None = None
) -> tuple[CLIPForOpenSegmentation, CLIPOpenSegProcessor]:
    """``(CLIPForOpenSegmentation, CLIPOpenSegProcessor)`` saved in a folder or a Hub repo.

    Fails at once, with one line, when the folder is missing, the Hub unreachable, or the folder
    holds something else (:class:`ModelLoadError`), a local folder whose weights do not fit its
    ``config.json``, or one holding only pickle weights (``pytorch_model.bin``) unless ``allow_pickle``
    (default: the ``MAGICSEG_ALLOW_PICKLE_WEIGHTS=1`` environment variable). The model's tokenizer is the
    processor's, so ``model.encode_classes`` works right away.
    """
    from transformers import AutoConfig

    from magicseg_hf.modeling import CLIPForOpenSegmentation, CLIPOpenSegProcessor

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
    return model, processor


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
