"""The one inference path (resize, windows, averaged probabilities, decision rules), the pipeline task and
post-processing of CLIPForOpenSegmentation. Random tiny weights: these prove the computation, not quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

import magicseg_hf  # noqa: F401  (registers the task)
from magicseg_hf.loading import build_open_seg
from magicseg_hf.modeling import (
    CLIPOpenSegOutput,
    Decision,
    InferenceGeometry,
    Queries,
    segment_images,
    sliding_windows,
)
from magicseg_hf.modeling.inference_clip_open_seg import as_rgb, prepare_image


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    model, processor = build_open_seg("tiny", vocabulary=["cat", "dog", "tree"])
    folder = tmp_path_factory.mktemp("open_seg")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


def _image(height: int = 48, width: int = 80) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def _union(segments, size) -> np.ndarray:
    union = np.zeros(size[::-1], dtype=bool)
    for segment in segments:
        mask = np.array(segment["mask"]) > 0
        assert not (union & mask).any()  # one label per pixel
        union |= mask
    return union


def test_pipeline_output_format(saved_model):
    segmenter = pipeline("open-vocabulary-segmentation", model=saved_model)
    image = _image()
    segments = segmenter(image, candidate_labels=["car", "road", "sky"], decision="argmax")
    assert {segment["label"] for segment in segments} <= {"car", "road", "sky"}
    for segment in segments:
        assert set(segment) == {"label", "score", "mask"}
        assert isinstance(segment["mask"], Image.Image) and segment["mask"].mode == "L"
        assert segment["mask"].size == image.size  # (width, height) of the input
        assert set(np.unique(np.array(segment["mask"]))) <= {0, 255}
        assert 0.0 <= segment["score"] <= 1.0
    assert _union(segments, image.size).all()  # argmax: every pixel has a label
    # Nothing is sure enough at 1.0: no pixel belongs to any label.
    assert segmenter(image, candidate_labels=["car", "road"], threshold=1.0) == []
    # Batched input: one list per image.
    batched = segmenter([image, _image(64, 64)], candidate_labels=["car", "road"], decision="argmax")
    assert len(batched) == 2 and all(isinstance(item, list) and item for item in batched)


def test_pipeline_default_is_the_trained_threshold(saved_model):
    """With no decision named, a pixel is labelled only where its best class's probability reaches 0.5."""
    segmenter = pipeline("open-vocabulary-segmentation", model=saved_model)
    image = _image(70, 90)
    default = segmenter(image, candidate_labels=["car", "road"])
    explicit = segmenter(image, candidate_labels=["car", "road"], decision="threshold", threshold=0.5)
    assert [(s["label"], s["score"]) for s in default] == [(s["label"], s["score"]) for s in explicit]
    assert all((np.array(a["mask"]) == np.array(b["mask"])).all() for a, b in zip(default, explicit))
    everything = segmenter(image, candidate_labels=["car", "road"], decision="argmax")
    # Labelled pixels under the default are exactly the argmax pixels whose winning score reaches 0.5.
    union = _union(default, image.size)
    by_label = {s["label"]: np.array(s["mask"]) > 0 for s in everything}
    for segment in default:
        assert not (np.array(segment["mask"]) > 0)[~by_label[segment["label"]]].any()
    assert 0 < union.mean() < 1, "the random tiny model scores around 0.5: some pixels pass, some do not"
    with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\] \(got 1.5\)"):
        segmenter(image, threshold=1.5)
    with pytest.raises(ValueError, match="argmax rule .* takes no threshold"):
        segmenter(image, decision="argmax", threshold=0.3)
    with pytest.raises(ValueError, match="decision rule must be one of threshold, background-class, argmax"):
        segmenter(image, decision="softmax")


def test_pipeline_background_class_leaves_the_background_unlabelled(saved_model):
    segmenter = pipeline("open-vocabulary-segmentation", model=saved_model)
    image = _image(64, 96)
    with_background = segmenter(image, candidate_labels=["car", "road"], decision="background-class")
    argmax_of_three = segmenter(image, candidate_labels=["car", "road", "background"], decision="argmax")
    # The same three queries: the pixels "background" wins are in no mask; the others keep their class.
    expected = {s["label"]: np.array(s["mask"]) for s in argmax_of_three if s["label"] != "background"}
    assert {s["label"]: np.array(s["mask"]).tolist() for s in with_background} == {
        k: v.tolist() for k, v in expected.items()
    }
    assert not _union(with_background, image.size).all()


