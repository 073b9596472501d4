"""Pictures: the palette, label colouring, overlays with legends, pair grids and charts.

This module is the one place where magicseg-hf draws anything. The dataset writer uses
:func:`pair_grid` for ``preview.png``, the dataset card uses :func:`class_histogram_chart`,
and later parts (prediction overlays, model cards) extend what is here instead of drawing
their own.

Label conventions follow the dataset schema: ``0`` is background (drawn transparent in an
overlay, black when coloured alone), ``i >= 1`` is ``classes[i - 1]``, and
:data:`magicseg_hf.labels.UNKNOWN` (255) is "unknown" (drawn grey).
"""

from __future__ import annotations

import colorsys
import io
import logging
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from magicseg_hf.labels import UNKNOWN

logger = logging.getLogger(__name__)

BACKGROUND_COLOR = (0, 0, 0)
UNKNOWN_COLOR = (128, 128, 128)
#: Panel and text colours of grids, legends and charts.
PANEL_COLOR = (255, 255, 255)
TEXT_COLOR = (20, 20, 20)
MUTED_TEXT_COLOR = (90, 90, 90)
BAR_COLOR = (52, 101, 164)

# Layouts, in pixels (tests read the pictures at these places).
#: pair_grid and the evaluation triptych: padding and title band; pair_grid's caption band.
GRID_PAD, GRID_TITLE, GRID_CAPTION = 6, 22, 16
#: draw_legend: first line's top and the swatch's left edge; a line is font size + LEGEND_LEADING.
LEGEND_TOP, SWATCH_LEFT, LEGEND_LEADING = 4, 4, 6
#: class_histogram_chart: padding, title band, gap between bars.
CHART_PAD, CHART_TITLE, CHART_BAR_GAP = 8, 26, 4

# The first colours are hand-picked to be far apart (the common case is 1-3 classes per image);
# after them hues advance by the golden angle, so any number of classes gets distinct colours.
_BASE_COLORS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (170, 110, 40),
)
_GOLDEN_ANGLE = 0.381966


def class_color(label_id: int) -> tuple[int, int, int]:
    """Colour of label value ``label_id`` (0 background, 255 unknown, ``i >= 1`` a class)."""
    if label_id == 0:
        return BACKGROUND_COLOR
    if label_id == UNKNOWN:
        return UNKNOWN_COLOR
    if label_id < 0:
        raise ValueError(f"label ids are non-negative (got {label_id})")
    index = label_id - 1
    if index < len(_BASE_COLORS):
        return _BASE_COLORS[index]
    hue = (index * _GOLDEN_ANGLE) % 1.0
    saturation = 0.65 + 0.3 * ((index * 7) % 3) / 2
    value = 0.95 - 0.25 * ((index * 5) % 2)
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return (round(r * 255), round(g * 255), round(b * 255))


def palette(num_classes: int) -> list[tuple[int, int, int]]:
    """Colours of label values ``0..num_classes`` (index 0 is the background colour)."""
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0 (got {num_classes})")
    return [class_color(i) for i in range(num_classes + 1)]


def _lookup_table() -> np.ndarray:
    table = np.zeros((256, 3), dtype=np.uint8)
    for value in range(256):
        table[value] = class_color(value)
    return table


_LUT = _lookup_table()


def _label_array(label: Image.Image | np.ndarray) -> np.ndarray:
    array = np.asarray(label)
    if array.ndim != 2:
        raise ValueError(f"a label map is 2-D (got shape {array.shape})")
    if array.dtype != np.uint8:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(f"label values must lie in 0..255 (got {array.min()}..{array.max()})")
        array = array.astype(np.uint8)
    return array


def colorize_label(label: Image.Image | np.ndarray) -> Image.Image:
    """An RGB picture of a label map: background black, classes in palette colours, unknown grey."""
    return Image.fromarray(_LUT[_label_array(label)], mode="RGB")


def label_ids_present(label: Image.Image | np.ndarray) -> list[int]:
    """Sorted label values present in ``label`` (background 0 included when present)."""
    return [int(v) for v in np.unique(_label_array(label))]


