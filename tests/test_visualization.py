"""visualization.py: palette, label colouring, overlays, legends, pair grid, histogram chart.

The pictures are checked pixel by pixel against facts a viewer would notice: an overlay pixel is
the blend of the image and its class colour, background stays the image, a legend shows each
class's colour and name, the chart's bars are as long as the counts say, and the lines that
summarise what was left out are drawn. Expected text is rendered independently with Pillow.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import DEFAULT_CLASSES, make_row, make_rows
from PIL import Image, ImageDraw

from magicseg_hf import visualization as vis

# The layouts, from the module that draws them.
GRID_PAD, GRID_TITLE, GRID_CAPTION = vis.GRID_PAD, vis.GRID_TITLE, vis.GRID_CAPTION
# draw_legend at its default font size 12: the swatch is as wide as the font is tall.
SWATCH = 12
LEGEND_LINE, LEGEND_TOP, SWATCH_LEFT = SWATCH + vis.LEGEND_LEADING, vis.LEGEND_TOP, vis.SWATCH_LEFT
# class_histogram_chart at its default bar height 18.
CHART_PAD, CHART_TITLE, CHART_LINE = vis.CHART_PAD, vis.CHART_TITLE, 18 + vis.CHART_BAR_GAP
WHITE = np.array(vis.PANEL_COLOR)


def _blend(image: np.ndarray, color: tuple[int, int, int], alpha: float) -> np.ndarray:
    """(..., 3) image pixels tinted with ``color`` at ``alpha``, as integers."""
    return np.round((1.0 - alpha) * image.astype(np.float64) + alpha * np.array(color, dtype=np.float64))


def _neighbours_agree(label: np.ndarray) -> np.ndarray:
    """(H, W) bool: every 4-neighbour inside the picture has the same label value."""
    padded = np.pad(label, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    return (
        (padded[:-2, 1:-1] == centre)
        & (padded[2:, 1:-1] == centre)
        & (padded[1:-1, :-2] == centre)
        & (padded[1:-1, 2:] == centre)
    )


def _check_overlay(
    overlay: np.ndarray, image: np.ndarray, label: np.ndarray, colors: dict[int, tuple[int, int, int]], alpha: float
) -> None:
    """Background pixels are the image; inside a region, the blend with its colour; on its rim, the colour."""
    assert overlay.shape == image.shape
    background = label == 0
    assert background.any() and np.array_equal(overlay[background], image[background]), "background is the image"
    inside = _neighbours_agree(label)
    for value, color in colors.items():
        interior = (label == value) & inside
        rim = (label == value) & ~inside
        assert interior.any() and rim.any(), value
        difference = np.abs(overlay[interior].astype(int) - _blend(image[interior], color, alpha))
        assert difference.max() <= 1, f"label {value}: the overlay is the image blended with {color}"
        assert (overlay[rim] == np.array(color)).all(), f"label {value}: the outline is drawn in {color}"


def _color_pixels(array: np.ndarray, color: tuple[int, int, int]) -> int:
    return int((array == np.array(color)).all(axis=-1).sum())


def _has_ink(array: np.ndarray) -> bool:
    """Whether anything but the white panel colour is drawn in ``array``."""
    return bool((array != WHITE).any())


def _rendered_text(text: str, size: tuple[int, int], xy: tuple[int, int], fill, font_size: int) -> np.ndarray:
    """``text`` drawn with the package's font on a white panel of ``size`` (width, height)."""
    canvas = Image.new("RGB", size, vis.PANEL_COLOR)
    ImageDraw.Draw(canvas).text(xy, text, fill=fill, font=vis.get_font(font_size))
    return np.asarray(canvas)


