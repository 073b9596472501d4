"""Annotation: detectors, SAM segmenters, label maps, the Annotator (offline, tiny models).

The tiny twins have random weights: these tests prove the plumbing (shapes, class ids, one
forward per batch, one image embedding per image, batch independence), not detection quality.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from magicseg_hf import loading, twins  # noqa: E402
from magicseg_hf.errors import InputError, ModelLoadError  # noqa: E402
from magicseg_hf.generation.annotate import (  # noqa: E402
    Annotation,
    Annotator,
    Detections,
    GroundingDinoDetector,
    MMGroundingDinoDetector,
    Owlv2Detector,
    Sam2Segmenter,
    SegmentAnythingSegmenter,
    TransformersSamSegmenter,
    assign_grounding_dino_boxes,
    grounding_dino_text,
    label_map,
    token_class_map,
)
from magicseg_hf.generation.components import build_annotator, check_class_names  # noqa: E402
from magicseg_hf.generation.config import GenerationConfig  # noqa: E402

CLASSES = [["cat", "dog"], ["traffic light"], ["bow (weapon)", "zebra", "person"], ["cat"]]


def _images(count: int = 4, size: int = 128, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
        for _ in range(count)
    ]


@pytest.fixture(scope="module")
def grounding_dino() -> GroundingDinoDetector:
    return GroundingDinoDetector(*loading.load_detector("grounding-dino", "tiny:grounding-dino"))


@pytest.fixture(scope="module")
def mm_grounding_dino() -> MMGroundingDinoDetector:
    return MMGroundingDinoDetector(*loading.load_detector("mm-grounding-dino", "tiny:mm-grounding-dino"))


@pytest.fixture(scope="module")
def owlv2() -> Owlv2Detector:
    return Owlv2Detector(*loading.load_detector("owlv2", "tiny:owlv2"))


@pytest.fixture(scope="module")
def transformers_sam() -> TransformersSamSegmenter:
    return TransformersSamSegmenter(*loading.load_segmenter("transformers", "tiny:sam"))


@pytest.fixture(scope="module")
def sam2() -> Sam2Segmenter:
    return Sam2Segmenter(*loading.load_segmenter("sam2", "tiny:sam2"))


@pytest.fixture(scope="module")
def segment_anything_sam() -> SegmentAnythingSegmenter:
    sam, processor = loading.load_segmenter("segment-anything", "tiny:segment-anything")
    assert processor is None
    return SegmentAnythingSegmenter(sam)


# ---- label_map ---------------------------------------------------------------------------------
def test_label_map_values_and_overlap_goes_to_higher_score() -> None:
    masks = torch.zeros((3, 4, 6), dtype=torch.bool)
    masks[0, :, :3] = True  # class 1 (label 2), left half
    masks[1, :2, 2:5] = True  # class 0 (label 1), top middle, overlapping mask 0 at column 2
    masks[2, 3, 5] = True  # class 2 (label 3), one pixel
    out = label_map(masks, torch.tensor([1, 0, 2]), torch.tensor([0.4, 0.9, 0.1]), num_classes=3)
    assert out.dtype == np.uint8 and out.shape == (4, 6)
    expected = np.array(
        [
            [2, 2, 1, 1, 1, 0],
            [2, 2, 1, 1, 1, 0],
            [2, 2, 2, 0, 0, 0],
            [2, 2, 2, 0, 0, 3],
        ],
        dtype=np.uint8,
    )
    np.testing.assert_array_equal(out, expected)
    # Same masks, scores swapped: the overlap at column 2 now goes to class 1 (label 2).
    swapped = label_map(masks, [1, 0, 2], [0.9, 0.4, 0.1], num_classes=3)
    assert swapped[0, 2] == 2 and swapped[0, 3] == 1
    # The order of the masks does not matter, only the scores.
    perm = [2, 1, 0]
    np.testing.assert_array_equal(
        label_map(masks[perm], torch.tensor([1, 0, 2])[perm], torch.tensor([0.4, 0.9, 0.1])[perm], 3), expected
    )


def test_label_map_ties_empty_and_bad_input() -> None:
    masks = torch.ones((2, 2, 2), dtype=torch.bool)
    assert (label_map(masks, [0, 1], [0.5, 0.5], 2) == 1).all()  # tie: the earlier mask
    empty = label_map(torch.zeros((0, 3, 5), dtype=torch.bool), [], [], 4)
    assert empty.shape == (3, 5) and not empty.any()
    with pytest.raises(ValueError):
        label_map(masks, [0, 2], [0.5, 0.5], 2)  # label out of range
    with pytest.raises(ValueError):
        label_map(masks, [0], [0.5], 2)  # count mismatch


# ---- Grounding DINO: box -> class from logits and token spans --------------------------------
def test_grounding_dino_text_and_token_spans() -> None:
    text, spans = grounding_dino_text(["Traffic  Light", "cat"])
    assert text == "traffic light. cat."
    assert [text[a:b] for a, b in spans] == ["traffic light", "cat"]
    tokenizer = twins.tiny_bert_tokenizer()
    encoding = tokenizer(text, return_offsets_mapping=True)
    membership = token_class_map(encoding["offset_mapping"], spans)
    tokens = tokenizer.convert_ids_to_tokens(encoding["input_ids"])
    assert tokens == ["[CLS]", "traffic", "light", ".", "cat", ".", "[SEP]"]
    assert membership.tolist() == [
        [False, True, True, False, False, False, False],
        [False, False, False, False, True, False, False],
    ]
    # Grounding DINO splits phrases at the BERT ids of [CLS], [SEP] and "."; the tiny vocab keeps them.
    assert encoding["input_ids"][0] == 101 and encoding["input_ids"][-1] == 102 and encoding["input_ids"][3] == 1012


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_assign_grounding_dino_boxes_on_crafted_logits() -> None:
    # tokens: [CLS] traffic light . cat . [SEP] + 3 padding positions (-inf)
    membership = torch.tensor(
        [[0, 1, 1, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]], dtype=torch.bool
    )
    low = _logit(0.01)
    logits = torch.full((4, 10), low)
    logits[:, 7:] = float("-inf")
    logits[0, 2] = _logit(0.8)  # "light" -> class 0 ("traffic light"), score 0.8
    logits[1, 4] = _logit(0.6)  # "cat" -> class 1
    logits[1, 1] = _logit(0.3)  # ... beats "traffic" at 0.3
    logits[2, 4] = _logit(0.2)  # class 1 at 0.2: below the text threshold
    logits[2, 3] = _logit(0.9)  # (the "." token is high: objectness passes, but no class does)
    logits[3, 1] = _logit(0.1)  # best class 0 at 0.1: objectness below the box threshold
    boxes = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.1, 0.2], [0.5, 0.5, 1.0, 1.0], [0.1, 0.1, 0.1, 0.1]])
    found = assign_grounding_dino_boxes(logits, boxes, membership, (100, 200), 0.25, 0.25)
    assert found.labels.tolist() == [0, 1]
    assert found.labels.dtype == torch.int64 and found.boxes.dtype == torch.float32
    np.testing.assert_allclose(found.scores.numpy(), [0.8, 0.6], rtol=1e-5)
    # xyxy pixels: width 200, height 100
    np.testing.assert_allclose(found.boxes.numpy(), [[50, 25, 150, 75], [40, 15, 60, 35]], rtol=1e-5)
    # No thresholds: every query, each with its best class.
    everything = assign_grounding_dino_boxes(logits, boxes, membership, (100, 200), float("-inf"), float("-inf"))
    assert everything.labels.tolist() == [0, 1, 1, 0]
    np.testing.assert_allclose(everything.scores.numpy(), [0.8, 0.6, 0.2, 0.1], rtol=1e-5)
    # Boxes past the image are clipped to it.
    clipped = assign_grounding_dino_boxes(logits, boxes * 2, membership, (100, 200), float("-inf"), float("-inf"))
    assert clipped.boxes[:, 0::2].max() <= 200 and clipped.boxes[:, 1::2].max() <= 100 and clipped.boxes.min() >= 0


def test_grounding_dino_detector_maps_fake_logits_through_the_real_tokenizer() -> None:
    """A fake model answers with crafted logits; the detector must find each class's token span
    in the padded batch (class 1 of image 0 is "traffic light", tokens 3-4)."""
    _, processor = loading.load_detector("grounding-dino", "tiny:grounding-dino")
    seen = {}

    class FakeModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, pixel_values, **kwargs):
            seen["input_ids"] = input_ids
            batch, length = input_ids.shape
            logits = torch.full((batch, 2, 256), -10.0)
            logits[:, :, length:] = float("-inf")
            logits[0, 0, 4] = 3.0  # image 0: "[CLS] cat . traffic light ." -> token 4 = "light"
            logits[0, 1, 1] = 2.0  # token 1 = "cat"
            logits[1, 0, 1] = 1.0  # image 1: "dog ." -> "dog"
            logits[1, 1, 2] = 4.0  # the "." after dog: no class
            boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.2, 0.2]]).expand(batch, 2, 4)
            return SimpleNamespace(logits=logits, pred_boxes=boxes)

    detector = GroundingDinoDetector(FakeModel(), processor)
    found = detector.detect(_images(2), [["cat", "traffic light"], ["dog"]], 0.3, 0.3)
    tokens = processor.tokenizer.convert_ids_to_tokens(seen["input_ids"][0].tolist())
    assert tokens == ["[CLS]", "cat", ".", "traffic", "light", ".", "[SEP]"]
    assert processor.tokenizer.convert_ids_to_tokens(seen["input_ids"][1].tolist())[:4] == ["[CLS]", "dog", ".", "[SEP]"]
    assert found[0].labels.tolist() == [1, 0]
    np.testing.assert_allclose(found[0].scores.numpy(), torch.sigmoid(torch.tensor([3.0, 2.0])).numpy(), rtol=1e-5)
    assert found[1].labels.tolist() == [0]  # the "." query has objectness but no class above 0.3
    np.testing.assert_allclose(found[1].boxes.numpy(), [[51.2, 51.2, 76.8, 76.8]], rtol=1e-5)


@pytest.mark.parametrize("which", ["grounding_dino", "mm_grounding_dino"])
def test_grounding_dino_end_to_end_tiny(which, request) -> None:
    grounding_dino = request.getfixturevalue(which)
    images = _images()
    found = grounding_dino.detect(images, CLASSES, 0.0, 0.0)
    assert len(found) == len(images)
    for dets, names in zip(found, CLASSES):
        assert dets.boxes.shape == (len(dets), 4) and dets.boxes.dtype == torch.float32
        assert dets.labels.dtype == torch.int64 and dets.scores.dtype == torch.float32
        assert len(dets) == grounding_dino.model.config.num_queries  # thresholds 0: every query
        assert dets.labels.min() >= 0 and dets.labels.max() < len(names)
        assert (dets.boxes[:, 2:] >= dets.boxes[:, :2]).all() and dets.boxes.max() <= 128
    # The assignment is the argmax over the classes' spans of the raw logits.
    processor = grounding_dino.processor
    text, spans = grounding_dino_text(CLASSES[2])
    encoding = processor.tokenizer([text], return_offsets_mapping=True, return_tensors="pt")
    membership = token_class_map(encoding.pop("offset_mapping")[0].tolist(), spans)
    with torch.inference_mode():
        out = grounding_dino.model(**encoding, **processor.image_processor([images[2]], return_tensors="pt"))
    probs = out.logits[0, :, : membership.shape[1]].sigmoid()
    span_scores = torch.stack([probs[:, m].amax(-1) for m in membership], dim=-1)
    assert found[2].labels.tolist() == span_scores.argmax(-1).tolist()
    torch.testing.assert_close(found[2].scores, span_scores.amax(-1), atol=1e-5, rtol=1e-4)
    # A threshold above every score leaves nothing.
    assert all(len(d) == 0 for d in grounding_dino.detect(images, CLASSES, 1.01, 0.0))


@pytest.mark.parametrize("which", ["grounding_dino", "mm_grounding_dino", "owlv2"])
def test_batched_detection_equals_per_image(which, request) -> None:
    detector = request.getfixturevalue(which)
    images = _images()
    batched = detector.detect(images, CLASSES, 0.0, 0.0)
    for image, names, together in zip(images, CLASSES, batched):
        alone = detector.detect([image], [names], 0.0, 0.0)[0]
        assert len(alone) == len(together) > 0
        assert torch.equal(alone.labels, together.labels)
        torch.testing.assert_close(alone.scores, together.scores, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(alone.boxes, together.boxes, atol=1e-2, rtol=1e-4)


def test_mm_grounding_dino_is_its_own_model_and_boxes_fit_each_image(mm_grounding_dino, grounding_dino) -> None:
    """The MM twin is an MMGroundingDinoForObjectDetection (not Grounding DINO under another name):
    its class head's bias puts untrained token probabilities near its prior of 0.01. In a batch of
    images of different sizes, each image's boxes lie inside that image and index its own classes."""
    from transformers import GroundingDinoForObjectDetection, MMGroundingDinoForObjectDetection

    assert isinstance(mm_grounding_dino.model, MMGroundingDinoForObjectDetection)
    assert not isinstance(grounding_dino.model, MMGroundingDinoForObjectDetection)
    assert not isinstance(mm_grounding_dino.model, GroundingDinoForObjectDetection)
    sizes = [(160, 96), (128, 128), (100, 180)]  # (width, height)
    images = [image.resize(size) for image, size in zip(_images(3), sizes)]
    names = [["cat", "dog"], ["traffic light"], ["bow (weapon)", "zebra", "person"]]
    found = mm_grounding_dino.detect(images, names, 0.0, 0.0)
    for dets, image, classes in zip(found, images, names):
        assert len(dets) == mm_grounding_dino.model.config.num_queries
        assert dets.labels.min() >= 0 and dets.labels.max() < len(classes)
        assert (dets.boxes >= 0).all() and (dets.boxes[:, 2:] >= dets.boxes[:, :2]).all()
        assert (dets.boxes[:, 0::2] <= image.width).all() and (dets.boxes[:, 1::2] <= image.height).all()
        assert 0.0 < float(dets.scores.mean()) < 0.25  # sigmoid(-log(99) + small similarities)


