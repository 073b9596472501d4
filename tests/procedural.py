"""A procedural MagicSeg dataset that a tiny model can learn: coloured shapes on textured backgrounds.

Each class is a distinct shape in a distinct colour (:data:`SHAPES`). An image shows one or two
objects of different classes at random positions and sizes on a random textured background; its
``label`` is the class id (1-based position in the row's ``classes``) on every object pixel and 0
elsewhere, and its ``counterfactual_image`` is the same background without the objects — exactly
what a perfect MagicSeg generator would write. :func:`write_procedural_dataset` writes the rows as
a dataset folder through the real generation writer (:func:`helpers.write_dataset_folder`),
so ``magicseg train`` reads it as it reads a generated one.

:func:`procedural_rows` is deterministic in ``seed``: a training set and a held-out set are two
seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from helpers import write_dataset_folder
from PIL import Image, ImageDraw

#: Class name -> (shape, RGB colour). Shape and colour each tell the classes apart.
SHAPES: dict[str, tuple[str, tuple[int, int, int]]] = {
    "circle": ("circle", (220, 40, 40)),
    "square": ("square", (40, 200, 60)),
    "triangle": ("triangle", (50, 80, 230)),
}
CLASSES: list[str] = list(SHAPES)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size, 3) uint8 texture: a random muted base colour, a low-frequency blotch pattern,
    random stripes and pixel noise (never a flat colour, so "not flat" does not mean "object")."""
    base = rng.uniform(70, 180, size=3)  # muted: far from the objects' saturated colours
    coarse = rng.normal(0.0, 25.0, size=(size // 8 + 1, size // 8 + 1, 3))
    blotches = np.kron(coarse, np.ones((8, 8, 1)))[:size, :size]  # (size, size, 3) 8 px cells
    period = rng.uniform(6, 16)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = 15.0 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    noise = rng.normal(0.0, 8.0, size=(size, size, 3))
    texture = base + blotches + stripes[..., None] + noise
    return np.clip(texture, 0, 255).astype(np.uint8)


def _shape_points(shape: str, cx: float, cy: float, radius: float) -> list[tuple[float, float]]:
    """Outline of ``shape`` centred at (cx, cy): the bounding box for circle/square, vertices for triangle."""
    if shape == "triangle":
        return [(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)]
    return [(cx - radius, cy - radius), (cx + radius, cy + radius)]


def _draw(draw: ImageDraw.ImageDraw, shape: str, points: list[tuple[float, float]], fill: Any) -> None:
    if shape == "circle":
        draw.ellipse(points, fill=fill)
    elif shape == "square":
        draw.rectangle(points, fill=fill)
    else:
        draw.polygon(points, fill=fill)


def procedural_row(index: int, seed: int = 0, size: int = 64, classes: list[str] | None = None) -> dict[str, Any]:
    """One row in the dataset schema: 1-2 objects of distinct classes on a textured background.

    Objects have a radius of 12-28 % of ``size`` and do not overlap, so every class of ``classes``
    has pixels in ``label``. Boxes are the objects' pixel bounding boxes with score 1.
    """
    vocabulary = list(classes or CLASSES)
    rng = np.random.default_rng([seed, index])
    count = int(rng.integers(1, 3))
    names = [vocabulary[i] for i in rng.choice(len(vocabulary), size=count, replace=False)]
    background = _background(rng, size)
    image = Image.fromarray(background, "RGB")
    label = Image.new("L", (size, size), 0)
    draw_image, draw_label = ImageDraw.Draw(image), ImageDraw.Draw(label)
    placed: list[tuple[float, float, float]] = []
    boxes: list[list[float]] = []
    for class_id, name in enumerate(names, start=1):
        shape, colour = SHAPES[name]
        for _ in range(50):  # rejection sampling of a free spot
            radius = float(rng.uniform(0.12, 0.28) * size)
            cx, cy = (float(v) for v in rng.uniform(radius, size - radius, size=2))
            if all(np.hypot(cx - x, cy - y) > (radius + r) * 1.05 for x, y, r in placed):
                break
        placed.append((cx, cy, radius))
        points = _shape_points(shape, cx, cy, radius)
        jitter = rng.integers(-20, 21, size=3)
        _draw(draw_image, shape, points, tuple(int(c) for c in np.clip(np.array(colour) + jitter, 0, 255)))
        _draw(draw_label, shape, points, class_id)
        ys, xs = np.nonzero(np.array(label) == class_id)
        boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
    described = " and ".join(f"a {name}" for name in names)
    row_seed = int(rng.integers(0, 2**31))
    return {
        "id": f"shapes-{seed:04d}-{index:06d}",
        "image": image,
        "counterfactual_image": Image.fromarray(background, "RGB"),
        "label": label,
        "classes": names,
        "prompt": f"{described} on a patterned wall",
        "counterfactual_prompt": "a patterned wall",
        "seed": row_seed,
        "counterfactual_seed": row_seed,
        "boxes": boxes,
        "box_labels": list(range(len(names))),
        "box_scores": [1.0] * len(names),
        "counterfactual_score": 0.0,
        "class_scores": [1.0] * len(names),  # every object is drawn whole and named: a perfect match
    }


def procedural_rows(num_rows: int, seed: int = 0, size: int = 64, classes: list[str] | None = None) -> list[dict[str, Any]]:
    """``num_rows`` rows of :func:`procedural_row` (the same rows for the same arguments)."""
    return [procedural_row(index, seed=seed, size=size, classes=classes) for index in range(num_rows)]


def write_procedural_dataset(
    folder: str | Path, num_rows: int = 128, seed: int = 0, size: int = 64, classes: list[str] | None = None
) -> Path:
    """A dataset folder (``vocabulary.txt`` = the classes) of ``num_rows`` procedural rows, written by
    the generation writer."""
    vocabulary = list(classes or CLASSES)
    rows = procedural_rows(num_rows, seed=seed, size=size, classes=vocabulary)
    return write_dataset_folder(folder, vocabulary=vocabulary, rows=rows, rows_per_shard=64, seed=seed)
