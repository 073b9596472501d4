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
from magicseg_hf.evaluation.inference import BenchmarkPredictor, class_queries
from magicseg_hf.evaluation.metric import compute_mean_iou
from magicseg_hf.evaluation.protocols import get_protocol
from magicseg_hf.evaluation.run import card_results_name, display_labels
from magicseg_hf.loading import build_open_seg, load_open_seg
from magicseg_hf.modeling import Decision, Queries

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
    assert (protocol["rule"], protocol["threshold"], protocol["class_names"]) == ("background-class", 0.5, "sclip")
    assert protocol["overrides"] == {"short_side": 48, "window": 32, "stride": 16}
    assert protocol["citations"]["window"].startswith("wangf3014/SCLIP@b56bd30:") and protocol["model_rule_note"]
    assert results["score_averaging"].startswith("sigmoid probabilities averaged")
    assert len(results["class_names_digest"]) == 64 and results["class_names_digest"] == results["queries"]["digest"]
    assert results["model"]["id"] == str(model_dir) and "torch" in results["package_versions"]
    assert results["wall_time_seconds"] > 0 and results["images_per_second"] > 0
    assert 0.0 <= results["mean_iou"] <= 1.0

    # The same predictions, recomputed here, give the same metric.
    model, processor = load_open_seg(str(model_dir))
    key = "folder" if name == "DIR" else name
    predictor = BenchmarkPredictor.for_benchmark(model, processor, benchmark, get_protocol("sclip", key).with_overrides(
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

    # Background rule: SCLIP's background texts are queried (its stuff words on VOC and COCO-Object, "background"
    # on Context60); context59 takes the argmax.
    queries = results["queries"]
    if benchmark.has_background:
        assert queries["label_ids"] == list(range(1, benchmark.num_labels)) and queries["background_id"] == 0
        assert "background" not in queries["names"] and results["decision"]["rule"] == "background-class"
        expected_background = {"voc21": 26, "coco-object": 26, "context60": 1, "DIR": 1}[name]
        assert len(queries["background_texts"]) == expected_background
    else:
        assert queries["label_ids"] == list(range(59)) and queries["background_id"] is None
        assert results["decision"] == {"rule": "argmax", "threshold": None, "area_threshold": None}
    if name == "voc21":
        assert results["decision"]["area_threshold"] == 0.1 and queries["names"][3] == "ship"
    if name == "coco-object":
        # COCO-Stuff's unlabeled pixel (255) is background and scored, as the reference harnesses score it.
        assert results["unlabeled"] == "background"
        assert labelled == 2 * 10 * 14 and benchmark.ignore_index not in np.concatenate([r.ravel() for _, r in pairs])


def test_overlays_refine_and_card(model_dir: Path, tmp_path: Path):
    make_voc(tmp_path / "data")
    output = tmp_path / "out" / "voc.json"
    argv = ["--benchmark", "voc21", "--data-dir", str(tmp_path / "data"), *TINY_PROTOCOL]
    assert evaluate(model_dir, output, *argv, "--refine", "pamr", "--overlays", "1", "--update-card") == 0
    results = json.loads(output.read_text())
    assert results["refine"] == "pamr"

    # One overlay picture beside the results file: image | ground truth | prediction | legend; and the
    # prediction itself as a label PNG.
    (overlay,) = sorted(output.parent.glob("*-overlay-*.png"))
    (label_png,) = sorted(output.parent.glob("*-prediction-*.png"))
    assert label_png.name == "voc-prediction-000-2007_000032.png"
    model, processor = load_open_seg(str(model_dir))
    benchmark = load_benchmark("voc21", data_dir=tmp_path / "data")
    protocol = get_protocol("sclip", "voc21").with_overrides(short_side=48, window=32, stride=16, refine="pamr")
    predictor = BenchmarkPredictor.for_benchmark(model, processor, benchmark, protocol)
    _, first = next(iter(predictor.predict(benchmark)))
    assert np.array_equal(np.array(Image.open(label_png)), first)
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
def watch_windows(model, shapes: list) -> None:
    """Record the shape of every batch of windows the model's inference path sends through the model."""
    mask_logits = model.mask_logits

    def watched(pixel_values, *args, **kwargs):
        shapes.append(tuple(pixel_values.shape))
        return mask_logits(pixel_values, *args, **kwargs)

    model.mask_logits = watched


@pytest.fixture
def forward_batches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Records the pixel_values shape of every model forward in `magicseg evaluate`."""
    import magicseg_hf.loading

    shapes: list[tuple[int, ...]] = []
    original = magicseg_hf.loading.load_open_seg

    def load_and_watch(*args, **kwargs):
        model, processor = original(*args, **kwargs)
        watch_windows(model, shapes)
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
        # Short side 32: 32x43 and 32x45, two 32-windows each = 4.
        (["--short-side", "32", "--window", "32", "--stride", "16"], [4]),
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
    shapes: list[tuple[int, ...]] = []
    watch_windows(model, shapes)
    samples = [
        SimpleNamespace(image_id=str(i), image=Image.new("RGB", (w, h), (i * 40, 90, 200)), label=np.zeros((h, w), np.uint8))
        for i, (h, w) in enumerate(sizes)
    ]
    benchmark = SimpleNamespace(name="x", class_synonyms=(("background",), ("cat", "kitten")), has_background=True,
                                num_labels=2)
    predictor = BenchmarkPredictor.for_benchmark(model, processor, benchmark, protocol, batch_size=5)
    predictions = [prediction for _, prediction in predictor.predict(samples)]
    # 30x50 -> 40x67: 3 x 7 windows; 50x30 -> 67x40: 7 x 3; 20x20 -> 40x40: 3 x 3; 41x97 -> 40x95: 3 x 10.
    calls = [shape[0] for shape in shapes]
    assert sum(calls) == expected == 21 + 21 + 9 + 30
    assert calls == [5] * (expected // 5) + ([expected % 5] if expected % 5 else [])
    assert [p.shape for p in predictions] == sizes and all(p.dtype == np.int64 for p in predictions)


# ----------------------------------------------------------------------------------------------
# Inference pieces
# ----------------------------------------------------------------------------------------------
def test_batched_windows_equal_one_window_at_a_time(model_dir: Path, tmp_path: Path):
    make_voc(tmp_path)
    benchmark = load_benchmark("voc21", data_dir=tmp_path)
    model, processor = load_open_seg(str(model_dir))
    protocol = get_protocol("sclip", "voc21").with_overrides(short_side=48, window=32, stride=16)
    predictions = {}
    for batch_size in (1, 16):
        predictor = BenchmarkPredictor.for_benchmark(model, processor, benchmark, protocol, batch_size=batch_size)
        predictions[batch_size] = [out for _, out in predictor.predict(benchmark)]
    for one, batched in zip(predictions[1], predictions[16]):
        assert np.array_equal(one, batched)


def test_queries_per_rule():
    voc = benchmark_classes("voc21")
    by_threshold = class_queries(voc, True, Decision("threshold", 0.5))
    assert by_threshold.label_ids == tuple(range(1, 21)) and by_threshold.names[0] == "aeroplane"
    assert (by_threshold.background, by_threshold.background_id) == ((), 0)
    as_class = class_queries(voc, True, Decision("background-class", None))
    assert as_class.label_ids == tuple(range(1, 21)) and as_class.background == ("background",)
    everything = class_queries(voc, True, Decision("argmax", None))
    assert everything.label_ids == tuple(range(21)) and everything.names[0] == "background"
    assert everything.background_id is None
    no_background = class_queries(benchmark_classes("context59"), False, Decision("argmax", None))
    assert no_background.label_ids == tuple(range(59)) and no_background.background_id is None
    from magicseg_hf.errors import InputError

    with pytest.raises(InputError, match="without background gives every pixel a class: use the argmax rule"):
        class_queries(benchmark_classes("context59"), False, Decision("threshold", 0.5))


def test_synonyms_max_or_mean(model_dir: Path):
    model, _ = load_open_seg(str(model_dir))
    classes = [("tv monitor", "television monitor"), ("cat",)]
    best = Queries.encode(model, classes, synonyms="max")
    assert best.positions.tolist() == [0, 0, 1] and best.names == ("tv monitor", "cat")
    mean = Queries.encode(model, classes, synonyms="mean")
    pair = model.encode_classes(["tv monitor", "television monitor"]).float()
    torch.testing.assert_close(mean.embeds[0], torch.nn.functional.normalize(pair.mean(dim=0), dim=-1))
    assert mean.positions.tolist() == [0, 1]


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


def _grey_label(data: Path) -> None:
    """A VOC annotation converted to grey levels: stored values are no longer class indices."""
    path = data / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000039.png"
    label = np.array(Image.open(path))
    label[label == 20] = 100
    Image.fromarray(label, "L").save(path)


def _ignore_every_pixel(data: Path) -> None:
    for path in (data / "VOCdevkit" / "VOC2012" / "SegmentationClass").glob("*.png"):
        Image.fromarray(np.full(np.array(Image.open(path)).shape, 255, np.uint8), "L").save(path)


def _truncate_an_image(data: Path) -> None:
    path = data / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2007_000039.jpg"
    path.write_bytes(path.read_bytes()[:200])


def _binary_split_list(data: Path) -> None:
    (data / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").write_bytes(bytes(range(256)))


def _garbage_label(data: Path) -> None:
    (data / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000039.png").write_bytes(b"not a png at all")


def _resize_a_label(data: Path) -> None:
    path = data / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000039.png"
    Image.fromarray(np.zeros((10, 15), np.uint8), "P").save(path)


def test_a_benchmark_with_nothing_to_score_prints_only_its_refusal(model_dir: Path, tmp_path: Path, capsys):
    # Known only after the last image: the progress bar and the INFO lines of the run must not come before it.
    data = tmp_path / "data"
    make_voc(data)
    _ignore_every_pixel(data)
    capsys.readouterr()
    assert evaluate(model_dir, tmp_path / "out" / "results.json", *TINY_PROTOCOL, "--benchmark", "voc21",
                    "--data-dir", str(data)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        "magicseg evaluate: error: voc21: no labelled pixel in 2 images (every pixel is ignore, 255): "
        "there is nothing to score"
    ]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "damage", "message"),
    [
        (["--benchmark", "voc21", "--data-dir", "{tmp}/nowhere"], None, "does not exist or is not a folder"),
        (["--benchmark", "voc21", "--data-dir", "{data}"], _break_split_list, "names 2007_000039 but"),
        (["--benchmark", "voc21", "--data-dir", "{data}"], _resize_a_label, "is 15x10 but its image"),
        (["--benchmark", "voc21", "--data-dir", "{data}"], _truncate_an_image, "2007_000039.jpg is not a readable image"),
        (["--benchmark", "voc21", "--data-dir", "{data}"], _binary_split_list, "val.txt is not a text file of image ids"),
        (["--benchmark", "voc21", "--data-dir", "{data}"], _garbage_label, "2007_000039.png is not a readable PNG"),
        (["--benchmark", "voc21", "--data-dir", "{data}"], _grey_label,
         "2007_000039.png holds value(s) 100 outside the benchmark's stored values 0..20 and 255"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--overlays", "2"], _ignore_every_pixel,
         "voc21: no labelled pixel in 2 images"),
        (["--benchmark", "ade20k", "--data-dir", "{data}"], None, "unknown benchmark 'ade20k'"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--protocol", "mmseg"], None, "unknown protocol 'mmseg' (expected one of zegclip, groupvit, sclip, naclip, clearclip)"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--window", "30"], None, "multiple of the model's patch size 8"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--stride", "64"], None, "stride must not exceed window"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--batch-size", "0"], None, "--batch-size must be a positive"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--threshold", "2"], None, r"threshold must lie in [0, 1]"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--decision", "argmax", "--threshold", "0.3"], None,
         "the argmax rule takes no threshold (got 0.3)"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--window", "64"], None,
         "window 64 is larger than the resized image's short side 48"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--class-names", "mine"], None, "class_names must be benchmark or one of"),
        (["--benchmark", "voc21", "--data-dir", "{data}", "--output", "/proc/results.json"], None,
         "--output /proc/results.json: the folder /proc is not writable"),
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
    assert not output.parent.exists(), "a failed run leaves no overlay, and not even the folder it would have made"


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
    assert "usage: magicseg evaluate" in result.stdout and "--protocol zegclip|groupvit|sclip|naclip" in result.stdout
    loaded = set(result.stdout.splitlines()[-1].split()[1:])
    assert "magicseg_hf" in loaded
    assert not {"torch", "transformers", "datasets", "diffusers", "evaluate"} & loaded