def test_check_class_names_covers_mm_grounding_dino(mm_grounding_dino) -> None:
    """The detector-text length check applies to MM-Grounding-DINO as to Grounding DINO (256 tokens)."""
    parts = SimpleNamespace(images=SimpleNamespace(pipe=None), annotator=SimpleNamespace(detector=mm_grounding_dino))
    check_class_names(parts, ["cat", "traffic light"], 2)
    with pytest.raises(InputError, match="too long for the mm-grounding-dino detector"):
        check_class_names(parts, ["cat", " ".join(["zebra"] * 300)], 2)


def test_owlv2_labels_index_each_images_own_classes(owlv2) -> None:
    images = _images(2)
    found = owlv2.detect(images, [["cat"], ["cat", "dog", "person"]], 0.0)
    assert found[0].labels.tolist() == [0] * len(found[0])  # padded queries never win
    assert len(found[1]) == 4 and found[1].labels.max() < 3
    assert all(len(d) == 0 for d in owlv2.detect(images, [["cat"], ["dog"]], 1.01))


# ---- SAM -------------------------------------------------------------------------------------------
BOXES = torch.tensor([[10.0, 12.0, 70.0, 60.0], [40.0, 30.0, 120.0, 110.0], [0.0, 0.0, 128.0, 128.0]])