def _check_legend_line(panel: np.ndarray, index: int, name: str, color: tuple[int, int, int]) -> None:
    """Line ``index`` of a legend (font size 12) shows a swatch of ``color`` and the text ``name``."""
    top = LEGEND_TOP + index * LEGEND_LINE
    swatch = panel[top + 3 : top + 2 + SWATCH, SWATCH_LEFT + 1 : SWATCH_LEFT + SWATCH]
    assert (swatch == np.array(color)).all(), f"line {index}: a swatch of {color}"
    text_left = SWATCH + 10
    region = panel[top : top + LEGEND_LINE, text_left:]
    expected = _rendered_text(name, (region.shape[1], LEGEND_LINE), (0, 0), vis.TEXT_COLOR, 12)
    assert np.array_equal(region, expected), f"line {index}: the name {name!r}"


# ---- palette and colouring ----------------------------------------------------------------------
def test_palette_is_distinct_and_reserves_background_and_unknown():
    colors = vis.palette(200)
    assert colors[0] == vis.BACKGROUND_COLOR == (0, 0, 0)
    assert len(colors) == 201
    assert len(set(colors[1:])) == 200, "every class id gets its own colour"
    assert vis.BACKGROUND_COLOR not in colors[1:]
    assert vis.UNKNOWN_COLOR not in colors[1:], "no class looks unknown"
    assert vis.class_color(255) == vis.UNKNOWN_COLOR
    assert vis.class_color(3) == colors[3]
    with pytest.raises(ValueError):
        vis.class_color(-1)


def test_colorize_label_maps_each_value_to_its_colour():
    label = np.array([[0, 1, 2], [255, 1, 0]], dtype=np.uint8)
    rgb = np.asarray(vis.colorize_label(Image.fromarray(label, "L")))
    assert rgb.shape == (2, 3, 3)
    assert tuple(rgb[0, 0]) == vis.BACKGROUND_COLOR
    assert tuple(rgb[0, 1]) == vis.class_color(1) == tuple(rgb[1, 1])
    assert tuple(rgb[0, 2]) == vis.class_color(2)
    assert tuple(rgb[1, 0]) == vis.UNKNOWN_COLOR
    with pytest.raises(ValueError, match=r"0\.\.255 \(got 0\.\.300\)"):
        vis.colorize_label(np.array([[0, 300]]))
    with pytest.raises(ValueError, match="2-D"):
        vis.colorize_label(np.zeros((2, 2, 3), dtype=np.uint8))


# ---- overlays -----------------------------------------------------------------------------------
def test_overlay_blends_labelled_pixels_and_keeps_the_background():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    label = np.zeros((24, 32), dtype=np.uint8)
    label[2:12, 3:15] = 1
    label[8:20, 12:28] = 2  # overlaps class 1: the later region is drawn on top
    label[18:23, 1:6] = 255
    for alpha in (0.5, 0.55):
        out = np.asarray(vis.overlay_label(Image.fromarray(image), Image.fromarray(label, "L"), alpha=alpha))
        colors = {1: vis.class_color(1), 2: vis.class_color(2), 255: vis.UNKNOWN_COLOR}
        _check_overlay(out, image, label, colors, alpha)
    # The default alpha is 0.55, and an alpha of 0 leaves the inside of every region untouched.
    default = np.asarray(vis.overlay_label(Image.fromarray(image), label))
    assert np.array_equal(default, out)
    clear = np.asarray(vis.overlay_label(Image.fromarray(image), label, alpha=0.0))
    inside = _neighbours_agree(label)
    assert np.array_equal(clear[inside], image[inside])
    with pytest.raises(ValueError):
        vis.overlay_label(Image.fromarray(image), label, alpha=1.5)


def test_overlay_resizes_a_label_of_another_size_by_nearest_neighbour():
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    small = np.zeros((8, 8), dtype=np.uint8)
    small[2:6, 2:6] = 1
    small[0, 7] = 2
    full = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)  # each label pixel covers 2 x 2 image pixels
    out = vis.overlay_label(image, Image.fromarray(small, "L"))
    assert out.size == image.size
    _check_overlay(np.asarray(out), np.asarray(image), full, {1: vis.class_color(1)}, 0.55)


