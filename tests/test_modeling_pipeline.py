"""Pipeline task, sliding-window inference and post-processing of CLIPForOpenSegmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

import magicseg_hf  # noqa: F401  (registers the task)
from magicseg_hf.loading import build_open_seg
from magicseg_hf.modeling import CLIPOpenSegOutput, slide_inference, sliding_windows


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


def test_pipeline_output_format(saved_model):
    segmenter = pipeline("open-vocabulary-segmentation", model=saved_model)
    image = _image()
    segments = segmenter(image, candidate_labels=["car", "road", "sky"])
    assert segments, "argmax without a threshold labels every pixel"
    assert {segment["label"] for segment in segments} <= {"car", "road", "sky"}
    union = np.zeros((48, 80), dtype=bool)
    for segment in segments:
        assert set(segment) == {"label", "score", "mask"}
        assert isinstance(segment["mask"], Image.Image) and segment["mask"].mode == "L"
        assert segment["mask"].size == image.size  # (width, height) of the input
        mask = np.array(segment["mask"]) > 0
        assert set(np.unique(np.array(segment["mask"]))) <= {0, 255}
        assert not (union & mask).any()  # one label per pixel
        union |= mask
        assert 0.0 <= segment["score"] <= 1.0
    assert union.all()
    # Above every probability: no pixel belongs to any label.
    assert segmenter(image, candidate_labels=["car", "road"], threshold=1.01) == []
    # Batched input: one list per image.
    batched = segmenter([image, _image(64, 64)], candidate_labels=["car", "road"])
    assert len(batched) == 2 and all(isinstance(item, list) for item in batched)


def test_pipeline_threshold_matches_post_processing(saved_model):
    """The pipeline's threshold decision equals the model's own probabilities on the same windows."""
    from transformers import AutoModel

    segmenter = pipeline("open-vocabulary-segmentation", model=saved_model)
    model = AutoModel.from_pretrained(saved_model).eval()
    image = _image(64, 64)  # one window at the tiny crop size: the pipeline runs exactly one forward pass
    enc = segmenter.image_processor(image, size={"shortest_edge": 64}, do_pad=False, return_tensors="pt")
    with torch.no_grad():
        probs = model(
            pixel_values=enc["pixel_values"], class_embeds=model.encode_classes(["car", "road"])
        ).logits
    probs = probs[0].sigmoid()
    threshold = float(probs.max(dim=0).values.median())
    segments = segmenter(image, candidate_labels=["car", "road"], threshold=threshold)
    labelled = sum((np.array(s["mask"]) > 0).sum() for s in segments)
    assert labelled == int((probs.max(dim=0).values >= threshold).sum())


def test_pipeline_defaults_to_saved_vocabulary_and_rejects_bad_labels(saved_model):
    segmenter = pipeline("open-vocabulary-segmentation", model=saved_model)
    segments = segmenter(_image())
    assert segments and {segment["label"] for segment in segments} <= {"cat", "dog", "tree"}
    with pytest.raises(ValueError, match="at least one"):
        segmenter(_image(), candidate_labels=[])
    with pytest.raises(ValueError, match="duplicates"):
        segmenter(_image(), candidate_labels=["cat", "dog", "cat"])


def test_image_segmentation_pipeline_on_saved_folder(saved_model):
    segmenter = pipeline("image-segmentation", model=saved_model)
    image = _image()
    segments = segmenter(image)
    assert segments and {segment["label"] for segment in segments} <= {"cat", "dog", "tree"}
    assert all(segment["mask"].size == image.size for segment in segments)


def test_sliding_windows_cover_the_image():
    boxes = sliding_windows(100, 150, crop_size=64, stride=48)
    coverage = np.zeros((100, 150), dtype=int)
    for top, left, bottom, right in boxes:
        assert (bottom - top, right - left) == (64, 64)
        coverage[top:bottom, left:right] += 1
    assert coverage.min() >= 1
    assert len(boxes) == 2 * 3  # mmseg grid: ceil((100-64)/48)+1 rows, ceil((150-64)/48)+1 cols
    assert sliding_windows(512, 512, 512, 426) == [(0, 0, 512, 512)]


def test_slide_inference_matches_window_forwards():
    model, processor = build_open_seg("tiny")
    model.eval()
    embeds = model.encode_classes(["cat", "dog"])
    pixel_values = torch.randn(1, 3, 64, 112)  # two 64 px windows at stride 48: x in [0, 64) and [48, 112)
    logits = slide_inference(model, pixel_values, embeds, crop_size=64, stride=48, window_batch_size=1)
    assert logits.shape == (1, 2, 64, 112)
    with torch.no_grad():
        left = model(pixel_values=pixel_values[..., :64], class_embeds=embeds).logits
        right = model(pixel_values=pixel_values[..., 48:], class_embeds=embeds).logits
    assert torch.allclose(logits[..., :48], left[..., :48], atol=1e-5)
    assert torch.allclose(logits[..., 64:], right[..., 16:], atol=1e-5)
    assert torch.allclose(logits[..., 48:64], (left[..., 48:] + right[..., :16]) / 2, atol=1e-5)
    # Batched windows give the same result; an image smaller than the crop is padded.
    assert torch.allclose(
        slide_inference(model, pixel_values, embeds, 64, 48, window_batch_size=4), logits, atol=1e-5
    )
    assert slide_inference(model, torch.randn(2, 3, 40, 56), embeds, 64, 48).shape == (2, 2, 40, 56)


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
    plain = processor.post_process_semantic_segmentation({"logits": logits}, target_sizes=[(32, 64)])[0]
    assert (plain >= 0).all()  # without a threshold: plain argmax
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