@pytest.mark.parametrize("which", ["transformers_sam", "sam2", "segment_anything_sam"])
def test_sam_all_boxes_in_one_call_equals_one_box_per_call(which, request) -> None:
    segmenter = request.getfixturevalue(which)
    image = _images(1)[0]
    together = segmenter.segment(image, BOXES)
    assert together.shape == (3, 128, 128) and together.dtype == torch.bool
    fractions = together.float().mean(dim=(1, 2))
    assert ((fractions > 0) & (fractions < 1)).all(), fractions  # non-trivial masks
    assert not torch.equal(together[0], together[1])
    alone = torch.cat([segmenter.segment(image, box[None]) for box in BOXES])
    assert (alone != together).float().mean() < 1e-3
    assert segmenter.segment(image, torch.zeros((0, 4))).shape == (0, 128, 128)


def test_sam_segmenters_embed_the_image_once(transformers_sam, sam2, segment_anything_sam, monkeypatch) -> None:
    image = _images(1)[0]
    calls = {"transformers": 0, "sam2": 0, "segment-anything": 0}
    for name, segmenter in (("transformers", transformers_sam), ("sam2", sam2)):
        vision = segmenter.model.vision_encoder

        def count_vision(*args, _name=name, _forward=vision.forward, **kwargs):
            calls[_name] += 1
            return _forward(*args, **kwargs)

        monkeypatch.setattr(vision, "forward", count_vision)
    encoder = segment_anything_sam.model.image_encoder
    original_encoder = encoder.forward

    def count_encoder(*args, **kwargs):
        calls["segment-anything"] += 1
        return original_encoder(*args, **kwargs)

    monkeypatch.setattr(encoder, "forward", count_encoder)
    transformers_sam.segment(image, BOXES)
    sam2.segment(image, BOXES)
    segment_anything_sam.segment(image, BOXES)
    assert calls == {"transformers": 1, "sam2": 1, "segment-anything": 1}


