"""The procedural scene source: exact pairs, context bias, and folders that behave as generated ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from magicseg_hf.cli import main
from magicseg_hf.errors import InputError
from magicseg_hf.generation.config import GenerationConfig
from magicseg_hf.generation.procedural import (
    CONTEXT_NAMES,
    DEFAULT_CLASSES,
    KNOWN_CLASSES,
    ProceduralEngine,
    draw_scene,
    own_context,
    procedural_rows,
)

CLASSES = list(DEFAULT_CLASSES)


def _pixels(row: dict, key: str) -> np.ndarray:
    return np.array(row[key])


def test_rows_are_exact_pixel_aligned_pairs_with_every_column():
    rows = procedural_rows(CLASSES, 24, seed=3, size=64, max_classes=3)
    for row in rows:
        image, counterfactual, label = (_pixels(row, k) for k in ("image", "counterfactual_image", "label"))
        assert image.shape == counterfactual.shape == (64, 64, 3) and label.shape == (64, 64)
        changed = (image != counterfactual).any(axis=-1)
        assert not (changed & (label == 0)).any(), "outside the objects the counterfactual is the same picture"
        assert changed[label > 0].mean() > 0.95, "the objects are gone from the counterfactual"
        count = len(row["classes"])
        assert 1 <= count <= 3 and set(row["classes"]) <= set(CLASSES)
        assert set(np.unique(label)) == {0, *range(1, count + 1)}, "every class visible, nothing else labelled"
        for box, class_index in zip(row["boxes"], row["box_labels"]):
            ys, xs = np.nonzero(label == class_index + 1)
            assert box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert row["box_scores"] == [1.0] * count and row["class_scores"] == [1.0] * count
        assert row["counterfactual_score"] == 0.0 and row["seed"] == row["counterfactual_seed"]
        for name in row["classes"]:
            assert re.search(rf"\b{name}\b", row["prompt"]) and not re.search(rf"\b{name}\b", row["counterfactual_prompt"])
        assert row["prompt"].endswith(" on " + row["counterfactual_prompt"])
    assert len({row["id"] for row in rows}) == len(rows)
    assert max(len(row["classes"]) for row in rows) == 3


def test_rows_are_deterministic_by_seed():
    first = procedural_rows(CLASSES, 6, seed=5, size=48)
    again = procedural_rows(CLASSES, 6, seed=5, size=48)
    other = procedural_rows(CLASSES, 6, seed=6, size=48)
    for a, b in zip(first, again):
        assert a["id"] == b["id"] and a["prompt"] == b["prompt"]
        assert np.array_equal(_pixels(a, "image"), _pixels(b, "image"))
        assert np.array_equal(_pixels(a, "label"), _pixels(b, "label"))
    assert not all(np.array_equal(_pixels(a, "image"), _pixels(c, "image")) for a, c in zip(first, other))


def test_objects_occlude_each_other_and_stay_visible():
    hidden = 0
    for seed in range(40):
        scene = draw_scene(["house", "tree", "car"], seed, size=64)
        areas = [int((scene.label == i).sum()) for i in (1, 2, 3)]
        assert min(areas) > 0
        # Drawn alone, an object covers more than its visible part when a later one hides some of it.
        alone = draw_scene(["house"], seed, size=64)
        hidden += int((alone.label == 1).sum() != areas[0])
    assert hidden > 0, "some scenes have occlusion"


def test_context_bias_ties_each_class_to_its_own_context():
    names = ["sun", "car", "ball"]
    tied = [draw_scene(names, seed, size=32, context_bias=1.0).contexts for seed in range(30)]
    assert all(contexts == [own_context(n) for n in names] for contexts in tied)
    free = [draw_scene(names, seed, size=32, context_bias=0.0).contexts for seed in range(200)]
    own_rate = np.mean([c == own_context(n) for contexts in free for c, n in zip(contexts, names)])
    assert abs(own_rate - 1 / len(CONTEXT_NAMES)) < 0.06, f"P=0: context independent of class ({own_rate:.2f})"
    half = [draw_scene(names, seed, size=32, context_bias=0.5).contexts for seed in range(200)]
    half_rate = np.mean([c == own_context(n) for contexts in half for c, n in zip(contexts, names)])
    assert 0.45 < half_rate < 0.65
    # The context is in the pixels: the same seed with P=1 and P=0 paints other patches under the objects.
    a, b = draw_scene(names, 7, size=32, context_bias=1.0), draw_scene(names, 7, size=32, context_bias=0.0)
    assert a.contexts != b.contexts and not np.array_equal(a.counterfactual, b.counterfactual)


def test_any_class_name_is_drawn_and_known_ones_have_their_own_look():
    rows = procedural_rows(["zebra crossing", "bow (weapon)", "sun"], 8, seed=1, size=48)
    assert {c for row in rows for c in row["classes"]} == {"zebra crossing", "bow (weapon)", "sun"}
    assert "bow (weapon)" not in " ".join(row["prompt"] for row in rows)  # bare names in text
    assert len(KNOWN_CLASSES) >= 7
    for name in KNOWN_CLASSES:  # each known class has its own dominant colour
        scene = draw_scene([name], 0, size=64)
        assert (scene.label == 1).sum() > 64


def _folder_rows(folder: Path) -> list[dict]:
    from datasets import load_dataset

    return list(load_dataset(str(folder), split="train"))


def test_generate_source_procedural_writes_a_valid_folder_of_those_rows(tmp_path: Path, capsys):
    out = tmp_path / "shapes"
    args = ["generate", "--source", "procedural", "--classes", *CLASSES, "--num-pairs", "20", "--seed", "4",
            "--height", "64", "--width", "64", "--shard-size", "8", "--output-dir", str(out)]
    assert main(args) == 0
    assert main(["validate", str(out)]) == 0
    rows = _folder_rows(out)
    expected = procedural_rows(CLASSES, 20, seed=4, size=64)
    assert [r["id"] for r in rows] == [r["id"] for r in expected]
    for got, want in zip(rows, expected):
        for key in ("classes", "prompt", "counterfactual_prompt", "seed", "box_labels"):
            assert got[key] == want[key]
        for key in ("image", "counterfactual_image", "label"):
            assert np.array_equal(np.array(got[key]), np.array(want[key]))
    generation = json.loads((out / "generation.json").read_text())
    assert generation["config"]["source"] == "procedural" and generation["models"] == {}
    assert generation["diffusion"]["family"] == "procedural"
    assert (out / "README.md").is_file() and (out / "preview.png").is_file()


def test_procedural_default_size_and_context_bias_in_the_config():
    config = GenerationConfig(source="procedural", classes=["sun"], context_bias=0.3).resolved()
    assert (config.height, config.width) == (64, 64)
    assert config.resolved() == config and config.unresolved().resolved() == config
    assert ProceduralEngine(config, ["sun"]).run_attempts([*ProceduralEngine(config, ["sun"]).make_attempts([0])])[0]


def test_an_interrupted_run_resumes_to_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from magicseg_hf.generation.pipeline import generate

    config = GenerationConfig(source="procedural", classes=CLASSES, num_pairs=30, seed=2, height=48, width=48,
                              shard_size=6, batch_size=3, context_bias=0.5)
    straight = tmp_path / "straight"
    generate(config, straight)

    calls = {"n": 0}
    original = ProceduralEngine.run_attempts

    def dies_after_four_batches(self, attempts):
        calls["n"] += 1
        if calls["n"] > 4:
            raise KeyboardInterrupt  # as a kill would stop it: mid-shard, two shards written
        return original(self, attempts)

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(ProceduralEngine, "run_attempts", dies_after_four_batches)
    with pytest.raises(KeyboardInterrupt):
        generate(config, resumed)
    assert (resumed / ".work").is_dir() and not (resumed / "data").exists()
    monkeypatch.setattr(ProceduralEngine, "run_attempts", original)
    with pytest.raises(InputError, match="`resume`"):
        generate(config, resumed)
    generate(config, resumed, resume=True)
    a, b = _folder_rows(straight), _folder_rows(resumed)
    assert [r["id"] for r in a] == [r["id"] for r in b]
    assert all(np.array_equal(np.array(x["image"]), np.array(y["image"])) for x, y in zip(a, b))
    assert all(x["prompt"] == y["prompt"] and x["classes"] == y["classes"] for x, y in zip(a, b))


@pytest.mark.parametrize("flags, message", [
    (["--source", "procedural", "--context-bias", "1.5"], "--context-bias must be a probability"),
    (["--context-bias", "0.5"], "--context-bias applies to --source procedural"),
    (["--source", "procedural", "--height", "16", "--width", "16"], "at least 32"),
    (["--source", "procedural", "--height", "64", "--width", "128"], "square"),
    (["--source", "pictures"], "invalid choice"),
])
def test_bad_procedural_settings_are_one_line_and_exit_2(flags, message, tmp_path: Path, capsys):
    out = tmp_path / "out"
    try:
        status = main(["generate", "--classes", "sun", "--num-pairs", "2", "--output-dir", str(out), *flags])
    except SystemExit as exit_:  # argparse's own refusals
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