def test_overlay_with_legend_puts_the_legend_right_of_the_overlay():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    label = np.zeros((24, 32), dtype=np.uint8)
    label[:8, :8] = 1
    out = np.asarray(vis.overlay_with_legend(Image.fromarray(image), label, ["bow (weapon)"], legend_width=140))
    assert out.shape[1] == 32 + 140 and out.shape[0] >= 24
    _check_overlay(out[:24, :32], image, label, {1: vis.class_color(1)}, 0.55)
    _check_legend_line(out[:, 32:], 0, "bow (weapon)", vis.class_color(1))


# ---- legends ------------------------------------------------------------------------------------
def test_legend_entries_list_only_classes_present_and_flag_bad_ids():
    label = np.array([[0, 2, 2], [7, 255, 0]], dtype=np.uint8)
    entries = vis.legend_entries(label, ["cat", "dog"])
    assert entries == [("dog", vis.class_color(2)), ("<id 7>", vis.class_color(7)), ("unknown", vis.UNKNOWN_COLOR)]
    assert vis.legend_entries(np.zeros((2, 2), dtype=np.uint8), ["cat"]) == []


def test_legend_shows_each_entry_as_a_swatch_and_a_name():
    entries = [("cat", vis.class_color(1)), ("traffic light", vis.class_color(4)), ("unknown", vis.UNKNOWN_COLOR)]
    panel = np.asarray(vis.draw_legend(entries, width=120))
    assert panel.shape == (LEGEND_LINE * 3 + 6, 120, 3)
    for index, (name, color) in enumerate(entries):
        _check_legend_line(panel, index, name, color)
    # A name too long for the panel is shortened with an ellipsis, never drawn past the edge.
    long = np.asarray(vis.draw_legend([("a very long class name indeed", vis.class_color(2))], width=80))
    assert long.shape[1] == 80
    assert _has_ink(long[:, SWATCH + 10 : 76]) and not _has_ink(long[:, 77:])


def test_legend_says_how_many_entries_it_leaves_out():
    entries = [(f"class {i}", vis.class_color(i)) for i in range(1, 6)]
    panel = np.asarray(vis.draw_legend(entries, width=120, max_entries=2))
    assert panel.shape[0] == LEGEND_LINE * 3 + 6
    _check_legend_line(panel, 0, "class 1", vis.class_color(1))
    _check_legend_line(panel, 1, "class 2", vis.class_color(2))
    assert _color_pixels(panel, vis.class_color(3)) == 0, "left-out entries get no swatch"
    top = LEGEND_TOP + 2 * LEGEND_LINE
    expected = _rendered_text("+3 more", (120, panel.shape[0] - top), (4, 0), vis.MUTED_TEXT_COLOR, 12)
    assert np.array_equal(panel[top:], expected), "a last line says '+3 more'"
    # An empty legend says so.
    empty = np.asarray(vis.draw_legend([], width=80))
    assert empty.shape[1] == 80
    expected = _rendered_text("(no classes)", (80, empty.shape[0]), (4, LEGEND_TOP), vis.MUTED_TEXT_COLOR, 12)
    assert np.array_equal(empty, expected)


# ---- pair grid ----------------------------------------------------------------------------------
def _grid_line(grid: np.ndarray, line: int, cell: int, row_height: int, legend_width: int) -> dict[str, np.ndarray]:
    """The pictures of line ``line`` of a pair grid whose pictures are ``cell`` x ``cell`` px."""
    top = GRID_TITLE + line * (row_height + GRID_PAD)
    x = [GRID_PAD + c * (cell + GRID_PAD) for c in range(4)]
    return {
        "image": grid[top : top + cell, x[0] : x[0] + cell],
        "counterfactual": grid[top : top + cell, x[1] : x[1] + cell],
        "overlay": grid[top : top + cell, x[2] : x[2] + cell],
        "legend": grid[top : top + row_height, x[3] : x[3] + legend_width],
        "caption": grid[top + cell : top + row_height, x[0] : x[0] + cell],
    }