def test_sam2_masks_at_the_image_size_and_in_reduced_precision(sam2) -> None:
    """A non-square image: masks come back (N, H, W) at its size; each follows its box (a mask for
    a box in one corner differs from one for the opposite corner). bfloat16 weights run (inputs
    follow the model's dtype) and give nearly the float32 masks.

    The comparison turns off SAM 2's "dynamic multimask via stability" on both copies: with random
    weights the stability of the candidate masks sits at its threshold, so bfloat16 rounding flips
    which candidate is returned; that choice is the model's, not the segmenter's numerics."""
    image = _images(1)[0].resize((160, 96))
    boxes = torch.tensor([[0.0, 0.0, 60.0, 40.0], [100.0, 56.0, 160.0, 96.0]])
    masks = sam2.segment(image, boxes)
    assert masks.shape == (2, 96, 160) and masks.dtype == torch.bool
    assert not torch.equal(masks[0], masks[1])
    segmenters = {}
    for dtype in ("float32", "bfloat16"):
        model, processor = loading.load_segmenter("sam2", "tiny:sam2", dtype=dtype)
        model.mask_decoder.dynamic_multimask_via_stability = False
        segmenters[dtype] = Sam2Segmenter(model, processor)
    assert segmenters["bfloat16"].dtype == torch.bfloat16
    full, reduced = (segmenters[dtype].segment(image, boxes) for dtype in ("float32", "bfloat16"))
    assert reduced.shape == (2, 96, 160) and reduced.dtype == torch.bool
    assert (reduced == full).float().mean() > 0.95