def test_pipeline_settings_given_at_construction_are_defaults(saved_model, tmp_path):
    from magicseg_hf.loading import build_open_seg

    segmenter = pipeline("open-vocabulary-segmentation", model=saved_model, decision="argmax")
    assert _union(segmenter(_image()), (80, 48)).all()
    assert segmenter(_image(), decision="threshold", threshold=1.0) == []
    # A model without a saved vocabulary loads; a call without classes says what is missing.
    model, processor = build_open_seg("tiny")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    bare = pipeline("open-vocabulary-segmentation", model=str(tmp_path))
    with pytest.raises(ValueError, match="no saved vocabulary: name the classes"):
        bare(_image())
    with pytest.raises(TypeError, match="unknown arguments"):
        pipeline("open-vocabulary-segmentation", model=saved_model, colour="red")
    for name, bad in (("crop_size", -1), ("window", "512"), ("window", 0)):  # checked before any image is read
        with pytest.raises(ValueError, match=rf"{name} must be a positive integer \(got {bad!r}\)"):
            segmenter(_image(), **{name: bad})


def test_pipeline_defaults_to_saved_vocabulary_and_rejects_bad_labels(saved_model):
    segmenter = pipeline("open-vocabulary-segmentation", model=saved_model)
    segments = segmenter(_image(), decision="argmax")
    assert segments and {segment["label"] for segment in segments} <= {"cat", "dog", "tree"}
    with pytest.raises(ValueError, match="at least one"):
        segmenter(_image(), candidate_labels=[])
    with pytest.raises(ValueError, match="duplicates"):
        segmenter(_image(), candidate_labels=["cat", "dog", "cat"])
    with pytest.raises(ValueError, match="non-empty strings"):
        segmenter(_image(), candidate_labels=["cat", ""])


def test_image_segmentation_pipeline_on_saved_folder(saved_model, caplog):
    """transformers' own pipeline: the same default decision (threshold 0.5), no "not supported" error."""
    import logging

    with caplog.at_level(logging.WARNING):
        segmenter = pipeline("image-segmentation", model=saved_model)
    assert "not supported" not in caplog.text
    image = _image()
    segments = segmenter(image)
    labels = {segment["label"] for segment in segments}
    assert labels <= {"cat", "dog", "tree", "no class"}
    assert all(segment["mask"].size == image.size for segment in segments)
    # The unlabelled pixels are named, and they are those below 0.5 after the processor's one forward.
    from transformers import AutoModel, AutoProcessor

    model, processor = AutoModel.from_pretrained(saved_model).eval(), AutoProcessor.from_pretrained(saved_model)
    with torch.no_grad():
        logits = model(**processor(images=image, return_tensors="pt")).logits
    [expected] = processor.post_process_semantic_segmentation({"logits": logits}, target_sizes=[image.size[::-1]])
    none = next((np.array(s["mask"]) > 0 for s in segments if s["label"] == "no class"), np.zeros((48, 80), bool))
    assert (none == (expected.numpy() == -1)).all()


def test_sliding_windows_cover_the_image():
    boxes = sliding_windows(100, 150, crop_size=64, stride=48)
    coverage = np.zeros((100, 150), dtype=int)
    for top, left, bottom, right in boxes:
        assert (bottom - top, right - left) == (64, 64)
        coverage[top:bottom, left:right] += 1
    assert coverage.min() >= 1
    assert len(boxes) == 2 * 3  # mmseg grid: ceil((100-64)/48)+1 rows, ceil((150-64)/48)+1 cols
    assert sliding_windows(512, 512, 512, 426) == [(0, 0, 512, 512)]


def _tiny_model():
    model, processor = build_open_seg("tiny")
    return model.eval(), processor