def test_pair_grid_line_shows_image_counterfactual_overlay_and_legend():
    cat_only = make_row(0, ["cat"], size=(40, 40))
    dog_cat = make_row(1, ["dog", "cat"], size=(40, 40))  # here cat is label 2, dog label 1
    grid = np.asarray(vis.pair_grid([cat_only, dog_cat], cell_height=40, legend_width=100))
    row_height = 40 + GRID_CAPTION  # the rows have prompts, so every line has a caption band
    assert grid.shape == (GRID_TITLE + 2 * (row_height + GRID_PAD) + GRID_PAD, GRID_PAD + 3 * 46 + 100 + GRID_PAD, 3)
    assert _has_ink(grid[:GRID_TITLE]), "column titles"
    # A class has one colour in the whole grid: the order of first appearance (cat 1, dog 2).
    colors = {"cat": vis.class_color(1), "dog": vis.class_color(2)}
    for line, row in enumerate([cat_only, dog_cat]):
        cells = _grid_line(grid, line, 40, row_height, 100)
        image = np.asarray(row["image"])
        assert np.array_equal(cells["image"], image)
        assert np.array_equal(cells["counterfactual"], np.asarray(row["counterfactual_image"]))
        label = np.asarray(row["label"])
        by_value = {value: colors[name] for value, name in enumerate(row["classes"], start=1) if (label == value).any()}
        _check_overlay(cells["overlay"], image, label, by_value, 0.55)
        for index, value in enumerate(sorted(by_value)):
            _check_legend_line(cells["legend"], index, row["classes"][value - 1], by_value[value])
        absent = set(colors) - {row["classes"][v - 1] for v in by_value}
        assert all(_color_pixels(cells["legend"], colors[name]) == 0 for name in absent), "only classes present"
        assert _has_ink(cells["caption"]), "the prompt is written under the image"


def test_pair_grid_draws_the_first_rows_in_order_and_accepts_encoded_images():
    rows = make_rows(6, DEFAULT_CLASSES, size=(40, 30))
    grid = np.asarray(vis.pair_grid(rows, max_rows=4, cell_height=60, legend_width=100))
    row_height = 60 + GRID_CAPTION
    assert grid.shape[0] == GRID_TITLE + 4 * (row_height + GRID_PAD) + GRID_PAD, "capped at max_rows lines"
    for line in range(4):
        top = GRID_TITLE + line * (row_height + GRID_PAD)
        # Pictures are scaled to the cell height, keeping their aspect ratio (40 x 30 -> 80 x 60).
        expected = rows[line]["image"].resize((80, 60), Image.Resampling.BILINEAR)
        assert np.array_equal(grid[top : top + 60, GRID_PAD : GRID_PAD + 80], np.asarray(expected)), line
    # Encoded images (as stored in parquet) draw the same grid.
    encoded = []
    for row in rows[:2]:
        item = dict(row)
        for key in ("image", "counterfactual_image", "label"):
            buffer = io.BytesIO()
            row[key].save(buffer, format="PNG")
            item[key] = {"bytes": buffer.getvalue(), "path": None}
        encoded.append(item)
    assert np.array_equal(
        np.asarray(vis.pair_grid(encoded, cell_height=60)), np.asarray(vis.pair_grid(rows[:2], cell_height=60))
    )
    with pytest.raises(ValueError):
        vis.pair_grid([])
    with pytest.raises(ValueError):
        vis.pair_grid(rows, max_rows=0)
    with pytest.raises(TypeError, match="got str"):
        vis.pair_grid([{**rows[0], "image": "cat.png"}])


def test_shared_color_ids_map_a_rows_labels_to_grid_wide_colours():
    dog_cat = make_row(1, ["dog", "cat"], size=(40, 40))
    table = vis.shared_color_ids(dog_cat["classes"], ["cat", "dog"])
    assert table[1] == 2 and table[2] == 1 and table[0] == 0 and table[255] == 255
    assert table[3] == 3, "values past the row's classes keep their own id"
    entries = dict(vis.legend_entries(dog_cat["label"], dog_cat["classes"], table))
    assert entries == {"cat": vis.class_color(1), "dog": vis.class_color(2)}


