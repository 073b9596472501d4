"""Pipeline task `open-vocabulary-segmentation` for `CLIPForOpenSegmentation`.

The pipeline is a thin caller of `segment_images` (`inference_clip_open_seg.py`), the one inference path that
`magicseg predict`, the Space and `magicseg evaluate` also call. Self-contained: imports only torch,
transformers, PIL and numpy, so this folder can be pushed to the Hub as remote code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from transformers import Pipeline
from transformers.image_utils import load_image
from transformers.utils import logging

from .inference_clip_open_seg import (
    DEFAULT_WINDOW_BATCH_SIZE,
    Decision,
    InferenceGeometry,
    Queries,
    SegmentationResult,
    _positive_int,
    as_rgb,
    segment_images,
    segments_from_result,
    sliding_windows,
)

logger = logging.get_logger(__name__)

TASK = "open-vocabulary-segmentation"
#: The background text of the `background-class` rule when none is given.
DEFAULT_BACKGROUND = ("background",)


class OpenVocabularySegmentationPipeline(Pipeline):
    r"""
    Segment the classes you name: `pipe(image, candidate_labels=["cat", "dog"])`.

    Returns, like `image-segmentation`, a list of `{"label", "score", "mask"}` — one per class that wins at least
    one pixel, in `candidate_labels` order; `mask` is a PIL "L" image (255 inside) at the input size, `score` the
    class's mean probability inside its mask. A list of images gives a list of such lists. Candidate labels
    default to the vocabulary saved with the model.

    **What a pixel gets** (`decision`):
    - `"threshold"` (default, `threshold=0.5`): the most probable candidate label if its probability (sigmoid)
      reaches the threshold, else no label — the pixel is in no mask. 0.5 is where each class's sigmoid is
      trained to separate (focal loss), so pixels of things you did not name stay unlabelled.
    - `"background-class"`: `background_labels` (default `["background"]`) are queried too and a pixel they win
      is in no mask; `threshold` is optional here.
    - `"argmax"`: every pixel takes its most probable candidate label, however low (no threshold).

    **Geometry**: the image's short side is resized to `short_side` (the model's window, 512, with the long side
    capped at 2048), windows of `window` pixels slide every `stride` pixels (512 / 426), batched
    `window_batch_size` at a time across windows and images, and the windows' class probabilities are averaged
    and resized back to the image — exactly what `magicseg predict` and `magicseg evaluate --protocol zegclip` do.

    Example:

    ```python
    >>> import magicseg_hf  # registers the task
    >>> from transformers import pipeline
    >>> segmenter = pipeline("open-vocabulary-segmentation", model="path/to/model")
    >>> segments = segmenter("street.jpg", candidate_labels=["car", "tree", "road"])
    >>> [(s["label"], round(s["score"], 2)) for s in segments]
    ```
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = True

    #: The settings a call may take (see `_settings`).
    SETTINGS = (
        "candidate_labels", "threshold", "decision", "background_labels", "short_side", "window", "stride", "mode",
        "window_batch_size", "crop_size", "timeout",
    )  # fmt: skip

    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        """Settings given to `pipeline(...)` become every call's defaults; they are checked when a call runs."""
        unknown = sorted(set(kwargs) - set(self.SETTINGS))
        if unknown:
            raise TypeError(f"unknown arguments for the {TASK} pipeline (got {unknown})")
        return {"defaults": dict(kwargs)}, {}, {}

    def _settings(
        self,
        candidate_labels: list[str] | str | None = None,
        threshold: float | None = None,
        decision: str | None = None,
        background_labels: list[str] | None = None,
        short_side: int | None = None,
        window: int | None = None,
        stride: int | None = None,
        mode: str | None = None,
        window_batch_size: int | None = None,
        crop_size: int | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Every setting of a call, checked before any image is read."""
        if kwargs:
            raise TypeError(f"unknown arguments for the {TASK} pipeline (got {sorted(kwargs)})")
        for name, side in (("window", window), ("crop_size", crop_size)):  # window side in pixels
            if side is not None:
                _positive_int(name, side)
        window = window if window is not None else crop_size
        rule = decision or "threshold"
        if rule == "background-class" and background_labels is None:
            background_labels = list(DEFAULT_BACKGROUND)
        if candidate_labels is None:
            candidate_labels = list(self.model.config.vocabulary)
            if not candidate_labels:
                raise ValueError("candidate_labels is empty and the model has no saved vocabulary: name the classes")
        geometry_overrides = {"window": window, "stride": stride, "mode": mode, "short_side": short_side}
        if window is not None and short_side is None:  # a larger window than the model's needs a larger image
            geometry_overrides["short_side"] = max(window, self.model.config.slide_crop_size)
        return {
            "candidate_labels": candidate_labels,
            "background_labels": list(background_labels or []),
            "decision": Decision.named(rule, threshold),
            "geometry": InferenceGeometry.from_config(self.model.config, **geometry_overrides),
            "window_batch_size": window_batch_size or DEFAULT_WINDOW_BATCH_SIZE,
            "timeout": timeout,
        }

    def __call__(self, inputs: Any = None, **kwargs: Any) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Segment one image (path, URL, PIL) or a list of them; see the class docstring."""
        if "images" in kwargs:
            inputs = kwargs.pop("images")
        if inputs is None:
            raise ValueError(f"the {TASK} pipeline needs an image (got none)")
        settings = self._settings(**{**self._preprocess_params.get("defaults", {}), **kwargs})
        single = not isinstance(inputs, (list, tuple))
        images = [inputs] if single else list(inputs)
        if not images:
            raise ValueError(f"the {TASK} pipeline needs at least one image (got an empty list)")
        answers = self.segment(images, settings)
        return answers[0] if single else answers

    def segment(self, images: list[Any], settings: dict[str, Any]) -> list[list[dict[str, Any]]]:
        """The segments of each image (all images' windows share forwards)."""
        return [self.postprocess(outputs) for outputs in self._results(images, settings)]

    def _results(self, images: list[Any], settings: dict[str, Any]) -> list[dict[str, Any]]:
        """`{"result": SegmentationResult, "names": class names}` per image, through `segment_images`."""
        queries = Queries.encode(
            self.model, settings["candidate_labels"], settings["background_labels"], tokenizer=self.tokenizer
        )
        pictures = [_read(image, settings["timeout"]) for image in images]
        results = segment_images(
            self.model.eval(),
            enumerate(pictures),
            queries,
            settings["geometry"],
            settings["decision"],
            self.image_processor.image_mean,
            self.image_processor.image_std,
            window_batch_size=settings["window_batch_size"],
        )
        return [{"result": result, "names": queries.names} for _, result in results]

    # The Pipeline contract (single image): the same path as `segment`.
    def preprocess(self, image: Any, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"image": image, "settings": self._settings(**(defaults or {}))}

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        [outputs] = self._results([model_inputs["image"]], model_inputs["settings"])
        return outputs

    def postprocess(self, model_outputs: dict[str, Any]) -> list[dict[str, Any]]:
        result: SegmentationResult = model_outputs["result"]
        names = model_outputs["names"]
        return [
            {
                "label": names[position],
                "score": score,
                "mask": Image.fromarray(inside.cpu().numpy().astype(np.uint8) * 255, mode="L"),
            }
            for position, inside, score in segments_from_result(result, names)
        ]


def _read(image: Any, timeout: float | None) -> Image.Image:
    """A path, URL or PIL image as RGB (`as_rgb`); an unreadable file or an oversized picture is a ValueError."""
    what = f"image {image!r}" if isinstance(image, str) else "image"
    try:
        picture = load_image(image, timeout=timeout)
    except Image.DecompressionBombError as error:
        raise ValueError(f"{what} is over twice PIL's pixel limit of {Image.MAX_IMAGE_PIXELS:,} ({error})") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"{what} is not a readable image ({type(error).__name__}: {error})") from None
    return as_rgb(picture, what=what)


__all__ = ["DEFAULT_BACKGROUND", "TASK", "OpenVocabularySegmentationPipeline", "sliding_windows"]