def test_probabilities_are_averaged_over_windows_as_the_forward_computes_them():
    """One image, two overlapping windows: each pixel's probability is the mean of the windows' sigmoid."""
    model, processor = _tiny_model()
    image = _image(64, 112)  # short side 64 = window: no resize; windows x in [0, 64) and [48, 112)
    geometry = InferenceGeometry(short_side=64, window=64, stride=48)
    queries = Queries.encode(model, ["cat", "dog"], tokenizer=processor.tokenizer)
    [(_, result)] = segment_images(model, [(0, image)], queries, geometry, Decision("argmax", None), window_batch_size=1)
    pixels = prepare_image(image, (64, 112), processor.image_processor.image_mean, processor.image_processor.image_std)
    with torch.no_grad():
        left = model(pixel_values=pixels[None, :, :, :64], class_embeds=queries.embeds).logits[0].sigmoid()
        right = model(pixel_values=pixels[None, :, :, 48:], class_embeds=queries.embeds).logits[0].sigmoid()
    expected = torch.zeros(2, 64, 112)
    expected[:, :, :48] = left[:, :, :48]
    expected[:, :, 64:] = right[:, :, 16:]
    expected[:, :, 48:64] = (left[:, :, 48:] + right[:, :, :16]) / 2  # probabilities averaged, not logits
    score, position = expected.max(dim=0)
    assert torch.allclose(result.scores, score, atol=1e-5)
    assert (result.labels == position).float().mean() > 0.999


def test_windows_batched_across_images_and_classes_chunked_give_the_same_answer():
    model, processor = _tiny_model()
    images = [(i, _image(h, w)) for i, (h, w) in enumerate([(70, 130), (150, 60), (40, 40), (64, 64)])]
    queries = Queries.encode(model, [f"class {i}" for i in range(7)], tokenizer=processor.tokenizer)
    geometry = InferenceGeometry(short_side=64, window=64, stride=48)
    decision = Decision("argmax", None)
    one_by_one = [r for _, r in segment_images(model, images, queries, geometry, decision, window_batch_size=1)]
    batched = [r for _, r in segment_images(model, images, queries, geometry, decision, window_batch_size=5)]
    chunked = [r for _, r in segment_images(model, images, queries, geometry, decision, score_budget=1)]
    for reference, *others in zip(one_by_one, batched, chunked):
        for other in others:
            assert torch.allclose(other.scores, reference.scores, atol=1e-5)
            assert (other.labels == reference.labels).float().mean() > 0.999
    assert [tuple(r.labels.shape) for r in one_by_one] == [(70, 130), (150, 60), (40, 40), (64, 64)]


def test_decision_rules_on_known_probabilities():
    """threshold / background-class / argmax / area threshold, on probabilities set by hand."""
    from magicseg_hf.modeling.inference_clip_open_seg import apply_threshold, small_classes

    positions = torch.tensor([[0, 1], [1, 2]])
    scores = torch.tensor([[0.9, 0.4], [0.6, 0.55]])
    assert apply_threshold(positions, scores, 0.5).tolist() == [[0, -1], [1, 2]]
    assert apply_threshold(positions, scores, None).tolist() == [[0, 1], [1, 2]]
    labels = torch.tensor([[0] * 9 + [1]])
    assert small_classes(labels, 0.1) == {1}  # 1 of 10 labelled pixels: at most 10 %
    assert small_classes(labels, 0.05) == set()
    with pytest.raises(ValueError, match="threshold rule needs a threshold"):
        Decision("threshold", None)
    assert Decision.named("threshold").threshold == 0.5 and Decision.named("argmax").threshold is None


def test_geometry_resize_rule_and_refusals():
    geometry = InferenceGeometry()  # the model's: short side 512, long side at most 2048, windows 512 / 426
    assert geometry.resized_size(375, 500) == (512, 683)
    assert geometry.resized_size(100, 1000) == (205, 2048)
    assert geometry.resized_size(1, 20000) == (1, 2048)  # never a zero-pixel side
    with pytest.raises(ValueError, match="window 640 is larger than the resized image's short side 512"):
        InferenceGeometry(window=640, stride=320)
    with pytest.raises(ValueError, match="stride must not exceed window"):
        InferenceGeometry(stride=600)