def overlay_label(image: Image.Image, label: Image.Image | np.ndarray, alpha: float = 0.55) -> Image.Image:
    """``image`` with every non-background pixel of ``label`` tinted in its class colour.

    The label is resized (nearest neighbour) to the image when their sizes differ; each labelled
    region also gets a thin outline in its colour so small or pale regions stay visible.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1] (got {alpha})")
    base = image.convert("RGB")
    array = _label_array(label)
    if (array.shape[1], array.shape[0]) != base.size:
        array = np.asarray(Image.fromarray(array).resize(base.size, Image.Resampling.NEAREST))
    pixels = np.asarray(base, dtype=np.float32)
    colors = _LUT[array].astype(np.float32)
    mask = (array != 0)[..., None]
    blended = np.where(mask, (1.0 - alpha) * pixels + alpha * colors, pixels)
    # Outline: labelled pixels with a 4-neighbour of another value.
    edge = np.zeros(array.shape, dtype=bool)
    horizontal = array[:, :-1] != array[:, 1:]
    vertical = array[:-1, :] != array[1:, :]
    edge[:, :-1] |= horizontal
    edge[:, 1:] |= horizontal
    edge[:-1, :] |= vertical
    edge[1:, :] |= vertical
    edge &= array != 0
    blended[edge] = colors[edge]
    return Image.fromarray(blended.round().clip(0, 255).astype(np.uint8), mode="RGB")


# ----------------------------------------------------------------------------------------------
# Text and legends
# ----------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def get_font(size: int = 12) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` px (the fixed bitmap font when FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def _text_size(text: str, font: Any) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text or " ")
    return right - left, bottom - top


def _fit_text(text: str, font: Any, max_width: int) -> str:
    """``text`` shortened with an ellipsis so it fits in ``max_width`` pixels."""
    if _text_size(text, font)[0] <= max_width:
        return text
    ellipsis = "…"
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if _text_size(text[:middle] + ellipsis, font)[0] <= max_width:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + ellipsis


def legend_entries(
    label: Image.Image | np.ndarray,
    classes: Sequence[str],
    color_ids: np.ndarray | None = None,
) -> list[tuple[str, tuple[int, int, int]]]:
    """(name, colour) of every class present in ``label``, in label-id order.

    ``color_ids`` (a 256-entry table, see :func:`shared_color_ids`) maps label values to the
    ids whose colours are used; by default each value is its own colour id. Values above
    ``len(classes)`` (other than unknown) are listed as ``"<id N>"`` so that a defect stays
    visible instead of being hidden.
    """
    entries = []
    for value in label_ids_present(label):
        if value == 0:
            continue
        if value == UNKNOWN:
            entries.append(("unknown", UNKNOWN_COLOR))
        elif value <= len(classes):
            color_id = int(color_ids[value]) if color_ids is not None else value
            entries.append((str(classes[value - 1]), class_color(color_id)))
        else:
            entries.append((f"<id {value}>", class_color(value)))
    return entries


def shared_color_ids(classes: Sequence[str], order: Sequence[str]) -> np.ndarray:
    """A 256-entry table mapping a row's label values to colour ids shared across rows.

    Label value ``i`` means ``classes[i-1]`` in *this* row; mapping it to
    ``order.index(classes[i-1]) + 1`` gives a class the same colour in every row of a grid.
    Background, unknown and out-of-range values keep their own ids.
    """
    table = np.arange(256, dtype=np.uint8)
    positions = {name: index for index, name in enumerate(order)}
    for value, name in enumerate(classes, start=1):
        if value < UNKNOWN and name in positions and positions[name] + 1 < UNKNOWN:
            table[value] = positions[name] + 1
    return table


def draw_legend(
    entries: Sequence[tuple[str, tuple[int, int, int]]],
    width: int,
    font_size: int = 12,
    max_entries: int = 12,
) -> Image.Image:
    """A white panel ``width`` px wide listing a colour swatch and a name per entry."""
    font = get_font(font_size)
    line = font_size + LEGEND_LEADING
    swatch = font_size
    shown = list(entries[:max_entries])
    hidden = len(entries) - len(shown)
    lines = len(shown) + (1 if hidden > 0 else 0)
    panel = Image.new("RGB", (max(width, 1), max(line * lines + 6, line + 6)), PANEL_COLOR)
    draw = ImageDraw.Draw(panel)
    y = LEGEND_TOP
    if not shown:
        draw.text((SWATCH_LEFT, y), "(no classes)", fill=MUTED_TEXT_COLOR, font=font)
        return panel
    for name, color in shown:
        draw.rectangle([SWATCH_LEFT, y + 2, SWATCH_LEFT + swatch, y + 2 + swatch], fill=color, outline=TEXT_COLOR)
        text = _fit_text(name, font, width - swatch - 14)
        draw.text((swatch + 10, y), text, fill=TEXT_COLOR, font=font)
        y += line
    if hidden > 0:
        draw.text((SWATCH_LEFT, y), f"+{hidden} more", fill=MUTED_TEXT_COLOR, font=font)
    return panel


def overlay_with_legend(
    image: Image.Image,
    label: Image.Image | np.ndarray,
    classes: Sequence[str],
    alpha: float = 0.55,
    legend_width: int = 140,
) -> Image.Image:
    """:func:`overlay_label` with a legend of the classes present to its right."""
    overlay = overlay_label(image, label, alpha=alpha)
    legend = draw_legend(legend_entries(label, classes), legend_width)
    height = max(overlay.height, legend.height)
    canvas = Image.new("RGB", (overlay.width + legend.width, height), PANEL_COLOR)
    canvas.paste(overlay, (0, 0))
    canvas.paste(legend, (overlay.width, 0))
    return canvas


# ----------------------------------------------------------------------------------------------
# Grids
# ----------------------------------------------------------------------------------------------
def _as_pil(value: Any) -> Image.Image:
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, np.ndarray):
        return Image.fromarray(value)
    if isinstance(value, Mapping) and value.get("bytes") is not None:  # an undecoded datasets Image
        return Image.open(io.BytesIO(value["bytes"]))
    raise TypeError(f"a picture must be a PIL image, an array or an encoded image dict (got {type(value).__name__})")


def _fit_height(image: Image.Image, height: int, resample: Image.Resampling) -> Image.Image:
    if image.height == height:
        return image
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), resample)


def pair_grid(
    rows: Sequence[Mapping[str, Any]],
    max_rows: int = 4,
    cell_height: int = 192,
    legend_width: int = 150,
    alpha: float = 0.55,
) -> Image.Image:
    """One line per pair: image | counterfactual | label overlay, then a legend of its classes.

    A class has the same colour in every line of the grid.

    ``rows`` are dataset rows (dicts with PIL ``image``, ``counterfactual_image``, ``label``
    in mode "L" and ``classes``); optional ``prompt``/``counterfactual_prompt`` are written under
    their pictures. At most ``max_rows`` rows are drawn; pictures are scaled to ``cell_height``.
    """
    if max_rows <= 0:
        raise ValueError(f"max_rows must be positive (got {max_rows})")
    rows = list(rows)[:max_rows]
    if not rows:
        raise ValueError("pair_grid needs at least one row (got none)")
    font = get_font(13)
    small = get_font(11)
    pad, title_height, caption_height = GRID_PAD, GRID_TITLE, GRID_CAPTION

    # One colour per class across the whole grid (a row's label ids are positions in its own list).
    order: list[str] = []
    for row in rows:
        for name in row.get("classes") or []:
            if name not in order:
                order.append(str(name))

    lines: list[tuple[list[Image.Image], list[str], Image.Image]] = []
    for row in rows:
        image = _as_pil(row["image"]).convert("RGB")
        counterfactual = _as_pil(row["counterfactual_image"]).convert("RGB")
        label = _as_pil(row["label"])
        classes = list(row.get("classes") or [])
        image_cell = _fit_height(image, cell_height, Image.Resampling.BILINEAR)
        counterfactual_cell = _fit_height(counterfactual, cell_height, Image.Resampling.BILINEAR)
        label_cell = _fit_height(label, cell_height, Image.Resampling.NEAREST)
        color_ids = shared_color_ids(classes, order)
        label_array = _label_array(label_cell)
        overlay = overlay_label(image_cell, color_ids[label_array], alpha=alpha)
        legend = draw_legend(legend_entries(label_array, classes, color_ids), legend_width)
        captions = [str(row.get("prompt") or ""), str(row.get("counterfactual_prompt") or ""), ""]
        lines.append(([image_cell, counterfactual_cell, overlay], captions, legend))

    columns = 3
    col_widths = [max(line[0][c].width for line in lines) for c in range(columns)]
    has_captions = any(any(line[1]) for line in lines)
    row_height = cell_height + (caption_height if has_captions else 0)
    width = pad + sum(w + pad for w in col_widths) + legend_width + pad
    height = title_height + len(lines) * (row_height + pad) + pad
    canvas = Image.new("RGB", (width, height), PANEL_COLOR)
    draw = ImageDraw.Draw(canvas)

    titles = ("image", "counterfactual", "label overlay", "classes")
    x = pad
    for c, title in enumerate(titles):
        draw.text((x, 4), title, fill=TEXT_COLOR, font=font)
        x += (col_widths[c] if c < columns else legend_width) + pad

    y = title_height
    for cells, captions, legend in lines:
        x = pad
        for c, cell in enumerate(cells):
            canvas.paste(cell, (x, y))
            if captions[c]:
                text = _fit_text(captions[c], small, col_widths[c])
                draw.text((x, y + cell_height + 2), text, fill=MUTED_TEXT_COLOR, font=small)
            x += col_widths[c] + pad
        canvas.paste(legend.crop((0, 0, legend_width, min(legend.height, row_height))), (x, y))
        y += row_height + pad
    return canvas


# ----------------------------------------------------------------------------------------------
# Charts
# ----------------------------------------------------------------------------------------------
def class_histogram_chart(
    counts: Mapping[str, int],
    top_k: int = 20,
    title: str = "rows per class",
    width: int = 640,
    bar_height: int = 18,
) -> Image.Image:
    """A horizontal bar chart of the ``top_k`` most frequent classes (ties by name).

    When more classes exist than are drawn, a last line says how many rows the rest hold.
    """
    if top_k <= 0:
        raise ValueError(f"top_k must be positive (got {top_k})")
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = ordered[:top_k]
    rest = ordered[top_k:]
    font = get_font(12)
    title_font = get_font(14)
    pad, title_height = CHART_PAD, CHART_TITLE
    name_width = min(220, max([_text_size(name, font)[0] for name, _ in shown] + [60]) + 8)
    value_width = max([_text_size(str(v), font)[0] for _, v in shown] + [20]) + 10
    bar_area = max(60, width - name_width - value_width - 3 * pad)
    lines = max(len(shown), 1) + (1 if rest else 0)
    height = title_height + lines * (bar_height + CHART_BAR_GAP) + 2 * pad
    canvas = Image.new("RGB", (width, height), PANEL_COLOR)
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, pad // 2), title, fill=TEXT_COLOR, font=title_font)
    y = title_height
    if not shown:
        draw.text((pad, y), "(no rows)", fill=MUTED_TEXT_COLOR, font=font)
        return canvas
    top = max(shown[0][1], 1)
    for name, value in shown:
        label = _fit_text(name, font, name_width - 8)
        draw.text((pad, y + 2), label, fill=TEXT_COLOR, font=font)
        x0 = pad + name_width
        length = round(bar_area * value / top)
        if length > 0:
            draw.rectangle([x0, y + 2, x0 + length, y + bar_height - 2], fill=BAR_COLOR)
        draw.text((x0 + length + 4, y + 2), str(value), fill=TEXT_COLOR, font=font)
        y += bar_height + CHART_BAR_GAP
    if rest:
        text = f"+{len(rest)} more classes (their counts sum to {sum(v for _, v in rest)})"
        draw.text((pad, y + 2), text, fill=MUTED_TEXT_COLOR, font=font)
    return canvas


# ----------------------------------------------------------------------------------------------
# Evaluation pictures
# ----------------------------------------------------------------------------------------------
def prediction_triptych(
    image: Image.Image,
    ground_truth: Image.Image | np.ndarray,
    prediction: Image.Image | np.ndarray,
    classes: Sequence[str],
    cell_height: int = 256,
    legend_width: int = 160,
    alpha: float = 0.55,
    title: str | None = None,
) -> Image.Image:
    """One line: image | ground truth overlay | prediction overlay, then a legend of both maps' classes.

    ``ground_truth`` and ``prediction`` are (H, W) label maps in this module's convention (0
    background, ``i`` = ``classes[i - 1]``, 255 unknown/ignored, drawn grey); a class has the same
    colour in both. Pictures are scaled to ``cell_height``; ``title`` (e.g. the image id) is written
    above the line.
    """
    if cell_height <= 0:
        raise ValueError(f"cell_height must be positive (got {cell_height})")
    font = get_font(13)
    pad, title_height = GRID_PAD, GRID_TITLE
    base = _fit_height(image.convert("RGB"), cell_height, Image.Resampling.BILINEAR)
    maps = [
        _label_array(_fit_height(_as_pil(_label_array(label)), cell_height, Image.Resampling.NEAREST))
        for label in (ground_truth, prediction)
    ]
    cells = [base, *(overlay_label(base, label, alpha=alpha) for label in maps)]
    present = sorted(set(label_ids_present(maps[0])) | set(label_ids_present(maps[1])))
    legend = draw_legend(legend_entries(np.array([present], dtype=np.uint8), classes), legend_width)
    width = pad + sum(cell.width + pad for cell in cells) + legend_width + pad
    height = title_height + max(cell_height, legend.height) + pad
    canvas = Image.new("RGB", (width, height), PANEL_COLOR)
    draw = ImageDraw.Draw(canvas)
    x = pad
    headings = (title or "image", "ground truth", "prediction", "classes")
    for index, heading in enumerate(headings):
        column_width = cells[index].width if index < len(cells) else legend_width
        draw.text((x, 4), _fit_text(heading, font, column_width), fill=TEXT_COLOR, font=font)
        if index < len(cells):
            canvas.paste(cells[index], (x, title_height))
        else:
            canvas.paste(legend, (x, title_height))
        x += column_width + pad
    return canvas
