"""The class check: masked crops, CLIP class scores, the ``class_score`` filter, and the column.

The crops are checked through a CLIP whose image tower is hand-built (the embedding of a crop is
its mean normalised colour), so a crop that leaks another class's pixels or the background scores
visibly lower. The scorer's CLIP in the generation tests is the tiny random ``tiny:clip``: its scores
prove the plumbing (one batched forward, cached text, the filter, the column), not that the check
recognises classes on real images.
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from helpers import DEFAULT_CLASSES, comparable, make_rows, write_dataset_folder
from PIL import Image

from magicseg_hf.cards import write_dataset_card
from magicseg_hf.cli import main
from magicseg_hf.folder import DatasetFolder
from magicseg_hf.generation import GenerationConfig, generate
from magicseg_hf.generation.class_scores import ClassScorer, fails_class_check, masked_crop
from magicseg_hf.loading import load_clip_scorer
from magicseg_hf.schema import CARD_FILE, DATASET_FEATURES, GENERATION_FILE, folder_features
from magicseg_hf.training.data import load_training_data
from magicseg_hf.validate import validate_dataset_folder

RED, GREEN, BLUE = (230, 20, 20), (20, 230, 20), (20, 20, 230)


def _picture() -> tuple[Image.Image, np.ndarray]:
    """A 64 x 48 blue picture: class 1 a red L shape, class 2 a green square inside the L's
    bounding box (so a crop that ignored the mask would hold green and blue), class 3 absent."""
    pixels = np.empty((48, 64, 3), dtype=np.uint8)
    pixels[:] = BLUE
    label = np.zeros((48, 64), dtype=np.uint8)
    label[6:40, 8:16] = 1  # the L's upright: 34 x 8
    label[32:40, 16:44] = 1  # its foot: the bounding box is rows 6..39, columns 8..43 (34 x 36)
    label[10:26, 22:38] = 2  # a green square inside that box
    pixels[label == 1] = RED
    pixels[label == 2] = GREEN
    return Image.fromarray(pixels, "RGB"), label


# ----------------------------------------------------------------------------------------------
# The crop
# ----------------------------------------------------------------------------------------------
def test_masked_crop_holds_only_its_class_on_the_fill():
    image, label = _picture()
    fill = (122, 116, 104)
    crop = np.asarray(masked_crop(image, label, 1, fill))
    assert crop.shape == (36, 36, 3)  # the 34 x 36 bounding box, padded to a square
    colours = {tuple(c) for c in crop.reshape(-1, 3).tolist()}
    assert colours == {RED, fill}  # no green, no blue: every non-class pixel is the fill
    assert (crop == RED).all(axis=-1).sum() == (label == 1).sum()  # every class pixel is there
    # centred: one padding row above, one below
    assert (crop[0] == fill).all() and (crop[-1] == fill).all() and (crop[1, 0] == RED).all()

    square = np.asarray(masked_crop(image, label, 2, fill))
    assert square.shape == (16, 16, 3) and (square == GREEN).all()
    assert masked_crop(image, label, 3, fill) is None  # no pixel: no crop
    with pytest.raises(ValueError, match="does not fit"):
        masked_crop(image, label[:, :40], 1, fill)


class _ColourCLIP(torch.nn.Module):
    """A CLIP stand-in with a hand-built image tower: a crop's embedding is its mean normalised
    colour (the fill normalises to ~0, so it adds nothing); a name's embedding is the normalised
    colour it names. Cosine 1 means the crop holds only the named colour."""

    COLOURS = {"red": RED, "green": GREEN, "blue": BLUE}

    def __init__(self, processor) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        mean = torch.tensor(processor.image_processor.image_mean)
        std = torch.tensor(processor.image_processor.image_std)
        self.text = {name: (torch.tensor(c) / 255 - mean) / std for name, c in self.COLOURS.items()}
        self.tokenizer = processor.tokenizer
        self.image_calls = self.text_calls = 0

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        self.image_calls += 1
        return pixel_values.mean(dim=(2, 3))  # (N, 3, S, S) -> (N, 3)

    def get_text_features(self, input_ids: torch.Tensor, **_: object) -> torch.Tensor:
        self.text_calls += 1
        words = re.findall(r"[a-z]+", self.tokenizer.decode(input_ids[0], skip_special_tokens=True))
        return torch.stack([vector for name, vector in self.text.items() if name in words])  # (1, 3)


@pytest.fixture(scope="module")
def tiny_clip():
    return load_clip_scorer("tiny:clip")


def test_scores_see_the_masked_crop_of_each_class(tiny_clip):
    _, processor = tiny_clip
    model = _ColourCLIP(processor)
    scorer = ClassScorer(model, processor, device="cpu")
    image, label = _picture()
    [scores] = scorer.score([image], [label], [["red", "green", "blue"]])
    assert scores[0] > 0.99 and scores[1] > 0.99  # each crop holds its own colour only
    assert math.isnan(scores[2])  # class 3 has no pixel
    [wrong] = scorer.score([image], [label], [["green", "red"]])
    assert wrong[0] < 0.5 and wrong[1] < 0.5  # the names swapped: the crops do not match them
    # Without the mask (the bounding box as it is), class 1's crop would be mostly blue and green:
    unmasked = ClassScorer(model, processor, device="cpu")
    unmasked.crops = lambda image, label, n: [image.crop((8, 6, 44, 40)), None, None]
    assert unmasked.score([image], [label], [["red", "green", "blue"]])[0][0] < 0.9


def test_one_image_forward_per_batch_and_text_cached(tiny_clip):
    _, processor = tiny_clip
    model = _ColourCLIP(processor)
    scorer = ClassScorer(model, processor, device="cpu")
    image, label = _picture()
    scorer.score([image, image], [label, label], [["red", "green"], ["green", "red", "blue"]])
    assert model.image_calls == 1  # four crops, one forward
    assert model.text_calls == 2  # red, green: one forward each; "blue" (class 3) has no crop, no text
    scorer.score([image], [label], [["red", "blue"]])
    assert model.image_calls == 2 and model.text_calls == 3  # only "blue" is new
    scorer.score([image], [label], [["green", "red"]])
    assert model.image_calls == 3 and model.text_calls == 3


def test_batched_scores_equal_one_at_a_time(tiny_clip):
    """Random tiny CLIP: the numbers mean nothing, but a batch must not change them."""
    model, processor = tiny_clip
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), "RGB") for _ in range(2)]
    labels = [np.zeros((40, 56), dtype=np.uint8) for _ in range(2)]
    labels[0][5:30, 3:20] = 1
    labels[0][10:35, 30:50] = 2
    labels[1][0:20, 0:56] = 2  # class 1 absent
    names = [["cat", "dog"], ["traffic light", "bow"]]
    batched = ClassScorer(model, processor, device="cpu").score(images, labels, names)
    alone = [ClassScorer(model, processor, device="cpu").score([i], [lab], [n])[0]
             for i, lab, n in zip(images, labels, names)]
    assert math.isnan(batched[1][0]) and math.isnan(alone[1][0])
    np.testing.assert_allclose(np.array(batched, dtype=float), np.array(alone, dtype=float), atol=1e-5)
    assert all(-1.0 <= s <= 1.0 for row in batched for s in row if not math.isnan(s))
    assert batched[0][0] != batched[0][1]  # the crops differ, and so do their scores


def test_fails_class_check():
    assert fails_class_check([0.1, 0.3], 0.2)
    assert not fails_class_check([0.25, float("nan")], 0.2)  # NaN: a class with no pixel is not judged
    assert not fails_class_check([-1.0, -0.9], -1.0)  # -1: the check is off
    assert not fails_class_check([0.2], 0.2)  # at the threshold is kept


# ----------------------------------------------------------------------------------------------
# The run: the filter, the column, the count
# ----------------------------------------------------------------------------------------------
def _config(threshold: float) -> GenerationConfig:
    return GenerationConfig(classes=["cat", "dog", "traffic light"], preset="tiny", num_pairs=6, max_attempts=6,
                            batch_size=2, shard_size=4, seed=3, class_score_threshold=threshold)


def _rows(folder: Path) -> list[dict]:
    return [comparable(row) for path in sorted((folder / "data").glob("train-*.parquet"))
            for row in pq.read_table(path).to_pylist()]


def test_threshold_drops_exactly_the_rows_below_it(tmp_path):
    """Random tiny CLIP: a threshold is picked between the recorded scores, to check the filter."""
    everything = tmp_path / "all"
    generate(_config(-1.0), everything)
    rows = _rows(everything)
    assert len(rows) == 6  # the check off: nothing dropped for it
    for row in rows:
        label = np.asarray(Image.open(io.BytesIO(row["label"]["bytes"])))
        assert len(row["class_scores"]) == len(row["classes"])
        for position, score in enumerate(row["class_scores"]):
            assert (score == "nan") == (not (label == position + 1).any())
    lowest = sorted(min(s for s in row["class_scores"] if s != "nan") for row in rows)
    assert lowest[1] < lowest[2], "the random CLIP gave equal scores; pick other classes or seed"
    threshold = (lowest[1] + lowest[2]) / 2  # two rows fall below it

    filtered = tmp_path / "filtered"
    summary = generate(_config(threshold), filtered)
    kept = [row for row in rows if not fails_class_check(
        [math.nan if s == "nan" else s for s in row["class_scores"]], threshold)]
    assert len(kept) == 4
    assert _rows(filtered) == kept  # the same rows, bit for bit, minus the two below the threshold
    assert summary.dropped["class_score"] == 2
    saved = json.loads((filtered / GENERATION_FILE).read_text())
    assert saved["summary"]["dropped"]["class_score"] == 2
    assert list(summary.dropped)[:5] == ["blank_image", "no_detection", "mask_area", "class_score", "counterfactual"]
    card = (filtered / CARD_FILE).read_text()
    assert "| dropped: a labelled class's masked crop scores below the CLIP threshold | 2 |" in card
    assert "`class_scores` below" in card
    report = validate_dataset_folder(filtered)
    assert report.ok, report.summary()


# ----------------------------------------------------------------------------------------------
# Validation, old folders
# ----------------------------------------------------------------------------------------------
def test_validate_checks_class_scores_against_the_label(tmp_path):
    rows = make_rows(4, DEFAULT_CLASSES)
    rows[0]["class_scores"] = rows[0]["class_scores"] + [0.5]  # one too many
    assert not any(math.isnan(s) for s in rows[1]["class_scores"])
    rows[1]["class_scores"] = [math.nan] + rows[1]["class_scores"][1:]  # class 1 has pixels
    label = np.asarray(rows[2]["label"]).copy()
    label[label == 1] = 0  # class 1 erased from the label, its score left a number
    rows[2]["label"] = Image.fromarray(label, "L")
    rows[3]["class_scores"] = [1.5] + rows[3]["class_scores"][1:]
    folder = write_dataset_folder(tmp_path / "bad", rows=rows)
    report = validate_dataset_folder(folder, check_loading=False)
    text = report.summary()
    assert "row 0: 2 class_scores for 1 class(es)" in text
    assert "row 1: class_scores[0] is NaN, but class 1 has pixels in the label" in text
    assert "row 2: class_scores[0] is" in text and "has no pixel in the label (expected NaN)" in text
    assert "class_scores[0] is 1.5, outside [-1, 1]" in text
    assert report.num_problems == 4


def _old_folder(path: Path) -> Path:
    """A folder as written before the class_scores column: old shards, and a card made for them."""
    rows = make_rows(5, DEFAULT_CLASSES)
    write_dataset_folder(path, rows=rows, rows_per_shard=3, card=False)
    old = folder_features([c for c in DATASET_FEATURES if c != "class_scores"])
    for index, shard in enumerate(DatasetFolder(path).shard_paths()):
        chunk = [{k: v for k, v in row.items() if k != "class_scores"} for row in rows[3 * index:3 * index + 3]]
        shard.unlink()  # a new file, not a rewrite in place
        datasets.Dataset.from_list(chunk, features=old).to_parquet(str(shard))
    write_dataset_card(path)
    return path


def test_an_old_folder_without_the_column_stays_valid_and_readable(tmp_path, capsys):
    folder = _old_folder(tmp_path / "old")
    report = validate_dataset_folder(folder)
    assert report.ok, report.summary()
    assert any("class_scores" in note and "predates" in note for note in report.notes)
    assert main(["validate", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "note:" in out and "predates" in out and "INVALID" not in out

    ds = datasets.load_dataset(str(folder), split="train")
    assert "class_scores" not in ds.features and len(ds) == 5
    assert ds.features == folder_features([c for c in DATASET_FEATURES if c != "class_scores"])
    data = load_training_data([str(folder)], validation_size=0)
    assert len(data.train) == 5
    stats = DatasetFolder(folder).stats()
    assert stats.mean_class_score is None and "class_scores" not in stats.columns
    card = (folder / CARD_FILE).read_text()
    assert "This folder predates the `class_scores` column." in card
    assert "| `class_scores` |" not in card


def test_a_folder_with_the_column_reports_it(tmp_path):
    folder = write_dataset_folder(tmp_path / "new")
    report = validate_dataset_folder(folder)
    assert report.ok and not report.notes, report.summary()
    stats = DatasetFolder(folder).stats()
    scores = [s for row in make_rows(5, DEFAULT_CLASSES) for s in row["class_scores"] if not math.isnan(s)]
    assert stats.mean_class_score == pytest.approx(float(np.mean(np.float32(scores))), rel=1e-5)
    card = (folder / CARD_FILE).read_text()
    assert "| `class_scores` |" in card and "mean of the `class_scores` 0." in card
    assert "predates" not in card
