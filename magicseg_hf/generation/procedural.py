"""The procedural scene source: drawn scenes of named objects, in the dataset schema, with exact labels.

``magicseg generate --source procedural`` writes its rows through the same run as the diffusion
source (:func:`magicseg_hf.generation.pipeline.generate`: shards, resume, finalisation, card),
with :class:`ProceduralEngine` in place of the models. A scene is a textured or gradient
background; under each object a patch of a *context* texture; then 1..``max_classes_per_prompt``
objects of distinct classes, drawn in turn so that a later one may hide part of an earlier one
(occlusion; every class keeps at least :data:`MIN_VISIBLE` of its own pixels). The label map is
exact (no anti-aliasing: a pixel is the object that was drawn last on it, or background 0); the
counterfactual is the same scene without the objects (the background and the context patches
stay), pixel-aligned as in ``inpaint`` mode.

Known classes (:data:`OBJECTS`: sun, house, tree, car, ball, leaf, brick, star) are drawn as those
things, each with its own colour, parts and texture; any other class name gets a shape and a
saturated colour fixed by its name (:func:`object_style`), so every vocabulary works.

Context bias (``--context-bias P``): every object sits on a context patch. With probability ``P``
the patch is the class's own context texture (:func:`own_context`: sun on sky, car on road ...),
otherwise a context drawn uniformly from :data:`CONTEXTS`; ``P = 0`` makes the context independent
of the class, ``P = 1`` ties them. Held-out scenes use ``P = 0``.

Determinism: attempt ``k`` of a run with seed ``s`` draws its classes exactly as the diffusion
source does (the same derived seed, :func:`magicseg_hf.generation.prompts.sample_class_sets`) and
its picture from ``derive_seed("magicseg", s, k, "noise")``: :func:`procedural_rows` gives the
rows a run writes. No torch import; a 64 px row takes about 2 ms to draw and 2 ms to encode.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from magicseg_hf.errors import InputError
from magicseg_hf.generation.config import PROCEDURAL_MIN_SIZE, PROCEDURAL_SIZE
from magicseg_hf.generation.names import bare_name, indefinite_article
from magicseg_hf.generation.prompts import attempt_classes
from magicseg_hf.seeding import GENERATION_NAMESPACE, derive_seed

#: The value of ``GenerationConfig.source`` that selects this module.
SOURCE = "procedural"
#: Side of a procedural picture when --height/--width are not given, and the smallest that still shows an
#: object's parts (the settings' own values).
DEFAULT_SIZE, MIN_SIZE = PROCEDURAL_SIZE, PROCEDURAL_MIN_SIZE
#: Every class keeps at least this fraction of its drawn pixels visible (else the scene is re-laid).
MIN_VISIBLE = 0.4
#: Object radius, as a fraction of the picture side.
RADIUS_RANGE = (0.24, 0.40)
#: Placement tries per scene before the occlusion rule is relaxed to "some pixels visible".
PLACEMENT_TRIES = 30

RGB = tuple[int, int, int]


# ------------------------------------------------------------------------------------------------
# Textures: backgrounds and contexts (muted, so that "colourful" keeps meaning "object")
# ------------------------------------------------------------------------------------------------
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) coordinates in [0, 1), each (size, size) float32."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return yy, xx


def _blotches(rng: np.random.Generator, size: int, cell: int, strength: float) -> np.ndarray:
    """(size, size, 3) smooth low-frequency noise (cells of about ``cell`` px): mostly brightness, a
    little colour."""
    cells = max(2, size // cell + 1)
    light = rng.standard_normal((cells, cells, 1), dtype=np.float32) * strength
    tint = rng.standard_normal((cells, cells, 3), dtype=np.float32) * (strength / 3)
    coarse = light + tint
    low, high = float(coarse.min()), float(coarse.max())
    scaled = ((coarse - low) / max(high - low, 1e-6) * 255).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(scaled, "RGB").resize((size, size), Image.BILINEAR), dtype=np.float32)
    return smooth * ((high - low) / 255) + low


def _stripes(rng: np.random.Generator, size: int, strength: float, period: tuple[float, float]) -> np.ndarray:
    """(size, size) float32 sine stripes of a random direction and a period in ``period`` px."""
    yy, xx = _grid(size)
    angle = rng.uniform(0, math.pi)
    wavelength = rng.uniform(*period) / size
    phase = rng.uniform(0, 2 * math.pi)
    return strength * np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * (2 * math.pi / wavelength) + phase)


def _texture(rng: np.random.Generator, size: int, base: Sequence[float], *, gradient_to: Sequence[float] | None = None,
             blotch: float = 12.0, stripe: float = 0.0, period: tuple[float, float] = (6, 14),
             noise: float = 6.0) -> np.ndarray:
    """A (size, size, 3) float32 texture: ``base`` (or a vertical gradient to ``gradient_to``), jittered
    by ±12 per channel, plus smooth blotches, stripes and pixel noise."""
    jitter = rng.uniform(-12, 12, size=3).astype(np.float32)
    top = np.asarray(base, dtype=np.float32) + jitter
    if gradient_to is None:
        texture = np.broadcast_to(top, (size, size, 3))
    else:
        yy, _ = _grid(size)
        bottom = np.asarray(gradient_to, dtype=np.float32) + jitter
        texture = top + (bottom - top) * yy[..., None]
    texture = texture + _blotches(rng, size, max(4, size // 6), blotch)
    if stripe:
        texture = texture + _stripes(rng, size, stripe, period)[..., None]
    return texture + rng.standard_normal((size, size, 1), dtype=np.float32) * noise


@dataclass(frozen=True)
class Backdrop:
    """A scene background: how prompts name it and how it is painted."""

    phrase: str  # "on a grassy meadow" -> counterfactual prompt "a grassy meadow"
    paint: Callable[[np.random.Generator, int], np.ndarray]


#: Scene backgrounds (gradients and textures), muted.
BACKDROPS: tuple[Backdrop, ...] = (
    Backdrop("a grassy meadow", lambda rng, s: _texture(rng, s, (150, 165, 150), gradient_to=(105, 130, 95), blotch=14)),
    Backdrop("a patterned wall", lambda rng, s: _texture(rng, s, (150, 140, 130), stripe=14, blotch=10)),
    Backdrop("a hazy sky", lambda rng, s: _texture(rng, s, (165, 175, 195), gradient_to=(130, 140, 150), blotch=8)),
    Backdrop("a sandy floor", lambda rng, s: _texture(rng, s, (175, 160, 130), blotch=10, noise=12)),
    Backdrop("a grey pavement", lambda rng, s: _texture(rng, s, (115, 115, 118), stripe=8, period=(10, 24), blotch=12)),
)

#: Context textures an object may sit on (name -> painter), muted like the backdrops but distinct.
CONTEXTS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "sky": lambda rng, s: _texture(rng, s, (140, 175, 215), gradient_to=(185, 200, 220), blotch=10),
    "grass": lambda rng, s: _texture(rng, s, (95, 140, 85), stripe=10, period=(3, 6), blotch=10),
    "road": lambda rng, s: _texture(rng, s, (80, 80, 85), stripe=6, period=(16, 30), noise=10),
    "water": lambda rng, s: _texture(rng, s, (70, 110, 150), stripe=18, period=(5, 9), blotch=6),
    "sand": lambda rng, s: _texture(rng, s, (200, 180, 140), noise=14, blotch=8),
    "snow": lambda rng, s: _texture(rng, s, (225, 228, 232), blotch=6, noise=5),
    "wood": lambda rng, s: _texture(rng, s, (140, 105, 75), stripe=16, period=(4, 8), blotch=6),
}
CONTEXT_NAMES: tuple[str, ...] = tuple(CONTEXTS)


# ------------------------------------------------------------------------------------------------
# Objects
# ------------------------------------------------------------------------------------------------
Part = tuple[str, Any, RGB]  # (kind: "ellipse" | "rectangle" | "polygon" | "line", geometry, colour)


def _sun(cx: float, cy: float, r: float, turn: float) -> list[Part]:
    core = 0.7 * r
    rays: list[Part] = []
    for i in range(8):
        a = turn + i * 2 * math.pi / 8
        tip = (cx + r * math.cos(a), cy + r * math.sin(a))
        left = (cx + core * math.cos(a - 0.3), cy + core * math.sin(a - 0.3))
        right = (cx + core * math.cos(a + 0.3), cy + core * math.sin(a + 0.3))
        rays.append(("polygon", [left, tip, right], (250, 170, 30)))
    return [*rays, ("ellipse", [cx - core, cy - core, cx + core, cy + core], (250, 215, 40))]


def _house(cx: float, cy: float, r: float, turn: float) -> list[Part]:
    eave = cy - 0.1 * r
    return [
        ("rectangle", [cx - 0.7 * r, eave, cx + 0.7 * r, cy + r], (205, 65, 50)),
        ("polygon", [(cx - 0.9 * r, eave), (cx, cy - r), (cx + 0.9 * r, eave)], (165, 45, 35)),
        ("rectangle", [cx - 0.15 * r, cy + 0.35 * r, cx + 0.15 * r, cy + r], (90, 50, 30)),
        ("rectangle", [cx + 0.3 * r, cy + 0.1 * r, cx + 0.55 * r, cy + 0.35 * r], (240, 230, 150)),
    ]


def _tree(cx: float, cy: float, r: float, turn: float) -> list[Part]:
    return [
        ("rectangle", [cx - 0.22 * r, cy + 0.1 * r, cx + 0.22 * r, cy + r], (110, 70, 35)),
        ("ellipse", [cx - 0.85 * r, cy - r, cx + 0.85 * r, cy + 0.5 * r], (35, 135, 45)),
        ("ellipse", [cx - 0.4 * r, cy - 0.75 * r, cx + 0.1 * r, cy - 0.25 * r], (60, 165, 60)),
    ]


def _car(cx: float, cy: float, r: float, turn: float) -> list[Part]:
    wheel = 0.26 * r
    return [
        ("rectangle", [cx - 0.5 * r, cy - 0.7 * r, cx + 0.45 * r, cy - 0.2 * r], (70, 110, 230)),
        ("rectangle", [cx - 0.38 * r, cy - 0.6 * r, cx + 0.33 * r, cy - 0.3 * r], (190, 215, 240)),
        ("rectangle", [cx - r, cy - 0.25 * r, cx + r, cy + 0.35 * r], (40, 75, 210)),
        ("ellipse", [cx - 0.55 * r - wheel, cy + 0.35 * r - wheel, cx - 0.55 * r + wheel, cy + 0.35 * r + wheel], (25, 25, 30)),
        ("ellipse", [cx + 0.55 * r - wheel, cy + 0.35 * r - wheel, cx + 0.55 * r + wheel, cy + 0.35 * r + wheel], (25, 25, 30)),
    ]


def _ball(cx: float, cy: float, r: float, turn: float) -> list[Part]:
    s = 0.8 * r
    band = [(cx + s * math.cos(turn + a), cy + s * math.sin(turn + a)) for a in np.linspace(-0.5, 0.5, 6)]
    band += [(cx + 0.3 * s * math.cos(turn + a), cy + 0.3 * s * math.sin(turn + a)) for a in np.linspace(0.5, -0.5, 6)]
    return [
        ("ellipse", [cx - s, cy - s, cx + s, cy + s], (225, 55, 165)),
        ("polygon", band, (250, 240, 245)),
        ("ellipse", [cx - 0.5 * s, cy - 0.6 * s, cx - 0.15 * s, cy - 0.25 * s], (245, 150, 215)),
    ]


def _leaf(cx: float, cy: float, r: float, turn: float) -> list[Part]:
    outline = []
    for t in np.linspace(0, math.pi, 12):  # a lens: two arcs from tip to tip
        outline.append((math.cos(t) * r, 0.45 * r * math.sin(t)))
    for t in np.linspace(math.pi, 2 * math.pi, 12):
        outline.append((math.cos(t) * r, 0.45 * r * math.sin(t)))
    c, s = math.cos(turn), math.sin(turn)
    points = [(cx + x * c - y * s, cy + x * s + y * c) for x, y in outline]
    vein = [(cx - 0.85 * r * c, cy - 0.85 * r * s), (cx + 0.85 * r * c, cy + 0.85 * r * s)]
    return [("polygon", points, (140, 205, 40)), ("line", vein, (80, 130, 20))]


def _brick(cx: float, cy: float, r: float, turn: float) -> list[Part]:
    top, bottom, left, right = cy - 0.55 * r, cy + 0.55 * r, cx - r, cx + r
    parts: list[Part] = [("rectangle", [left, top, right, bottom], (200, 110, 55))]
    mortar = (215, 205, 190)
    for y in (cy - 0.18 * r, cy + 0.18 * r):
        parts.append(("line", [(left, y), (right, y)], mortar))
    for row, (y0, y1) in enumerate(((top, cy - 0.18 * r), (cy - 0.18 * r, cy + 0.18 * r), (cy + 0.18 * r, bottom))):
        for x in ((cx - 0.4 * r, cx + 0.4 * r) if row != 1 else (cx,)):
            parts.append(("line", [(x, y0), (x, y1)], mortar))
    return parts


def _star(cx: float, cy: float, r: float, turn: float) -> list[Part]:
    points = []
    for i in range(10):
        radius = r if i % 2 == 0 else 0.45 * r
        a = turn - math.pi / 2 + i * math.pi / 5
        points.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
    return [("polygon", points, (40, 195, 215))]


Drawer = Callable[[float, float, float, float], list[Part]]

#: Known classes: name -> (drawer, own context). Each has its own hue, so the tiny model can tell them apart.
OBJECTS: dict[str, tuple[Drawer, str]] = {
    "sun": (_sun, "sky"),
    "house": (_house, "grass"),
    "tree": (_tree, "grass"),
    "car": (_car, "road"),
    "ball": (_ball, "sand"),
    "leaf": (_leaf, "wood"),
    "brick": (_brick, "road"),
    "star": (_star, "water"),
}
#: The classes drawn as what they are named (others get a shape and colour from their name).
KNOWN_CLASSES: tuple[str, ...] = tuple(OBJECTS)
#: The demo's and the tests' default classes.
DEFAULT_CLASSES: tuple[str, ...] = ("sun", "house", "tree", "car", "ball")

_GENERIC_SHAPES = ("disc", "square", "triangle", "diamond")


def _name_digest(name: str) -> bytes:
    return hashlib.sha256(name.strip().lower().encode("utf-8")).digest()


def _generic(name: str) -> Drawer:
    """A drawer for a class without its own picture: a shape and a saturated colour fixed by the name."""
    digest = _name_digest(name)
    shape = _GENERIC_SHAPES[digest[0] % len(_GENERIC_SHAPES)]
    hue = digest[1] / 256.0
    colour = tuple(int(255 * c) for c in _hsv(hue, 0.8, 0.85))

    def draw(cx: float, cy: float, r: float, turn: float) -> list[Part]:
        if shape == "disc":
            return [("ellipse", [cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r], colour)]
        if shape == "square":
            return [("rectangle", [cx - 0.75 * r, cy - 0.75 * r, cx + 0.75 * r, cy + 0.75 * r], colour)]
        if shape == "triangle":
            return [("polygon", [(cx, cy - r), (cx - r, cy + 0.8 * r), (cx + r, cy + 0.8 * r)], colour)]
        return [("polygon", [(cx, cy - r), (cx + 0.7 * r, cy), (cx, cy + r), (cx - 0.7 * r, cy)], colour)]

    return draw


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def object_style(name: str) -> tuple[Drawer, str]:
    """(drawer, own context) of class ``name``: its picture if it is a :data:`KNOWN_CLASSES` name
    (bare name, any case), otherwise a shape and colour fixed by the name and a context fixed by it."""
    key = bare_name(name).strip().lower()
    if key in OBJECTS:
        return OBJECTS[key]
    return _generic(key), CONTEXT_NAMES[_name_digest(key)[2] % len(CONTEXT_NAMES)]


def own_context(name: str) -> str:
    """The context texture class ``name`` sits on with probability ``--context-bias``."""
    return object_style(name)[1]


# ------------------------------------------------------------------------------------------------
# One scene
# ------------------------------------------------------------------------------------------------
def _draw_parts(layer: ImageDraw.ImageDraw, mask: ImageDraw.ImageDraw, parts: list[Part], tint: np.ndarray,
                width: int) -> None:
    for kind, geometry, colour in parts:
        fill = tuple(int(v) for v in np.clip(np.asarray(colour) + tint, 0, 255))
        if kind == "ellipse":
            layer.ellipse(geometry, fill=fill)
            mask.ellipse(geometry, fill=255)
        elif kind == "rectangle":
            layer.rectangle(geometry, fill=fill)
            mask.rectangle(geometry, fill=255)
        elif kind == "polygon":
            layer.polygon(geometry, fill=fill)
            mask.polygon(geometry, fill=255)
        else:
            layer.line(geometry, fill=fill, width=width)
            mask.line(geometry, fill=255, width=width)


@dataclass
class Scene:
    """One drawn scene: the positive, its counterfactual and the exact label map.

    ``image`` and ``counterfactual``: (H, W, 3) uint8; ``label``: (H, W) uint8, 0 background and
    i on the visible pixels of ``classes[i-1]``; ``contexts``: the context texture under each class.
    """

    image: np.ndarray
    counterfactual: np.ndarray
    label: np.ndarray
    classes: list[str]
    contexts: list[str]
    backdrop: str


def draw_scene(classes: Sequence[str], seed: int, size: int = DEFAULT_SIZE, context_bias: float = 0.0) -> Scene:
    """Draw ``classes`` (1..254 distinct names) on one backdrop, each on a context patch, from ``seed``.

    Deterministic in its arguments. Objects are drawn in order, so a later one may hide part of an
    earlier one; the placement is drawn again (up to :data:`PLACEMENT_TRIES` times) until every
    class keeps at least :data:`MIN_VISIBLE` of its pixels, after which any visible part is accepted.
    """
    rng = np.random.default_rng(seed)
    names = list(classes)
    backdrop = BACKDROPS[int(rng.integers(len(BACKDROPS)))]
    canvas = backdrop.paint(rng, size)
    contexts = [own_context(name) if rng.random() < context_bias else CONTEXT_NAMES[int(rng.integers(len(CONTEXT_NAMES)))]
                for name in names]
    context_pixels = {name: np.clip(CONTEXTS[name](rng, size), 0, 255) for name in dict.fromkeys(contexts)}
    styles = [object_style(name) for name in names]
    tints = [rng.uniform(-18, 18, size=3) for _ in names]
    textures = [rng.standard_normal((size, size, 1), dtype=np.float32) * 5.0 for _ in names]
    best: tuple[float, list[np.ndarray], list[tuple[float, float, float, float]]] | None = None
    for _ in range(PLACEMENT_TRIES):
        placements = []
        for _name in names:
            r = float(rng.uniform(*RADIUS_RANGE)) * size
            cx, cy = (float(v) for v in rng.uniform(0.6 * r, size - 0.6 * r, size=2))
            placements.append((cx, cy, r, float(rng.uniform(0, 2 * math.pi))))
        masks = []
        for (drawer, _), (cx, cy, r, turn) in zip(styles, placements):
            mask = Image.new("L", (size, size), 0)
            _draw_parts(ImageDraw.Draw(Image.new("RGB", (size, size))), ImageDraw.Draw(mask),
                        drawer(cx, cy, r, turn), np.zeros(3), max(1, round(r * 0.12)))
            masks.append(np.asarray(mask) > 0)
        visible = _visible_fractions(masks)
        worst = min(visible)
        if best is None or worst > best[0]:
            best = (worst, masks, placements)
        if worst >= MIN_VISIBLE:
            break
    assert best is not None
    _, masks, placements = best

    # Context patches under the objects (they stay in the counterfactual).
    yy, xx = np.mgrid[0:size, 0:size]
    for context, (cx, cy, r, _) in zip(contexts, placements):
        patch = ((xx - cx) / (1.35 * r)) ** 2 + ((yy - cy) / (1.2 * r)) ** 2 <= 1.0
        canvas[patch] = context_pixels[context][patch]
    background = np.clip(canvas, 0, 255).astype(np.uint8)

    image = background.copy()
    label = np.zeros((size, size), dtype=np.uint8)
    for class_id, ((drawer, _), (cx, cy, r, turn), tint, texture, mask) in enumerate(
        zip(styles, placements, tints, textures, masks), start=1
    ):
        layer = Image.new("RGB", (size, size))
        _draw_parts(ImageDraw.Draw(layer), ImageDraw.Draw(Image.new("L", (size, size))),
                    drawer(cx, cy, r, turn), tint, max(1, round(r * 0.12)))
        pixels = np.clip(np.asarray(layer, dtype=np.float32) + texture, 0, 255).astype(np.uint8)
        image[mask] = pixels[mask]
        label[mask] = class_id
    # A drawn pixel that happens to equal the background is still the object's (the label is the drawing).
    return Scene(image=image, counterfactual=background, label=label, classes=names, contexts=contexts,
                 backdrop=backdrop.phrase)


def _visible_fractions(masks: list[np.ndarray]) -> list[float]:
    """Per mask, the fraction of its pixels no later mask covers (0 for an empty mask)."""
    fractions = []
    for i, mask in enumerate(masks):
        area = int(mask.sum())
        covered = np.zeros_like(mask)
        for later in masks[i + 1:]:
            covered |= later
        fractions.append(float((mask & ~covered).sum()) / area if area else 0.0)
    return fractions


# ------------------------------------------------------------------------------------------------
# Rows in the dataset schema
# ------------------------------------------------------------------------------------------------
def scene_prompt(names: Sequence[str], backdrop: str) -> str:
    """``"a sun and a house on a grassy meadow"`` (bare names, with their articles)."""
    things = [f"{indefinite_article(name)} {name}" for name in names]
    listed = things[0] if len(things) == 1 else ", ".join(things[:-1]) + " and " + things[-1]
    return f"{listed} on {backdrop}"


def _boxes(label: np.ndarray, count: int) -> list[list[float]]:
    boxes = []
    for class_id in range(1, count + 1):
        ys, xs = np.nonzero(label == class_id)
        boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
    return boxes


def procedural_row(vocabulary: Sequence[str], index: int, seed: int = 0, context_bias: float = 0.0,
                   size: int = DEFAULT_SIZE, max_classes: int = 2) -> dict[str, Any]:
    """Row ``index`` of a procedural run (every column of :data:`magicseg_hf.schema.DATASET_FEATURES`).

    Images are PIL images of ``size`` x ``size`` px; ``label`` is mode "L"; boxes are the visible
    pixels' bounding boxes (xyxy) with score 1; ``counterfactual_score`` is 0 (no object is drawn in
    the counterfactual) and ``class_scores`` 1 for every class (each is drawn as named, and visible).
    """
    classes = attempt_classes(vocabulary, seed, index, max_classes)
    noise_seed = derive_seed(GENERATION_NAMESPACE, seed, index, "noise")
    names = [bare_name(c) for c in classes]
    scene = draw_scene(names, noise_seed, size=size, context_bias=context_bias)
    # A class hidden entirely (only possible with many classes in a small picture) leaves the row.
    present = [i for i in range(len(classes)) if (scene.label == i + 1).any()]
    if len(present) < len(classes):
        remap = np.zeros(256, dtype=np.uint8)
        for new_id, old in enumerate(present, start=1):
            remap[old + 1] = new_id
        scene.label = remap[scene.label]
        classes, names = [classes[i] for i in present], [names[i] for i in present]
    count = len(classes)
    return {
        "id": f"s{seed}-a{index:08d}",
        "image": Image.fromarray(scene.image, "RGB"),
        "counterfactual_image": Image.fromarray(scene.counterfactual, "RGB"),
        "label": Image.fromarray(scene.label, "L"),
        "classes": list(classes),
        "prompt": scene_prompt(names, scene.backdrop),
        "counterfactual_prompt": scene.backdrop,
        "seed": int(noise_seed),
        "counterfactual_seed": int(noise_seed),
        "boxes": _boxes(scene.label, count),
        "box_labels": list(range(count)),
        "box_scores": [1.0] * count,
        "counterfactual_score": 0.0,
        "class_scores": [1.0] * count,
    }


def procedural_rows(classes: Sequence[str], num_pairs: int, seed: int = 0, context_bias: float = 0.0,
                    size: int = DEFAULT_SIZE, max_classes: int = 2) -> list[dict[str, Any]]:
    """The ``num_pairs`` rows that ``magicseg generate --source procedural`` writes with these settings
    (the same rows for the same arguments; a held-out set is another ``seed``)."""
    check_procedural_settings(context_bias, size)
    if num_pairs < 0:
        raise InputError(f"num_pairs must be >= 0 (got {num_pairs})")
    return [procedural_row(classes, k, seed=seed, context_bias=context_bias, size=size, max_classes=max_classes)
            for k in range(num_pairs)]


def check_procedural_settings(context_bias: float, size: int) -> None:
    """Raise :class:`InputError` for a ``context_bias`` outside [0, 1] or a side below :data:`MIN_SIZE`."""
    if not (isinstance(context_bias, (int, float)) and 0.0 <= context_bias <= 1.0):
        raise InputError(f"`context_bias` must be a probability in [0, 1] (got {context_bias!r})")
    if size < MIN_SIZE:
        raise InputError(f"a procedural picture needs a side of at least {MIN_SIZE} px (got {size})")


def procedural_record(config: Any) -> dict[str, Any]:
    """What ``generation.json`` records under ``"diffusion"`` for a procedural run (no model is used)."""
    return {
        "family": SOURCE,
        "pipeline": "magicseg_hf.generation.procedural",
        "guidance": "none",
        "negative_prompt": False,
        "counterfactual_steering": "the named objects are not drawn (pixel-aligned, exact labels)",
        "context_bias": float(config.context_bias),
    }


@dataclass
class _ProceduralAttempt:
    index: int


class ProceduralEngine:
    """Stands in for the diffusion engine of :mod:`magicseg_hf.generation.pipeline`: the same
    ``make_attempts`` / ``run_attempts`` calls, rows drawn instead of generated (every attempt kept)."""

    def __init__(self, config: Any, vocabulary: Sequence[str]) -> None:
        check_procedural_settings(config.context_bias, config.height)
        self.config = config
        self.vocabulary = list(vocabulary)

    def make_attempts(self, indices: list[int]) -> list[_ProceduralAttempt]:
        """One attempt per index (its classes and seed are derived inside :func:`procedural_row`)."""
        return [_ProceduralAttempt(k) for k in indices]

    def run_attempts(self, attempts: list[_ProceduralAttempt]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(rows, per-attempt records) of ``attempts``: all kept."""
        cfg = self.config
        rows = [procedural_row(self.vocabulary, a.index, seed=cfg.seed, context_bias=cfg.context_bias,
                               size=cfg.height, max_classes=cfg.max_classes_per_prompt) for a in attempts]
        return rows, [{"attempt": a.index, "status": "kept"} for a in attempts]
