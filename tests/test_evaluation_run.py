"""`magicseg evaluate` on a tiny model against tiny folders in the benchmarks' real layouts, and its inference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from test_evaluation_benchmarks import make_context, make_voc, save_grey_png, save_jpeg, write_folder

from magicseg_hf.cli import main
from magicseg_hf.evaluation.benchmarks import benchmark_classes, load_benchmark
from magicseg_hf.evaluation.inference import (
    BenchmarkPredictor,
    class_queries,
    labels_from_logits,
    sliding_window_logits,
    synonym_embeddings,
)
from magicseg_hf.evaluation.metric import compute_mean_iou
from magicseg_hf.evaluation.protocols import get_protocol
from magicseg_hf.evaluation.run import card_results_name, display_labels
from magicseg_hf.loading import build_open_seg, load_open_seg

#: A small harness for the tiny model (8 px patches): sclip's rule at a tiny size.
TINY_PROTOCOL = ["--protocol", "sclip", "--short-side", "48", "--window", "32", "--stride", "16"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny CLIPForOpenSegmentation folder (random weights) with its processor."""
    folder = tmp_path_factory.mktemp("model")
    model, processor = build_open_seg("tiny")
    model.set_vocabulary(["cat", "dog"])
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def make_coco(root: Path) -> None:
    """``root/coco_stuff164k`` with two val2017 images and mmseg's converted train-id maps."""
    coco = root / "coco_stuff164k"
    for index, image_id in enumerate(("000000000139", "000000000285")):
        save_jpeg(coco / "images" / "val2017" / f"{image_id}.jpg", 10, 14, seed=index)
        label = np.full((10, 14), 100, dtype=np.uint8)  # stuff -> background
        label[2:8, 3:9] = 16 + index  # train ids 16, 17 -> COCO-Object 17 (dog), 18 (horse)
        label[0, 0] = 255
        save_grey_png(coco / "annotations" / "val2017" / f"{image_id}_labelTrainIds.png", label)


def make_dataset_folder(root: Path) -> Path:
    labels = [np.array([[0, 1, 1, 2]] * 6, dtype=np.uint8), np.array([[1, 1, 0, 255]] * 5, dtype=np.uint8)]
    write_folder(root / "ds", ["cat", "dog", "bow (weapon)"], [("a", ["dog", "cat"], labels[0]), ("b", ["cat"], labels[1])])
    return root / "ds"


def evaluate(model_dir: Path, output: Path, *argv: str) -> int:
    return main(["evaluate", "--model", str(model_dir), "--output", str(output), *argv])


# ----------------------------------------------------------------------------------------------
# End to end
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["voc21", "context60", "context59", "coco-object", "DIR"])
def test_results_file_of_each_benchmark(model_dir: Path, tmp_path: Path, name: str):
    data = tmp_path / "data"
    if name == "voc21":
        make_voc(data)
    elif name in ("context60", "context59"):
        make_context(data)
    elif name == "coco-object":
        make_coco(data)
    benchmark_arg = str(make_dataset_folder(data)) if name == "DIR" else name
    output = tmp_path / "out" / "results.json"
    assert evaluate(model_dir, output, "--benchmark", benchmark_arg, "--data-dir", str(data), *TINY_PROTOCOL) == 0
    results = json.loads(output.read_text())
    benchmark = load_benchmark(benchmark_arg, data_dir=data)

    assert results["complete"] is True and results["num_images"] == len(benchmark) == 2
    assert results["benchmark"] == benchmark.name and results["split"] == benchmark.split
    assert [row["name"] for row in results["per_class"]] == list(benchmark.class_names)
    assert [row["id"] for row in results["per_class"]] == list(range(benchmark.num_labels))
    protocol = results["protocol"]
    assert (protocol["name"], protocol["short_side"], protocol["window"], protocol["stride"]) == ("sclip", 48, 32, 16)
    assert (protocol["background"], protocol["threshold"]) == ("threshold", 0.1)
    assert protocol["overrides"] == {"short_side": 48, "window": 32, "stride": 16}
    assert results["model"]["id"] == str(model_dir) and "torch" in results["package_versions"]
    assert results["wall_time_seconds"] > 0 and results["images_per_second"] > 0
    assert 0.0 <= results["mean_iou"] <= 1.0

    # The same predictions, recomputed here, give the same metric.
    model, processor = load_open_seg(str(model_dir))
    predictor = BenchmarkPredictor.for_benchmark(model, processor, benchmark, get_protocol("sclip").with_overrides(
        short_side=48, window=32, stride=16))
    pairs = [(prediction, sample.label) for sample, prediction in predictor.predict(benchmark)]
    expected = compute_mean_iou(
        [p for p, _ in pairs], [r for _, r in pairs], benchmark.num_labels, benchmark.ignore_index
    )
    assert results["mean_iou"] == pytest.approx(float(expected["mean_iou"]), abs=1e-12)
    assert results["overall_accuracy"] == pytest.approx(float(expected["overall_accuracy"]), abs=1e-12)
    for row, iou in zip(results["per_class"], expected["per_category_iou"]):
        assert (row["iou"] is None) == bool(np.isnan(iou))
    labelled = sum(int((r != benchmark.ignore_index).sum()) for _, r in pairs)
    assert sum(row["labelled_pixels"] for row in results["per_class"]) == labelled

    # Background rule: with a background class it is not queried by threshold; context59 takes the argmax.
    queries = results["queries"]
    if benchmark.has_background:
        assert queries["label_ids"] == list(range(1, benchmark.num_labels)) and queries["background_id"] == 0
        assert "background" not in queries["names"]
    else:
        assert queries["label_ids"] == list(range(59)) and queries["background_id"] is None
        assert queries["threshold"] is None