def test_segment_anything_checkpoint_roundtrip_with_weights_only(tmp_path, segment_anything_sam, torch_load_calls) -> None:
    path = tmp_path / "sam_tiny.pth"
    torch.save(segment_anything_sam.model.state_dict(), path)
    loads = torch_load_calls
    sam, processor = loading.load_segmenter("segment-anything", sam_checkpoint=str(path), sam_model_type="tiny")
    assert processor is None and loads == [True]
    for (name, a), (_, b) in zip(segment_anything_sam.model.state_dict().items(), sam.state_dict().items()):
        assert torch.equal(a, b), name
    image = _images(1)[0]
    assert torch.equal(SegmentAnythingSegmenter(sam).segment(image, BOXES), segment_anything_sam.segment(image, BOXES))


def test_segment_anything_checkpoint_errors(tmp_path) -> None:
    # A pickle with arbitrary objects is refused by weights_only (never executed).
    evil = tmp_path / "evil.pth"
    torch.save({"model": SimpleNamespace(a=1)}, evil)
    with pytest.raises(ModelLoadError, match="evil.pth"):
        loading.load_segmenter("segment-anything", sam_checkpoint=str(evil), sam_model_type="tiny")
    # Right file format, wrong architecture.
    with pytest.raises(ModelLoadError):
        loading.load_segmenter("segment-anything", sam_checkpoint=str(evil), sam_model_type="vit_q")
    with pytest.raises(ModelLoadError, match="no such file"):
        loading.load_segmenter("segment-anything", sam_checkpoint=str(tmp_path / "missing.pth"))
    with pytest.raises(ModelLoadError, match="`sam_checkpoint`"):
        loading.load_segmenter("segment-anything", "facebook/sam-vit-huge")