@pytest.mark.parametrize("mode", ["I;16", "CMYK", "P", "RGBA", "LA", "L", "1"])
def test_image_modes_become_rgb(mode):
    base = Image.new("RGB", (20, 10), (200, 100, 50))
    image = Image.new("I;16", (20, 10), 65535) if mode == "I;16" else base.convert(mode)
    rgb = as_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (20, 10)
    if mode == "I;16":
        assert rgb.getpixel((0, 0)) == (255, 255, 255)  # 16-bit white stays white, not clipped noise


def test_exif_rotation_and_refusals():
    image = Image.new("RGB", (30, 10), (255, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    rotated = as_rgb(Image.open(io.BytesIO(buffer.getvalue())))
    assert rotated.size == (10, 30)
    with pytest.raises(ValueError, match="floating-point image"):
        as_rgb(Image.new("F", (4, 4)))
    with pytest.raises(ValueError, match="must be a PIL image"):
        as_rgb("not an image object")
    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 100
        with pytest.raises(ValueError, match=r"11x10 = 110 pixels, over the limit of 100"):
            as_rgb(Image.new("RGB", (11, 10)))
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def test_post_process_undoes_padding_and_thresholds():
    _, processor = build_open_seg("tiny")
    # A 32 x 64 image fills rows [0, 32) of the 64 x 64 padded input.
    logits = torch.full((1, 2, 64, 64), -5.0)
    logits[0, 0, :32] = 5.0  # class 0 over the image
    logits[0, 1, 32:] = 9.0  # class 1 only in the padding
    logits[0, 0, :32, :16] = -4.0  # left quarter: no class is likely
    result = processor.post_process_semantic_segmentation(
        CLIPOpenSegOutput(logits=logits), target_sizes=[(32, 64)], threshold=0.5
    )[0]
    assert result.shape == (32, 64) and result.dtype == torch.int64
    assert (result[:, 20:] == 0).all()
    assert (result[:, :12] == -1).all()
    assert not (result == 1).any()
    default = processor.post_process_semantic_segmentation({"logits": logits}, target_sizes=[(32, 64)])[0]
    assert (default == result).all()  # the default is the trained threshold, 0.5
    plain = processor.post_process_semantic_segmentation({"logits": logits}, target_sizes=[(32, 64)], threshold=None)[0]
    assert (plain >= 0).all()  # threshold=None: plain argmax
    with pytest.raises(ValueError, match="target_sizes"):
        processor.post_process_semantic_segmentation({"logits": logits}, target_sizes=[(32, 64), (32, 64)])


def test_processor_rejects_bad_class_lists():
    _, processor = build_open_seg("tiny")
    with pytest.raises(ValueError, match="duplicates"):
        processor(text=["cat", "cat"])
    with pytest.raises(ValueError, match="same number of classes"):
        processor(text=[["cat", "dog"], ["cat"]])
    with pytest.raises(ValueError, match="non-empty strings"):
        processor(text=["cat", " "])


@pytest.mark.parametrize("size", [(1, 1), (1, 3000), (3000, 2), (33, 17)])
def test_pipeline_takes_tiny_and_extreme_pictures(saved_model, size):
    """A 1 x 1 picture, a 1-pixel-high strip (its resized short side rounds to 1 and is padded to a window)
    and odd sizes come back at their own size."""
    segmenter = pipeline("open-vocabulary-segmentation", model=saved_model)
    width, height = size
    image = Image.new("RGB", (width, height), (120, 80, 40))
    segments = segmenter(image, decision="argmax")
    assert segments and all(segment["mask"].size == (width, height) for segment in segments)
    assert _union(segments, (width, height)).all()


def test_pipeline_refuses_unreadable_and_oversized_pictures(saved_model, tmp_path, monkeypatch):
    segmenter = pipeline("open-vocabulary-segmentation", model=saved_model)
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    with pytest.raises(ValueError, match="notes.png.* is not a readable image"):
        segmenter(str(notes))
    picture = tmp_path / "big.png"
    Image.new("RGB", (50, 50)).save(picture)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 2,500 pixels: over twice the limit
    with pytest.raises(ValueError, match="over twice PIL's pixel limit of 1,000"):
        segmenter(str(picture))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # between the limit and twice it: PIL only warns
    with pytest.raises(ValueError, match=r"50x50 = 2,500 pixels, over the limit of 2,000"):
        segmenter(str(picture))
