"""`magicseg predict`: overlays, per-class areas and scores, and bad input, on a saved tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from magicseg_hf.cli import main
from magicseg_hf.predict import OVERLAY_ALPHA, Prediction, Segment, load_image, predict_images
from magicseg_hf.visualization import class_color

VOCABULARY = ["cat", "dog", "traffic light"]
#: Width of the legend panel that overlay_with_legend puts right of the picture.
LEGEND_WIDTH = 140


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CLIPForOpenSegmentation folder with a saved vocabulary, as `magicseg train` leaves it."""
    from magicseg_hf.loading import build_open_seg

    folder = tmp_path_factory.mktemp("predict") / "model"
    model, processor = build_open_seg("tiny", seed=3)
    model.set_vocabulary(VOCABULARY)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two pictures of different sizes and modes: an RGB PNG and a greyscale PNG."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    first = folder / "street.png"
    second = folder / "garden.png"
    Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8), "RGB").save(first)
    Image.fromarray(rng.integers(0, 256, (70, 50), dtype=np.uint8), "L").save(second)
    return [first, second]


@pytest.fixture(scope="module")
def loaded(model_dir: Path):
    from magicseg_hf.loading import load_open_seg

    return load_open_seg(str(model_dir))


def _exit_status(argv: list[str]) -> int:
    """``magicseg argv``'s exit status, usage errors (argparse's SystemExit) included."""
    try:
        return main(argv)
    except SystemExit as exit:
        return int(exit.code)


def _reference(loaded, paths: list[Path], classes=None, threshold=None) -> list[Prediction]:
    model, processor = loaded
    return predict_images(model, processor, [load_image(p) for p in paths], classes, threshold=threshold)


def _assert_tinted(overlay: np.ndarray, image: np.ndarray, prediction: Prediction) -> None:
    """Every pixel of class c is c's colour blended over the image (or c's colour, on an outline);
    pixels of no class keep the image's colour."""
    segmentation = prediction.segmentation
    for segment in prediction.segments:
        color = np.array(class_color(segment.position + 1), dtype=np.float32)
        inside = segmentation == segment.position
        blend = np.round((1 - OVERLAY_ALPHA) * image[inside].astype(np.float32) + OVERLAY_ALPHA * color)
        got = overlay[inside].astype(np.float32)
        blended = np.abs(got - blend).max(axis=1) <= 1
        outline = (got == color).all(axis=1)
        assert (blended | outline).all(), f"{segment.label}: pixels not tinted with its colour"
        assert blended.any(), f"{segment.label}: no blended pixel at all"
    unlabelled = segmentation < 0
    assert (overlay[unlabelled] == image[unlabelled]).all()


