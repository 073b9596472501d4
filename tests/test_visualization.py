"""visualization.py: palette, label colouring, overlays, legends, pair grid, histogram chart."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import DEFAULT_CLASSES, make_row, make_rows
from PIL import Image

from magicseg_hf import visualization as vis


def test_palette_is_distinct_and_reserves_background_and_unknown():
    colors = vis.palette(200)
    assert colors[0] == vis.BACKGROUND_COLOR == (0, 0, 0)
    assert len(colors) == 201
    assert len(set(colors[1:])) == 200, "every class id gets its own colour"
    assert vis.BACKGROUND_COLOR not in colors[1:]
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


def test_overlay_tints_only_labelled_pixels():
    image = Image.new("RGB", (16, 16), (100, 100, 100))
    label = np.zeros((16, 16), dtype=np.uint8)
    label[4:12, 4:12] = 1
    out = np.asarray(vis.overlay_label(image, Image.fromarray(label, "L"), alpha=0.5)).astype(int)
    assert (out[label == 0] == 100).all(), "background pixels are untouched"
    inside = out[6, 6]
    expected = np.round(0.5 * np.array([100, 100, 100]) + 0.5 * np.array(vis.class_color(1))).astype(int)
    assert (inside == expected).all()
    assert tuple(out[11, 8]) == tuple(out[4, 8]) == tuple(out[8, 4]) == vis.class_color(1), "border in class colour"
    # A label of another size is resized to the image (nearest neighbour).
    small = Image.fromarray(label[::2, ::2], "L")
    assert vis.overlay_label(image, small).size == image.size
    with pytest.raises(ValueError):
        vis.overlay_label(image, label, alpha=1.5)


def test_legend_lists_only_classes_present_and_flags_bad_ids():
    label = np.array([[0, 2, 2], [7, 255, 0]], dtype=np.uint8)
    entries = vis.legend_entries(label, ["cat", "dog"])
    assert [name for name, _ in entries] == ["dog", "<id 7>", "unknown"]
    assert entries[0][1] == vis.class_color(2)
    panel = vis.draw_legend(entries, width=120)
    assert panel.width == 120
    assert (np.asarray(panel) != 255).any()
    assert vis.draw_legend([], width=80).size[0] == 80


def test_overlay_with_legend_adds_a_panel():
    image = Image.new("RGB", (32, 24), (10, 20, 30))
    label = np.zeros((24, 32), dtype=np.uint8)
    label[:5, :5] = 1
    out = vis.overlay_with_legend(image, label, ["bow (weapon)"], legend_width=100)
    assert out.size == (132, max(24, out.height))


def test_pair_grid_draws_one_line_per_pair_with_a_legend():
    rows = make_rows(6, DEFAULT_CLASSES, size=(40, 30))
    grid = vis.pair_grid(rows, max_rows=4, cell_height=60, legend_width=100)
    assert grid.mode == "RGB"
    two = vis.pair_grid(rows[:2], max_rows=4, cell_height=60, legend_width=100)
    assert grid.width == two.width
    assert grid.height > two.height, "more rows make a taller grid"
    assert vis.pair_grid(rows, max_rows=4, cell_height=60).height == grid.height, "capped at max_rows"
    # The third column is the overlay: equal to the image where the label is background only.
    array = np.asarray(two)
    assert array.shape[1] == two.width
    # Encoded images (as stored in parquet) are accepted too.
    import io

    encoded = []
    for row in rows[:1]:
        item = dict(row)
        for key in ("image", "counterfactual_image", "label"):
            buffer = io.BytesIO()
            row[key].save(buffer, format="PNG")
            item[key] = {"bytes": buffer.getvalue(), "path": None}
        encoded.append(item)
    assert np.array_equal(np.asarray(vis.pair_grid(encoded, cell_height=60)),
                          np.asarray(vis.pair_grid(rows[:1], cell_height=60)))
    with pytest.raises(ValueError):
        vis.pair_grid([])


def test_pair_grid_overlay_column_matches_overlay_label():
    rows = make_rows(1, ["cat"], size=(40, 40))
    cell = 40
    grid = np.asarray(vis.pair_grid(rows, cell_height=cell, legend_width=80))
    pad, title = 6, 22
    x = pad + (40 + pad) * 2
    overlay = np.asarray(vis.overlay_label(rows[0]["image"], rows[0]["label"]))
    assert np.array_equal(grid[title:title + cell, x:x + 40], overlay)
    image_cell = grid[title:title + cell, pad:pad + 40]
    assert np.array_equal(image_cell, np.asarray(rows[0]["image"]))


def test_class_histogram_chart_orders_and_truncates():
    counts = {f"class {i}": i for i in range(1, 31)}
    chart = vis.class_histogram_chart(counts, top_k=10)
    assert chart.mode == "RGB" and chart.width == 640
    taller = vis.class_histogram_chart(counts, top_k=20)
    assert taller.height > chart.height
    empty = vis.class_histogram_chart({}, top_k=5)
    assert empty.height > 0
    with pytest.raises(ValueError):
        vis.class_histogram_chart(counts, top_k=0)
    # Bars are drawn in the bar colour, longest first.
    array = np.asarray(chart)
    bar_rows = np.where((array == np.array(vis.BAR_COLOR)).all(axis=-1).any(axis=1))[0]
    assert len(bar_rows) > 0
    first_row = (array[bar_rows[0]] == np.array(vis.BAR_COLOR)).all(axis=-1).sum()
    last_row = (array[bar_rows[-1]] == np.array(vis.BAR_COLOR)).all(axis=-1).sum()
    assert first_row > last_row


def test_pair_grid_gives_a_class_one_colour_across_rows():
    cat_only = make_row(0, ["cat"], size=(40, 40))
    dog_cat = make_row(1, ["dog", "cat"], size=(40, 40))  # here cat is label id 2
    table = vis.shared_color_ids(dog_cat["classes"], ["cat", "dog"])
    assert table[1] == 2 and table[2] == 1 and table[0] == 0 and table[255] == 255
    entries = vis.legend_entries(dog_cat["label"], dog_cat["classes"], table)
    assert dict(entries)["cat"] == vis.class_color(1) == dict(vis.legend_entries(cat_only["label"], ["cat"]))["cat"]
    assert dict(entries)["dog"] == vis.class_color(2)
    grid = np.asarray(vis.pair_grid([cat_only, dog_cat], cell_height=40, legend_width=80))
    pad, title = 6, 22
    x = pad + (40 + pad) * 2
    top = title + 40 + 16 + pad  # first line: picture + caption, then padding
    second = grid[top:top + 40, x:x + 40]
    expected = vis.overlay_label(dog_cat["image"], table[np.asarray(dog_cat["label"])])
    assert np.array_equal(second, np.asarray(expected))
