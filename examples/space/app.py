"""The magicseg-hf Space: upload an image, name classes, see what the model segments.

The model comes from the ``MAGICSEG_MODEL`` environment variable (a Hub id or a local folder
written by ``magicseg train``). Class names are typed comma-separated; left empty, the model's
saved vocabulary is used. The overlay is a ``gr.AnnotatedImage`` (the image and one mask per
class, coloured as ``magicseg predict`` colours them) and the table gives each class's share of
the image and its mean score.

Run it locally::

    pip install -e ".[space]"                                      # in the repository root
    MAGICSEG_MODEL=path/to/model python examples/space/app.py   # then open http://127.0.0.1:7860

This file is UI glue: loading, prediction and colours come from ``magicseg_hf``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from magicseg_hf.errors import InputError, MagicSegError
from magicseg_hf.loading import load_open_seg
from magicseg_hf.modeling import DECISION_RULES, DEFAULT_THRESHOLD
from magicseg_hf.predict import OVERLAY_ALPHA, model_type_problem, predict_images
from magicseg_hf.visualization import class_color

logger = logging.getLogger("magicseg_space")

#: Environment variable naming the model: a Hub id or a local folder.
MODEL_VARIABLE = "MAGICSEG_MODEL"
#: Largest upload the page takes (gradio refuses a bigger file before reading it); a picture over
#: PIL's pixel limit is refused by the package with one line.
MAX_UPLOAD_SIZE = "20mb"
#: Columns of the per-class table.
TABLE_HEADERS = ["class", "area %", "score"]


def parse_classes(text: str | None) -> list[str]:
    """Class names typed in the text box: comma- or newline-separated, blanks dropped, each kept once."""
    names = [name.strip() for line in (text or "").splitlines() for name in line.split(",")]
    return list(dict.fromkeys(name for name in names if name))


def hex_color(rgb: Sequence[int]) -> str:
    """``(r, g, b)`` as ``#rrggbb``."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def build_demo(model: Any, processor: Any, model_name: str) -> gr.Blocks:
    """The Space's page around a loaded ``(CLIPForOpenSegmentation, CLIPOpenSegProcessor)``.

    Args:
        model, processor: what :func:`magicseg_hf.loading.load_open_seg` returns.
        model_name: the Hub id or folder shown on the page.

    The ``/segment`` endpoint (also for ``gradio_client``) takes ``(image, classes, threshold, decision)``
    and returns the overlay and the table: one row ``[class, area %, score]`` per class found. The
    threshold applies to the ``threshold`` rule only; ``background-class`` queries "background" beside the
    classes and ``argmax`` labels every pixel.
    """
    vocabulary = list(model.config.vocabulary or [])
    shown = ", ".join(vocabulary[:8]) + (f", ... ({len(vocabulary)} in all)" if len(vocabulary) > 8 else "")

    def segment(
        image: Image.Image | None, classes_text: str, threshold: float, decision: str = "threshold"
    ) -> tuple[Any, list[list[Any]]]:
        """(AnnotatedImage value with its colours, table rows) for one uploaded image."""
        if image is None:
            raise gr.Error("upload an image first (got none)")
        classes = parse_classes(classes_text) or vocabulary
        if not classes:
            raise gr.Error("type at least one class name: this model has no saved vocabulary")
        image = image.convert("RGB")
        try:
            [prediction] = predict_images(
                model, processor, [image], classes, threshold=threshold if decision == "threshold" else None,
                decision=decision,
            )
        except MagicSegError as error:
            raise gr.Error(str(error)) from error
        segments = prediction.segments  # the classes present, largest first
        annotations = [
            (prediction.mask(segment.position).astype(np.float32) * OVERLAY_ALPHA, segment.label)
            for segment in segments
        ]
        # The colours of `magicseg predict`'s overlay: value i of its label map is names[i - 1].
        _, names = prediction.label_map()
        present = {segment.label for segment in segments}
        color_map = {name: hex_color(class_color(i)) for i, name in enumerate(names, start=1) if name in present}
        rows = [[segment.label, round(100.0 * segment.area, 2), round(segment.score, 3)] for segment in segments]
        return gr.AnnotatedImage(value=(image, annotations), color_map=color_map), rows

    with gr.Blocks(title="magicseg-hf: segment anything you can name") as demo:
        gr.Markdown(
            "# magicseg-hf\n"
            "Open-vocabulary segmentation: type class names, get a mask per class. The model is a "
            "`CLIPForOpenSegmentation` (CLIP with prompt tuning and a light decoder) pretrained the MagicSeg way, "
            f"on counterfactual pairs of scenes with and without the named objects. Model: `{model_name}`."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="pil", label="image")
                classes = gr.Textbox(
                    label="class names (comma-separated)",
                    placeholder=f"empty: the model's vocabulary ({shown})" if vocabulary else "cat, dog, grass",
                )
                threshold = gr.Slider(
                    0.0, 1.0, value=DEFAULT_THRESHOLD, step=0.05,
                    label="score threshold: a pixel takes its best class only if that class's probability "
                    f"reaches it ({DEFAULT_THRESHOLD}: the model's trained threshold; 0: every pixel gets a class)",
                )
                decision = gr.Radio(
                    list(DECISION_RULES), value="threshold", label="decision rule",
                    info="threshold: the slider decides; background-class: 'background' competes with the "
                    "classes; argmax: every pixel takes its best class",
                )
                button = gr.Button("Segment", variant="primary")
            with gr.Column():
                overlay = gr.AnnotatedImage(label="segmentation", format="png")
                table = gr.Dataframe(
                    headers=TABLE_HEADERS, datatype=["str", "number", "number"], label="classes", interactive=False
                )
        button.click(
            segment, inputs=[image, classes, threshold, decision], outputs=[overlay, table], api_name="segment"
        )
    return demo


def load_model(name: str) -> tuple[Any, Any]:
    """``(model, processor)`` from the Hub id or folder ``name``; :class:`MagicSegError` says why not."""
    if not name:
        raise InputError(f"set {MODEL_VARIABLE} to a Hub id or a model folder (got nothing)")
    if Path(name).expanduser().exists():
        problem = model_type_problem(Path(name).expanduser())
        if problem:
            raise InputError(f"{MODEL_VARIABLE}={name}: {problem}")
    return load_open_seg(name)


def main() -> int:
    """Load the model named by ``MAGICSEG_MODEL`` and serve the page (host and port: gradio's variables).

    Returns 2, after one line on stderr, when there is no model to load.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model_name = os.environ.get(MODEL_VARIABLE, "").strip()
    try:
        model, processor = load_model(model_name)
    except MagicSegError as error:
        sys.stderr.write(f"magicseg space: error: {error}\n")
        return 2
    logger.info("loaded %s (%d saved classes)", model_name, len(model.config.vocabulary or []))
    build_demo(model, processor, model_name).launch(max_file_size=MAX_UPLOAD_SIZE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