def test_predict_two_images_writes_overlays_json_and_table(model_dir, images, loaded, tmp_path, capsys):
    out_dir, json_path = tmp_path / "overlays", tmp_path / "segments.json"
    argv = ["predict", "--model", str(model_dir), "--image", *map(str, images), "--threshold", "0.5",
            "--output-dir", str(out_dir), "--json", str(json_path), "--batch-size", "2", "--device", "cpu"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    expected = _reference(loaded, images, threshold=0.5)
    assert sorted(p.name for p in out_dir.iterdir()) == ["garden_overlay.png", "street_overlay.png"]

    data = json.loads(json_path.read_text())
    assert data["model"] == str(model_dir) and data["classes"] == VOCABULARY and data["threshold"] == 0.5
    assert [entry["image"] for entry in data["images"]] == [str(p) for p in images]
    for path, entry, prediction in zip(images, data["images"], expected):
        picture = load_image(path)
        assert (entry["width"], entry["height"]) == picture.size
        assert entry["overlay"] == str(out_dir / f"{path.stem}_overlay.png")
        # Areas are the masks' shares of the image; with a threshold some pixels have no class.
        areas = {segment["label"]: segment["area"] for segment in entry["segments"]}
        assert areas, "the tiny model finds some class"
        assert sum(areas.values()) <= 1.0
        assert sum(areas.values()) + entry["unassigned_area"] == pytest.approx(1.0)
        assert entry["unassigned_area"] == pytest.approx(float((prediction.segmentation < 0).mean()))
        for segment in entry["segments"]:
            mask = prediction.mask(segment["label"])
            assert segment["pixels"] == int(mask.sum()) > 0
            assert segment["area"] == pytest.approx(float(mask.mean()))
            assert 0.5 <= segment["score"] <= 1.0, "each pixel's winning probability reached the threshold"
            assert f"{segment['label']}" in stdout and f"{100 * segment['area']:.1f} %" in stdout
        assert f"{path} ({picture.width}x{picture.height})" in stdout

        overlay = Image.open(entry["overlay"])
        assert overlay.mode == "RGB"
        assert overlay.width == picture.width + LEGEND_WIDTH and overlay.height >= picture.height
        pixels = np.asarray(overlay)
        _assert_tinted(pixels[: picture.height, : picture.width], np.asarray(picture), prediction)
        legend = pixels[:, picture.width:].reshape(-1, 3)
        legend_colors = {tuple(int(v) for v in color) for color in np.unique(legend, axis=0)}
        for segment in prediction.segments:
            assert class_color(segment.position + 1) in legend_colors, f"no legend swatch for {segment.label}"
        absent = set(range(len(VOCABULARY))) - {segment.position for segment in prediction.segments}
        for position in absent:
            assert class_color(position + 1) not in legend_colors, "the legend lists only classes present"


@pytest.mark.parametrize("decision", ["threshold", "background-class", "argmax"])
def test_predict_is_the_pipeline(loaded, model_dir, images, decision, monkeypatch):
    """predict_images gives the open-vocabulary-segmentation pipeline's answer, rule by rule, whether the
    windows of the two pictures share forwards or not and whether classes are decided all at once or (a
    large vocabulary) one at a time."""
    from transformers import pipeline

    from magicseg_hf.modeling import inference_clip_open_seg

    classes = [*VOCABULARY, "kite", "bus", "bench", "horse"]
    model, processor = loaded
    pictures = [load_image(p) for p in images]
    segmenter = pipeline("open-vocabulary-segmentation", model=str(model_dir))
    for batch_size, budget in ((1, inference_clip_open_seg.DEFAULT_SCORE_BUDGET), (3, 1)):
        monkeypatch.setattr(inference_clip_open_seg, "DEFAULT_SCORE_BUDGET", budget)
        expected = segmenter(pictures, candidate_labels=classes, decision=decision)
        predictions = predict_images(model, processor, pictures, classes, batch_size=batch_size, decision=decision)
        for prediction, segments, picture in zip(predictions, expected, pictures):
            assert prediction.size == picture.size and prediction.decision == decision
            assert [s.label for s in sorted(prediction.segments, key=lambda s: s.position)] == [
                s["label"] for s in segments
            ]
            for segment in segments:
                assert np.array_equal(prediction.mask(segment["label"]), np.array(segment["mask"]) > 0)
            if decision == "argmax":
                assert prediction.unassigned_area == 0.0
                assert sum(segment.area for segment in prediction.segments) == pytest.approx(1.0)
            else:
                assert 0.0 < prediction.unassigned_area < 1.0


def test_classes_override_the_saved_vocabulary(model_dir, images, tmp_path, capsys):
    json_path = tmp_path / "one.json"
    output = tmp_path / "nested" / "overlay.png"
    argv = ["predict", "--model", str(model_dir), "--image", str(images[0]), "--classes", "zebra",
            "--output", str(output), "--json", str(json_path), "--decision", "argmax"]
    assert main(argv) == 0
    data = json.loads(json_path.read_text())
    assert data["classes"] == ["zebra"]
    [entry] = data["images"]
    assert [(s["label"], s["area"], s["pixels"]) for s in entry["segments"]] == [("zebra", 1.0, 80 * 60)]
    assert Image.open(output).size[0] == 80 + LEGEND_WIDTH
    assert "zebra" in capsys.readouterr().out

    assert main(["predict", "--model", str(model_dir), "--image", str(images[1]), "--classes", "zebra", "kite",
                 "--json", str(json_path)]) == 0
    labels = {segment["label"] for segment in json.loads(json_path.read_text())["images"][0]["segments"]}
    assert labels and labels <= {"zebra", "kite"}


def test_same_names_get_separate_overlays(model_dir, images, tmp_path):
    other = tmp_path / "elsewhere" / images[0].name
    other.parent.mkdir()
    other.write_bytes(images[0].read_bytes())
    out_dir = tmp_path / "out"
    assert main(["predict", "--model", str(model_dir), "--image", str(images[0]), str(other),
                 "--output-dir", str(out_dir)]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["street_2_overlay.png", "street_overlay.png"]


def test_label_map_of_a_large_class_list_numbers_the_classes_present():
    classes = [f"class {i}" for i in range(300)]
    segmentation = np.full((4, 5), 280, dtype=np.int64)
    segmentation[:, :2] = 3
    segmentation[0, 0] = -1
    prediction = Prediction(classes, segmentation, [
        Segment("class 280", 280, 12, 0.6, 0.9), Segment("class 3", 3, 7, 0.35, 0.8)])
    label, names = prediction.label_map()
    assert names == ["class 3", "class 280"]
    assert label.dtype == np.uint8 and label[0, 0] == 0 and label[1, 0] == 1 and label[0, 4] == 2
    small = Prediction(classes[:3], np.array([[-1, 0, 2]]), [])
    assert small.label_map()[0].tolist() == [[0, 1, 3]] and small.label_map()[1] == classes[:3]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from transformers import CLIPConfig

    from magicseg_hf.loading import build_open_seg

    folder = tmp_path_factory.mktemp("bad")
    text = folder / "notes.png"
    text.write_text("not a picture")
    truncated = folder / "half.png"
    buffer = folder / "full.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buffer)
    truncated.write_bytes(buffer.read_bytes()[:60])
    clip = folder / "clip"
    CLIPConfig().save_pretrained(clip)
    no_vocabulary = folder / "no-vocabulary"
    model, processor = build_open_seg("tiny")
    model.save_pretrained(no_vocabulary)
    processor.save_pretrained(no_vocabulary)
    float_image = folder / "depth.tiff"
    Image.new("F", (8, 8), 0.5).save(float_image)
    return {"text": text, "truncated": truncated, "clip": clip, "empty": folder / "empty-dir", "float_image": float_image,
            "no_vocabulary": no_vocabulary}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (["--image", "{missing}"], "--image {missing}: no such file"),
        (["--image", "{text}"], "not a readable image (unknown or broken image format)"),
        (["--image", "{truncated}"], "not a readable image"),
        (["--image", "{image}", "--model", "{tmp}/no-model"], "no such folder"),
        (["--image", "{image}", "--model", "{clip}"], "config.json has model_type 'clip', not a CLIPForOpenSegmentation"),
        (["--image", "{image}", "--model", "{tmp}"], "no config.json (not a saved model folder)"),
        (["--image", "{image}", "--model", "{no_vocabulary}"], "the model has no saved vocabulary: name the classes with --classes"),
        (["--image", "{image}", "--classes", ""], "--classes must be non-empty strings"),
        (["--image", "{image}", "--classes", "cat", "cat"], "--classes must name each class once (got duplicates: ['cat'])"),
        (["--image", "{image}", "--classes"], "expected at least one argument"),
        (["--image", "{image}", "{image}", "--output", "{tmp}/o.png"], "--output names one file but 2 images were given"),
        (["--image", "{image}", "--output", "{tmp}/o.png", "--output-dir", "{tmp}/d"], "not both"),
        (["--image", "{image}", "--output", "{tmp}/o.txt"], "--output must end with an image extension"),
        (["--image", "{image}", "--output", "{image}"], "would overwrite one of the input images"),
        (["--image", "{image}", "--threshold", "1.5"], "--threshold must be a number in [0, 1] (got 1.5)"),
        (["--image", "{image}", "--batch-size", "0"], "--batch-size must be a positive integer (got 0)"),
        (["--image", "{image}", "--decision", "argmax", "--threshold", "0.3"], "the argmax rule gives every pixel a class and takes no threshold (got 0.3)"),
        (["--image", "{image}", "--background-classes", "sky"], "--background-classes is only used with --decision background-class (got threshold)"),
        (["--image", "{image}", "--label-dir", "{image}"], "--label-dir {image}: exists and is not a folder"),
        (["--image", "{float_image}"], "floating-point image (mode F)"),
        (["--image", "{image}", "--json", "{tmp}"], "--json must be a file path (got the folder"),
        (["--image", "{image}", "--json", "/proc/segments.json"], "--json /proc/segments.json: the folder /proc is not writable"),
        (["--image", "{image}", "--output-dir", "{image}/sub"], "is a file, not a folder"),
        (["--image", "{image}", "--device", "gpu"], "--device must be auto, cpu, cuda, cuda:N or mps (got 'gpu')"),
    ],
    ids=["missing-image", "not-an-image", "truncated-image", "missing-model", "not-our-model", "not-a-model-folder",
         "no-vocabulary", "blank-class", "duplicate-class", "no-class", "output-with-two-images",
         "output-and-output-dir", "output-not-an-image", "output-over-input", "threshold", "batch-size",
         "argmax-with-threshold", "background-without-rule", "label-dir-is-a-file", "float-image", "json-is-a-folder",
         "json-in-proc", "output-dir-under-a-file", "device"],
)
def test_bad_input_is_one_line_and_exit_2(case, message, model_dir, images, bad_inputs, tmp_path, capsys):
    values = {"missing": str(tmp_path / "nope.jpg"), "image": str(images[0]), "tmp": str(tmp_path),
              **{name: str(path) for name, path in bad_inputs.items()}}
    argv = ["predict", "--model", str(model_dir)] + [word.format(**values) for word in case]
    before = sorted(tmp_path.rglob("*"))
    assert _exit_status(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("magicseg predict: error: ")
    assert message.format(**values) in captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert sorted(tmp_path.rglob("*")) == before, "nothing is written on bad input"


def test_help_answers_without_torch():
    probe = ("from magicseg_hf.cli import build_parser\nimport sys\n"
             "try:\n    build_parser(['predict', '--help']).parse_args(['predict', '--help'])\n"
             "except SystemExit:\n    pass\n"
             "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "--threshold" in result.stdout and "--output-dir" in result.stdout
    loaded_modules = set(result.stdout.split("\n")[-2].split())
    assert not {"torch", "transformers", "diffusers", "datasets"} & loaded_modules


def test_scores_are_mean_probabilities_inside_each_mask(loaded, tmp_path):
    """On a picture of the model's own size (no resizing), each class's score is the mean of its
    sigmoid probability over its pixels, and each pixel went to its most probable class."""
    import torch

    model, processor = loaded
    size = model.config.image_size
    picture = Image.fromarray(np.random.default_rng(7).integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")
    with torch.no_grad():
        logits = model(**processor(images=[picture], text=VOCABULARY, return_tensors="pt")).logits[0]  # (C, S, S)
    probabilities = logits.sigmoid().numpy()
    [prediction] = predict_images(model, processor, [picture], decision="argmax")
    assert np.array_equal(prediction.segmentation, probabilities.argmax(axis=0))
    assert len(prediction.segments) > 1
    for segment in prediction.segments:
        inside = prediction.mask(segment.position)
        assert segment.score == pytest.approx(float(probabilities[segment.position][inside].mean()), abs=1e-6)


def test_label_dir_holds_the_label_maps_and_odd_pictures_are_read_as_shown(model_dir, loaded, tmp_path, monkeypatch, capsys):
    """--label-dir writes 0 (no class) / i (the i-th class) maps; 16-bit, CMYK, palette, RGBA and EXIF-rotated
    files are read as a viewer shows them; a picture over PIL's pixel limit is refused in one line."""
    folder = tmp_path / "odd"
    folder.mkdir()
    base = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 70, 3), dtype=np.uint8), "RGB")
    paths = {}
    for mode in ("CMYK", "P", "RGBA"):
        paths[mode] = folder / f"{mode.lower()}.{'jpg' if mode == 'CMYK' else 'png'}"
        base.convert(mode).save(paths[mode])
    paths["16bit"] = folder / "deep.png"
    Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257).save(paths["16bit"])
    exif = base.getexif()
    exif[0x0112] = 6
    paths["exif"] = folder / "rotated.jpg"
    base.save(paths["exif"], exif=exif)
    labels = tmp_path / "labels"
    argv = ["predict", "--model", str(model_dir), "--image", *map(str, paths.values()), "--label-dir", str(labels),
            "--json", str(tmp_path / "s.json")]
    assert main(argv) == 0
    data = json.loads((tmp_path / "s.json").read_text())
    model, processor = loaded
    for path, entry in zip(paths.values(), data["images"]):
        label = np.array(Image.open(entry["label_map"]))
        [expected] = predict_images(model, processor, [load_image(path)])
        assert np.array_equal(label.astype(np.int64) - 1, expected.segmentation)
    rotated = Image.open(data["images"][-1]["label_map"])
    assert rotated.size == (40, 70), "EXIF orientation 6: the 70x40 picture is shown 40 wide"
    assert Image.open(data["images"][3]["label_map"]).size == (70, 40)
    capsys.readouterr()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    out = tmp_path / "big"
    assert _exit_status(["predict", "--model", str(model_dir), "--image", str(paths["P"]), "--label-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "70x40 = 2,800 pixels, over the limit of 2,000" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": "0.5"}, "`threshold` must be a number in [0, 1] (got '0.5')"),
        ({"threshold": 5}, "`threshold` must be a number in [0, 1] (got 5)"),
        ({"batch_size": 1.5}, "batch_size must be a positive integer (got 1.5)"),
        ({"decision": "softmax"}, "decision rule must be one of threshold, background-class, argmax"),
        ({"classes": []}, "`classes` must hold at least one class name"),
    ],
)
def test_predict_images_bad_arguments_are_input_errors(loaded, kwargs, message):
    from magicseg_hf.errors import InputError

    model, processor = loaded
    with pytest.raises(InputError) as caught:
        predict_images(model, processor, [Image.new("RGB", (8, 8))], **kwargs)
    assert message in str(caught.value)


def test_predict_images_refuses_an_empty_picture(loaded):
    from magicseg_hf.errors import InputError

    model, processor = loaded
    with pytest.raises(InputError, match=r"image 0 is empty \(0x0 pixels\)"):
        predict_images(model, processor, [Image.new("RGB", (0, 0))])


def test_a_killed_runs_temporary_files_are_cleaned_at_the_next_run(model_dir, images, tmp_path):
    """An atomic write killed between its temporary file and the rename leaves `.<name>.*.tmp`; the next run
    writing the same file removes it (and only it)."""
    out = tmp_path / "overlays"
    out.mkdir()
    stale = out / f".{images[0].stem}_overlay.png.k1ll3d.tmp"
    stale.write_bytes(b"half a png")
    other = out / ".someone-elses.png.x.tmp"
    other.write_bytes(b"not ours")
    assert main(["predict", "--model", str(model_dir), "--image", str(images[0]), "--output-dir", str(out)]) == 0
    assert not stale.exists() and other.exists()
    assert (out / f"{images[0].stem}_overlay.png").is_file()