def test_tiny_models_are_identical_across_builds() -> None:
    a, _ = loading.load_detector("grounding-dino", "tiny:grounding-dino")
    b, _ = loading.load_detector("grounding-dino", "tiny:grounding-dino")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    torch.manual_seed(123)  # the caller's RNG is left alone
    expected = torch.rand(3)
    torch.manual_seed(123)
    loading.load_segmenter("transformers", "tiny:sam")
    assert torch.equal(torch.rand(3), expected)


# ---- Annotator -------------------------------------------------------------------------------------
class _FixedDetector:
    """Stand-in detector: known boxes per image, kept when their score clears the box threshold."""

    def __init__(self, per_image: list[list[tuple[list[float], int, float]]]) -> None:
        self.per_image = per_image
        self.calls: list[tuple[int, float, float]] = []

    def detect(self, images, class_names, box_threshold, text_threshold):
        self.calls.append((len(images), box_threshold, text_threshold))
        found = []
        for detections in self.per_image[: len(images)]:
            kept = [d for d in detections if d[2] > box_threshold]
            if not kept:
                found.append(Detections.empty())
                continue
            found.append(
                Detections(
                    boxes=torch.tensor([box for box, _, _ in kept], dtype=torch.float32),
                    scores=torch.tensor([score for _, _, score in kept], dtype=torch.float32),
                    labels=torch.tensor([label for _, label, _ in kept], dtype=torch.int64),
                )
            )
        return found


class _BoxSegmenter:
    """Stand-in SAM: the mask of a box is exactly the pixels inside it."""

    def __init__(self) -> None:
        self.calls: list[list[list[float]]] = []

    def segment(self, image, boxes):
        self.calls.append(boxes.tolist())
        masks = torch.zeros((len(boxes), image.height, image.width), dtype=torch.bool)
        for mask, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist()):
            mask[y0:y1, x0:x1] = True
        return masks