def test_overlays_refine_and_card(model_dir: Path, tmp_path: Path):
    make_voc(tmp_path / "data")
    output = tmp_path / "out" / "voc.json"
    argv = ["--benchmark", "voc21", "--data-dir", str(tmp_path / "data"), *TINY_PROTOCOL]
    assert evaluate(model_dir, output, *argv, "--refine", "pamr", "--overlays", "1", "--update-card") == 0
    results = json.loads(output.read_text())
    assert results["refine"] == "pamr"

    # One overlay picture beside the results file: image | ground truth | prediction | legend.
    (overlay,) = sorted(output.parent.glob("*.png"))
    assert overlay.name == "voc-overlay-000-2007_000032.png" and results["overlays"] == [overlay.name]
    with Image.open(overlay) as picture:
        assert picture.mode == "RGB" and picture.width > 3 * picture.height // 2

    # The model folder keeps the result and its card indexes it.
    stored = model_dir / card_results_name(results)
    assert stored.name.startswith("results-voc21-sclip-pamr-") and json.loads(stored.read_text()) == results
    card = (model_dir / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    (entry,) = metadata["model-index"][0]["results"]
    assert entry["dataset"]["config"] == "voc21" and entry["dataset"]["split"] == "val"
    (metric,) = entry["metrics"]
    assert metric["type"] == "mean_iou" and metric["value"] == pytest.approx(results["mean_iou"])
    assert metric["config"] == "sclip" and metric["args"]["window"] == 32
    stored.unlink()


def test_card_results_name():
    base = {"benchmark": "voc21", "refine": None, "protocol": {"name": "zegclip", "overrides": {}}}
    assert card_results_name(base) == "results-voc21-zegclip.json"
    folder = {**base, "benchmark": "/data/my set", "refine": "pamr"}
    assert card_results_name(folder) == "results-my_set-zegclip-pamr.json"
    changed = {**base, "protocol": {"name": "zegclip", "overrides": {"stride": 256}}}
    assert card_results_name(changed) != card_results_name(base)


# ----------------------------------------------------------------------------------------------
# Protocol values reach the sliding windows
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def forward_batches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Records the pixel_values shape of every model forward in `magicseg evaluate`."""
    import magicseg_hf.loading

    shapes: list[tuple[int, ...]] = []
    original = magicseg_hf.loading.load_open_seg

    def load_and_watch(*args, **kwargs):
        model, processor = original(*args, **kwargs)
        model.register_forward_pre_hook(
            lambda module, args, kwargs: shapes.append(tuple(kwargs["pixel_values"].shape)), with_kwargs=True
        )
        return model, processor

    monkeypatch.setattr(magicseg_hf.loading, "load_open_seg", load_and_watch)
    return shapes


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        # 12x16 -> 48x64: 2 x 3 windows of 32 every 16; 10x14 -> 48x67: 2 x 4. 14 windows, 4 per forward.
        (["--window", "32", "--stride", "16", "--batch-size", "4"], [4, 4, 4, 2]),
        (["--window", "32", "--stride", "16", "--batch-size", "1"], [1] * 14),
        # Stride 32: 2 x 2 and 2 x 3 windows = 10 in one forward.
        (["--window", "32", "--stride", "32", "--batch-size", "16"], [10]),
        # Window 48 stride 48: 1 x 2 each = 4.
        (["--window", "48", "--stride", "48", "--batch-size", "16"], [4]),
        # Short side 24: 24x32 (one 32-window, padded) and 24x34 (two) = 3.
        (["--short-side", "24", "--window", "32", "--stride", "16"], [3]),
    ],
)
def test_protocol_values_set_the_windows(
    model_dir: Path, tmp_path: Path, forward_batches: list, flags: list[str], expected: list[int]
):
    make_voc(tmp_path / "data")
    argv = ["--benchmark", "voc21", "--data-dir", str(tmp_path / "data"), "--protocol", "sclip", "--short-side", "48"]
    assert evaluate(model_dir, tmp_path / "r.json", *argv, *flags) == 0
    assert [shape[0] for shape in forward_batches] == expected
    window = int(flags[flags.index("--window") + 1])
    assert {shape[1:] for shape in forward_batches} == {(3, window, window)}
    protocol = json.loads((tmp_path / "r.json").read_text())["protocol"]
    assert protocol["window"] == window


def test_window_count_matches_the_protocol_grid(model_dir: Path, forward_batches: list):
    protocol = get_protocol("sclip").with_overrides(short_side=40, window=24, stride=8)
    sizes = [(30, 50), (50, 30), (20, 20), (41, 97)]
    expected = sum(protocol.num_windows(*protocol.resized_size(h, w)) for h, w in sizes)
    model, processor = load_open_seg(str(model_dir))
    calls = []
    model.register_forward_pre_hook(lambda m, a, k: calls.append(k["pixel_values"].shape[0]), with_kwargs=True)
    samples = [
        SimpleNamespace(image_id=str(i), image=Image.new("RGB", (w, h), (i * 40, 90, 200)), label=np.zeros((h, w), np.uint8))
        for i, (h, w) in enumerate(sizes)
    ]
    benchmark = SimpleNamespace(class_synonyms=(("background",), ("cat", "kitten")), has_background=True)
    predictor = BenchmarkPredictor.for_benchmark(model, processor, benchmark, protocol, batch_size=5)
    predictions = [prediction for _, prediction in predictor.predict(samples)]
    # 30x50 -> 40x67: 3 x 7 windows; 50x30 -> 67x40: 7 x 3; 20x20 -> 40x40: 3 x 3; 41x97 -> 40x95: 3 x 10.
    assert sum(calls) == expected == 21 + 21 + 9 + 30
    assert calls == [5] * (expected // 5) + ([expected % 5] if expected % 5 else [])
    assert [p.shape for p in predictions] == sizes and all(p.dtype == np.int64 for p in predictions)


# ----------------------------------------------------------------------------------------------
# Inference pieces
# ----------------------------------------------------------------------------------------------
class EchoModel(torch.nn.Module):
    """Returns each window's first channel as the logits of its one query (to check placement)."""

    def forward(self, pixel_values: torch.Tensor, class_embeds: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=pixel_values[:, :1] * class_embeds.shape[0])


def test_windows_of_several_images_are_put_back_in_place():
    images = [torch.arange(h * w, dtype=torch.float32).view(1, h, w).expand(3, h, w) + 1 for h, w in ((5, 9), (4, 4), (8, 7))]
    stream = sliding_window_logits(EchoModel(), enumerate(images), torch.ones(1, 4), window=4, stride=3, batch_size=3)
    out = list(stream)
    assert [key for key, _ in out] == [0, 1, 2]
    for (_, logits), image in zip(out, images):
        torch.testing.assert_close(logits, image[:1])  # every overlap averages identical values


def test_overlapping_windows_are_averaged():
    class WindowIndex(torch.nn.Module):
        """Each window's logits are its position in the batch stream (0, 1, 2, ...)."""

        seen = 0

        def forward(self, pixel_values, class_embeds):
            n = pixel_values.shape[0]
            values = torch.arange(self.seen, self.seen + n, dtype=torch.float32).view(n, 1, 1, 1)
            self.seen += n
            return SimpleNamespace(logits=values.expand(n, 1, *pixel_values.shape[-2:]))

    image = torch.zeros(3, 4, 6)  # windows 4 wide every 2: columns 0-3 (window 0), 2-5 (window 1)
    ((_, logits),) = list(sliding_window_logits(WindowIndex(), [("x", image)], torch.ones(1, 2), 4, 2, batch_size=2))
    expected = torch.tensor([0.0, 0.0, 0.5, 0.5, 1.0, 1.0]).expand(1, 4, 6)
    torch.testing.assert_close(logits, expected)


def test_batched_windows_equal_one_window_at_a_time(model_dir: Path, tmp_path: Path):
    make_voc(tmp_path)
    benchmark = load_benchmark("voc21", data_dir=tmp_path)
    model, processor = load_open_seg(str(model_dir))
    protocol = get_protocol("sclip").with_overrides(short_side=48, window=32, stride=16)
    logits = {}
    for batch_size in (1, 16):
        predictor = BenchmarkPredictor.for_benchmark(model, processor, benchmark, protocol, batch_size=batch_size)
        logits[batch_size] = [out for _, _, out in predictor.predict_logits(benchmark)]
    for one, batched in zip(logits[1], logits[16]):
        torch.testing.assert_close(one, batched, atol=1e-4, rtol=1e-4)


def test_labels_from_logits_background_rules():
    # Three queries (labels 1, 2, 3) at four pixels; sigmoid(0) = 0.5, sigmoid(-3) ~ 0.047, sigmoid(2) ~ 0.88.
    logits = torch.tensor(
        [
            [[2.0, -3.0], [0.0, -5.0]],  # label 1
            [[1.0, -4.0], [-1.0, -2.5]],  # label 2
            [[0.0, -3.5], [-0.1, -6.0]],  # label 3
        ]
    )  # (Q=3, H=2, W=2)
    ids = [1, 2, 3]
    # Threshold 0.1: pixel (0, 1) best is label 1 at 0.047 -> background; (1, 1) best is label 2 at 0.076 -> background.
    assert labels_from_logits(logits, ids, background_id=0, threshold=0.1).tolist() == [[1, 0], [1, 0]]
    # Threshold 0.5 keeps only scores >= 0.5: (0, 0) at 0.88 and (1, 0) at exactly 0.5.
    assert labels_from_logits(logits, ids, background_id=0, threshold=0.5).tolist() == [[1, 0], [1, 0]]
    assert labels_from_logits(logits, ids, background_id=0, threshold=0.6).tolist() == [[1, 0], [0, 0]]
    # Plain argmax (no background class, or no threshold): every pixel takes its best query.
    assert labels_from_logits(logits, ids).tolist() == [[1, 1], [1, 2]]
    assert labels_from_logits(logits, [0, 1, 2], background_id=None, threshold=0.9).tolist() == [[0, 0], [0, 1]]


def test_queries_per_background_mode(model_dir: Path):
    model, _ = load_open_seg(str(model_dir))
    voc = benchmark_classes("voc21")
    by_threshold = class_queries(model, voc, has_background=True, background="threshold", threshold=0.1)
    assert by_threshold.label_ids == tuple(range(1, 21)) and by_threshold.names[0] == "aeroplane"
    assert (by_threshold.background_id, by_threshold.threshold) == (0, 0.1)
    as_class = class_queries(model, voc, has_background=True, background="class", threshold=None)
    assert as_class.label_ids == tuple(range(21)) and as_class.names[0] == "background"
    assert as_class.background_id is None  # argmax over the queries, background included
    no_background = class_queries(model, benchmark_classes("context59"), has_background=False, background="threshold",
                                  threshold=0.1)
    assert no_background.label_ids == tuple(range(59)) and no_background.background_id is None
    assert no_background.embeds.shape == (59, model.config.projection_dim)


def test_synonyms_are_averaged_then_normalised(model_dir: Path):
    model, _ = load_open_seg(str(model_dir))
    embeds = synonym_embeddings(model, [("tv monitor", "television monitor"), ("cat",)])
    pair = model.encode_classes(["tv monitor", "television monitor"]).float()
    expected = torch.nn.functional.normalize(pair.mean(dim=0), dim=-1)
    torch.testing.assert_close(embeds[0], expected)
    torch.testing.assert_close(embeds[1], model.encode_classes(["cat"]).float()[0])
    assert not torch.allclose(embeds[0], pair[0])


def test_display_labels_for_pictures():
    truth, prediction, classes = display_labels(
        np.array([[0, 58, 255]]), np.array([[1, 0, 2]]), has_background=False, ignore_index=255,
        class_names=tuple(f"c{i}" for i in range(59)),
    )
    assert truth.tolist() == [[1, 59, 255]] and prediction.tolist() == [[2, 1, 3]] and classes[0] == "c0"
    names = ("background", *(f"c{i}" for i in range(300)))
    truth, prediction, classes = display_labels(
        np.array([[0, 300, 301]]), np.array([[299, 0, 5]]), has_background=True, ignore_index=301, class_names=names
    )
    assert truth.tolist() == [[0, 3, 255]] and prediction.tolist() == [[2, 0, 1]]
    assert classes == ["c4", "c298", "c299"]


# ----------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, no results file
# ----------------------------------------------------------------------------------------------
def _break_split_list(data: Path) -> None:
    (data / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000039.png").unlink()


def _resize_a_label(data: Path) -> None:
    path = data / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000039.png"
    Image.fromarray(np.zeros((10, 15), np.uint8), "P").save(path)


@pytest.mark.parametrize(
    ("argv", "damage", "message"),
    [
        (["--benchmark", "voc21", "--data-dir", "{tmp}/nowhere"], None, "does not exist or is not a folder"),
        (["--benchmark", "voc21", "--data-dir", "{data}"], _break_split_list, "names 2007_000039 but"),
        (["--benchmark", "voc21", "--data-dir", "{data}"], _resize_a_label, "is 15x10 but its image"),
        (["--benchmark", "ade20k", "--data-dir", "{data}"], None, "unknown benchmark 'ade20k'"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--protocol", "mmseg"], None, "unknown protocol 'mmseg' (expected one of zegclip, groupvit, sclip)"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--window", "30"], None, "multiple of the model's patch size 8"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--stride", "64"], None, "stride must not exceed window"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--batch-size", "0"], None, "--batch-size must be a positive"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--threshold", "2"], None, r"threshold must lie in [0, 1]"),
        (["--benchmark", "context60", "--data-dir", "{data}"], None, "no PASCAL Context (VOC 2010) layout"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--model", "org/model", "--update-card"], None,
         "--update-card needs a local model folder"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--model", "{tmp}/no-model"], None, "no such folder"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_results(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], damage, message: str
):
    data = tmp_path / "data"
    make_voc(data)
    if damage is not None:
        damage(data)
    output = tmp_path / "out" / "results.json"
    argv = [word.format(tmp=tmp_path, data=data) for word in argv]
    capsys.readouterr()
    assert evaluate(model_dir, output, *TINY_PROTOCOL, *argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("magicseg")]
    assert len(errors) == 1 and "error:" in errors[0] and message in errors[0], err
    assert "Traceback" not in err
    assert not output.exists()


def test_an_interrupted_run_writes_no_results(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from magicseg_hf.evaluation.metric import MeanIoUAccumulator

    make_voc(tmp_path / "data")
    original = MeanIoUAccumulator.update

    def update_then_stop(self, prediction, reference):
        if self.num_images == 1:
            raise KeyboardInterrupt
        original(self, prediction, reference)

    monkeypatch.setattr(MeanIoUAccumulator, "update", update_then_stop)
    output = tmp_path / "results.json"
    assert evaluate(model_dir, output, "--benchmark", "voc21", "--data-dir", str(tmp_path / "data"), *TINY_PROTOCOL) == 130
    assert not output.exists() and list(tmp_path.glob("*.json*")) == []


def test_help_does_not_import_torch():
    code = (
        "from magicseg_hf.cli import build_parser\n"
        "try:\n    build_parser(['evaluate', '--help']).parse_args(['evaluate', '--help'])\n"
        "except SystemExit:\n    pass\n"
        "import sys\nprint('MODULES', ' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: magicseg evaluate" in result.stdout and "--protocol zegclip|groupvit|sclip" in result.stdout
    loaded = set(result.stdout.splitlines()[-1].split()[1:])
    assert "magicseg_hf" in loaded
    assert not {"torch", "transformers", "datasets", "diffusers", "evaluate"} & loaded