# ---- class histogram chart ----------------------------------------------------------------------
def _bar_lengths(chart: np.ndarray, lines: int) -> list[int]:
    """Length in pixels of the bar on each of the first ``lines`` lines of a histogram chart."""
    lengths = []
    for line in range(lines):
        middle = CHART_TITLE + line * CHART_LINE + 9
        lengths.append(_color_pixels(chart[middle : middle + 1], vis.BAR_COLOR))
    return lengths


def test_class_histogram_bars_are_as_long_as_the_counts():
    counts = {"cat": 40, "dog": 30, "zebra": 10, "person": 20, "bow (weapon)": 5}
    chart = np.asarray(vis.class_histogram_chart(counts, top_k=10))
    assert chart.shape == (CHART_TITLE + 5 * CHART_LINE + 2 * CHART_PAD, 640, 3)
    assert _has_ink(chart[:CHART_TITLE]), "title"
    lengths = _bar_lengths(chart, 5)
    ordered = sorted(counts.values(), reverse=True)
    assert lengths == sorted(lengths, reverse=True) and len(set(lengths)) == 5, "longest first, like the counts"
    for length, count in zip(lengths, ordered):
        assert abs(length / lengths[0] - count / ordered[0]) < 0.02, (lengths, ordered)
    # Nothing but the five bars is drawn in the bar colour.
    assert _color_pixels(chart, vis.BAR_COLOR) == sum(_bar_lengths(chart, 5)) * 15


def test_class_histogram_orders_names_by_count_then_name():
    chart = np.asarray(vis.class_histogram_chart({"b": 5, "a": 5, "c": 7}, top_k=5))
    assert _bar_lengths(chart, 3)[1] == _bar_lengths(chart, 3)[2] < _bar_lengths(chart, 3)[0]
    for line, name in enumerate(["c", "a", "b"]):
        top = CHART_TITLE + line * CHART_LINE
        region = chart[top : top + CHART_LINE, :60]
        expected = _rendered_text(name, (60, CHART_LINE), (CHART_PAD, 2), vis.TEXT_COLOR, 12)
        assert np.array_equal(region, expected), f"line {line} names {name!r}"


def test_class_histogram_says_how_many_classes_it_leaves_out():
    counts = {f"class {i:02d}": i for i in range(1, 31)}
    chart = np.asarray(vis.class_histogram_chart(counts, top_k=10))
    shown_only = np.asarray(vis.class_histogram_chart({k: v for k, v in counts.items() if v > 20}, top_k=10))
    assert chart.shape[0] == shown_only.shape[0] + CHART_LINE, "one more line"
    last = CHART_TITLE + 10 * CHART_LINE
    assert np.array_equal(chart[:last], shown_only[:last]), "the same ten bars"
    assert not _has_ink(shown_only[last:])
    # The 20 classes left out hold 1 + 2 + ... + 20 = 210 rows.
    expected = _rendered_text(
        "+20 more classes (their counts sum to 210)",
        (640, chart.shape[0] - last),
        (CHART_PAD, 2),
        vis.MUTED_TEXT_COLOR,
        12,
    )
    assert np.array_equal(chart[last:], expected)
    assert vis.class_histogram_chart(counts, top_k=20).height == chart.shape[0] + 10 * CHART_LINE
    with pytest.raises(ValueError):
        vis.class_histogram_chart(counts, top_k=0)


def test_class_histogram_of_no_rows_says_so():
    empty = np.asarray(vis.class_histogram_chart({}, top_k=5))
    assert _color_pixels(empty, vis.BAR_COLOR) == 0
    region = empty[CHART_TITLE:]
    expected = _rendered_text("(no rows)", (640, region.shape[0]), (CHART_PAD, 0), vis.MUTED_TEXT_COLOR, 12)
    assert np.array_equal(region, expected)