def test_annotator_paints_known_boxes_into_the_expected_label_map() -> None:
    images = [Image.new("RGB", (10, 6)), Image.new("RGB", (10, 6))]
    cat_box, dog_box, faint_box = [0.0, 0.0, 6.0, 4.0], [4.0, 2.0, 10.0, 6.0], [8.0, 0.0, 10.0, 2.0]
    detector = _FixedDetector(
        [
            [(cat_box, 0, 0.9), (dog_box, 1, 0.6), (faint_box, 1, 0.2)],  # the faint box is below 0.3
            [([0.0, 0.0, 10.0, 6.0], 0, 0.1)],  # nothing clears 0.3 on the second image
        ]
    )
    segmenter = _BoxSegmenter()
    annotations = Annotator(detector, segmenter, 0.3, 0.25).annotate(images, [["cat", "dog"], ["person"]])
    assert detector.calls == [(2, 0.3, 0.25)], "one batched detection with the annotator's thresholds"
    assert segmenter.calls == [[cat_box, dog_box]], "all boxes of an image in one call; none for an empty image"
    # cat (1) wins the overlap at columns 4-5 of rows 2-3: its score is higher.
    expected = np.array(
        [
            [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 1, 1, 2, 2, 2, 2],
            [1, 1, 1, 1, 1, 1, 2, 2, 2, 2],
            [0, 0, 0, 0, 2, 2, 2, 2, 2, 2],
            [0, 0, 0, 0, 2, 2, 2, 2, 2, 2],
        ],
        dtype=np.uint8,
    )
    first, second = annotations
    assert first.label.dtype == np.uint8
    np.testing.assert_array_equal(first.label, expected)
    assert first.boxes == [cat_box, dog_box] and first.box_labels == [0, 1]
    assert first.box_scores == pytest.approx([0.9, 0.6])
    assert second.boxes == [] and second.box_labels == [] and second.box_scores == []
    np.testing.assert_array_equal(second.label, np.zeros((6, 10), dtype=np.uint8))
    # max_detections keeps the highest-scoring boxes before SAM: here the cat's alone.
    top = Annotator(detector, _BoxSegmenter(), 0.3, 0.25, max_detections=1).annotate(images[:1], [["cat", "dog"]])
    assert top[0].box_labels == [0] and set(np.unique(top[0].label)) == {0, 1}
    assert (top[0].label == 1).sum() == 24  # the 6 x 4 cat box


@pytest.mark.parametrize(
    "detector_name,segmenter_name", [("grounding_dino", "transformers_sam"), ("mm_grounding_dino", "sam2")]
)
def test_annotate_end_to_end(detector_name, segmenter_name, request) -> None:
    """Real tiny detector and SAM: the label map is made of the masks SAM gives for the detected boxes."""
    grounding_dino = request.getfixturevalue(detector_name)
    transformers_sam = request.getfixturevalue(segmenter_name)
    images = _images()
    annotations = Annotator(grounding_dino, transformers_sam, 0.0, 0.0).annotate(images, CLASSES)
    assert len(annotations) == 4
    for image, names, annotation in zip(images, CLASSES, annotations):
        assert isinstance(annotation, Annotation)
        assert annotation.label.dtype == np.uint8 and annotation.label.shape == (image.height, image.width)
        # Thresholds 0: every query of the detector is a box, each inside the image with a class of its own list.
        assert len(annotation.boxes) == grounding_dino.model.config.num_queries
        boxes = torch.tensor(annotation.boxes)
        assert (boxes >= 0).all() and (boxes[:, 2:] <= 128).all() and (boxes[:, 2:] >= boxes[:, :2]).all()
        assert set(annotation.box_labels) <= set(range(len(names)))
        # Label values are background or a class that got a box.
        assert set(np.unique(annotation.label)) <= {0} | {label + 1 for label in annotation.box_labels}
        # Each pixel covered by a box's SAM mask carries the class of the best-scoring mask over it;
        # pixels no mask covers are background.
        masks = transformers_sam.segment(image, boxes)
        scores = torch.tensor(annotation.box_scores)
        covered = masks.any(dim=0).numpy()
        assert not annotation.label[~covered].any()
        best = torch.where(masks, scores[:, None, None], float("-inf")).argmax(dim=0)
        expected = torch.tensor(annotation.box_labels)[best].numpy() + 1
        np.testing.assert_array_equal(annotation.label[covered], expected[covered])
    assert any(annotation.label.any() for annotation in annotations)


def test_annotate_without_detections_gives_an_empty_annotation(grounding_dino, transformers_sam) -> None:
    images = _images(2)
    annotations = Annotator(grounding_dino, transformers_sam, 1.01, 0.0).annotate(images, CLASSES[:2])
    for annotation in annotations:
        assert annotation.boxes == [] and annotation.box_labels == [] and annotation.box_scores == []
        assert annotation.label.shape == (128, 128) and not annotation.label.any()


@pytest.mark.parametrize("which", ["grounding_dino", "mm_grounding_dino"])
def test_score_counterfactual(which, transformers_sam, request) -> None:
    """The counterfactual score is the chosen detector's: its best unthresholded box score."""
    grounding_dino = request.getfixturevalue(which)
    images = _images()
    # Thresholds do not apply: the annotator's 1.01 would keep nothing.
    scores = Annotator(grounding_dino, transformers_sam, 1.01, 1.01).score_counterfactual(images, CLASSES)
    everything = grounding_dino.detect(images, CLASSES, float("-inf"), float("-inf"))
    assert scores == pytest.approx([float(d.scores.max()) for d in everything])
    assert all(0.0 < s <= 1.0 for s in scores)

    class NoBoxes:
        def detect(self, images, class_names, box_threshold, text_threshold):
            return [Detections.empty() for _ in images]

    assert Annotator(NoBoxes(), transformers_sam, 0.0, 0.0).score_counterfactual(images[:2], CLASSES[:2]) == [0.0, 0.0]


@pytest.mark.parametrize(
    "detector,segmenter,dtype",
    [
        ("grounding-dino", "transformers", "float32"),
        ("owlv2", "segment-anything", "float32"),
        ("grounding-dino", "segment-anything", "bfloat16"),  # reduced precision: inputs follow the model
        ("mm-grounding-dino", "sam2", "bfloat16"),
    ],
)
def test_build_annotator_from_generation_config(detector, segmenter, dtype) -> None:
    config = GenerationConfig(preset="tiny", classes=["cat"], detector=detector, segmenter=segmenter, dtype=dtype)
    annotator = build_annotator(config.resolved(), "cpu")
    expected = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    assert next(annotator.detector.model.parameters()).dtype == expected
    detector_class = {"grounding-dino": GroundingDinoDetector, "mm-grounding-dino": MMGroundingDinoDetector,
                      "owlv2": Owlv2Detector}[detector]
    segmenter_class = {"transformers": TransformersSamSegmenter, "sam2": Sam2Segmenter,
                       "segment-anything": SegmentAnythingSegmenter}[segmenter]
    assert type(annotator.detector) is detector_class and type(annotator.segmenter) is segmenter_class
    images = _images()
    # (Speed is measured in benchmarks/bench_generate.py, not asserted here: tests share the CPU.)
    annotations = annotator.annotate(images, CLASSES)
    expected_boxes = 4 if detector == "owlv2" else annotator.detector.model.config.num_queries  # 0 thresholds
    assert all(len(a.boxes) == expected_boxes for a in annotations)
    assert all(a.label.shape == (128, 128) for a in annotations)
    assert len(annotator.score_counterfactual(images, CLASSES)) == 4


def test_bad_model_paths_fail_at_once() -> None:
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="no such folder"):
        loading.load_detector("grounding-dino", "/no/such/detector")
    with pytest.raises(ModelLoadError, match="no such folder"):
        loading.load_segmenter("transformers", "./no/such/sam")
    with pytest.raises(ModelLoadError):
        loading.load_detector("owlv2", "someone/not-cached-owlv2")
    with pytest.raises(ModelLoadError, match="unknown tiny"):
        loading.load_detector("owlv2", "tiny:grounding-dino")
    with pytest.raises(ModelLoadError, match="unknown detector"):
        loading.load_detector("yolo", "tiny:owlv2")
    with pytest.raises(ModelLoadError, match="unknown segmenter"):
        loading.load_segmenter("sam3", "tiny:sam")
    config = GenerationConfig(preset="tiny", classes=["cat"], detector_model="/no/such/folder").resolved()
    with pytest.raises(ModelLoadError):
        build_annotator(config, "cpu")
    assert time.perf_counter() - start < 5.0


def test_bad_model_folder_contents_raise_model_load_error(tmp_path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot load"):
        loading.load_detector("grounding-dino", str(tmp_path))
