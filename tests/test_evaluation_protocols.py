"""Evaluation protocols: the reference harnesses' values per benchmark (checked against what was read in their
configs, each cited), overrides, the resize and the sliding-window grid they imply, and the class-name files."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from magicseg_hf.errors import InputError
from magicseg_hf.evaluation.benchmarks import BENCHMARK_NAMES, benchmark_classes, read_class_file
from magicseg_hf.evaluation.protocols import CLASSES_DIR, PROTOCOLS, SPECS, get_protocol

#: The harness values read in the reference configs (docs/protocols.md lists the same, with file:line):
#: (short side, long-side cap, mode, window, stride, class-name file, synonym rule, area threshold, refine).
REFERENCE = {
    ("zegclip", "voc20"): (512, None, "slide", 512, 426, "zegclip", "max", None, None),
    ("groupvit", "voc21"): (448, 2048, "slide", 448, 224, "groupvit", "max", None, None),
    ("groupvit", "context60"): (448, 2048, "slide", 448, 224, "groupvit", "max", None, None),
    ("groupvit", "coco-object"): (448, 2048, "slide", 448, 224, "groupvit", "max", None, None),
    ("sclip", "voc21"): (336, 2048, "slide", 224, 112, "sclip", "max", 0.1, None),
    ("sclip", "voc20"): (336, 2048, "slide", 224, 112, "sclip", "max", None, None),
    ("sclip", "context60"): (336, 2048, "slide", 224, 112, "sclip", "max", None, None),
    ("sclip", "context59"): (336, 2048, "slide", 224, 112, "sclip", "max", None, None),
    ("sclip", "coco-object"): (336, 2048, "slide", 224, 112, "sclip", "max", None, None),
    ("naclip", "voc21"): (336, 2048, "whole", 224, 112, "sclip", "max", None, "pamr"),
    ("naclip", "voc20"): (336, 2048, "whole", 224, 112, "sclip", "max", None, "pamr"),
    ("naclip", "context60"): (336, 2048, "slide", 224, 112, "sclip", "max", None, "pamr"),
    ("naclip", "context59"): (336, 2048, "slide", 224, 112, "sclip", "max", None, "pamr"),
    ("naclip", "coco-object"): (336, 2048, "slide", 224, 112, "sclip", "max", None, "pamr"),
}
#: The harnesses' own background thresholds and softmax temperatures, on their scores (kept for training-free
#: models; our model's rule is recorded beside them).
HARNESS = {
    ("groupvit", "voc21"): {"bg_thresh": 0.95},
    ("groupvit", "context60"): {"bg_thresh": 0.35},
    ("groupvit", "coco-object"): {"bg_thresh": 0.95},
    ("sclip", "voc21"): {"logit_scale": 65, "prob_thd": 0.1},
    ("sclip", "voc20"): {"logit_scale": 40, "prob_thd": 0.0},
    ("sclip", "context60"): {"logit_scale": 50, "prob_thd": 0.1},
    ("sclip", "context59"): {"logit_scale": 40, "prob_thd": 0.0},
    ("sclip", "coco-object"): {"logit_scale": 50, "prob_thd": 0.1},
    ("naclip", "voc21"): {"logit_scale": 40, "prob_thd": 0.1},
    ("naclip", "context60"): {"logit_scale": 40, "prob_thd": 0.1},
    ("naclip", "coco-object"): {"logit_scale": 40, "prob_thd": 0.1},
}
CITATION = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{7}:\S+:\d")


@pytest.mark.parametrize(("name", "benchmark"), sorted(REFERENCE))
def test_protocol_values_are_the_references(name, benchmark):
    protocol = get_protocol(name, benchmark)
    values = (protocol.short_side, protocol.max_long_side, protocol.mode, protocol.window, protocol.stride,
              protocol.class_names, protocol.synonyms, protocol.area_threshold, protocol.refine)  # fmt: skip
    assert values == REFERENCE[(name, benchmark)]
    for key, value in HARNESS.get((name, benchmark), {}).items():
        assert protocol.harness[key] == value
    # Every harness value is cited to a file and line of the reference at the commit read.
    for key in ("short_side", "window", "stride", "mode"):
        assert CITATION.match(protocol.citations[key]), (key, protocol.citations[key])
    assert protocol.model_rule_note and protocol.reference
    record = protocol.to_dict()
    assert json.loads(json.dumps(record)) == record and record["overrides"] == {}


def test_our_model_rule_per_protocol_is_stated():
    """Harness thresholds defined on a softmax are not reused on our sigmoids: the rule is written down."""
    assert (get_protocol("zegclip", "voc21").rule, get_protocol("zegclip", "voc21").threshold) == ("background-class", None)
    assert (get_protocol("groupvit", "voc21").rule, get_protocol("groupvit", "voc21").threshold) == ("threshold", 0.5)
    for name in ("sclip", "naclip"):
        protocol = get_protocol(name, "coco-object")
        assert (protocol.rule, protocol.threshold) == ("background-class", 0.5)
        assert "softmax" in protocol.model_rule_note and "0.5" in protocol.model_rule_note


def test_harness_class_files_match_the_benchmarks_and_carry_the_background_words():
    for spec in SPECS.values():
        for benchmark in BENCHMARK_NAMES:
            protocol = spec.resolve(benchmark)
            path = CLASSES_DIR / protocol.class_names / f"{benchmark.replace('-', '_')}.txt"
            if protocol.class_names != "benchmark" and path.is_file():
                assert len(read_class_file(path)) == len(benchmark_classes(benchmark))
    voc = read_class_file(CLASSES_DIR / "sclip" / "voc21.txt")
    assert len(voc[0]) == 26 and voc[0][:3] == ("sky", "wall", "tree")  # SCLIP's background: stuff words
    assert voc[15][0] == "person" and len(voc[15]) == 7 and voc[4] == ("ship",)
    assert read_class_file(CLASSES_DIR / "sclip" / "context60.txt")[0] == ("background",)
    assert read_class_file(CLASSES_DIR / "groupvit" / "voc21.txt")[11] == ("table",)


def test_overrides_replace_values_and_are_recorded():
    protocol = get_protocol("zegclip", "voc21").with_overrides(short_side=640, window=None, stride=320, threshold=0.3)
    assert (protocol.name, protocol.short_side, protocol.window, protocol.stride) == ("zegclip", 640, 512, 320)
    record = protocol.to_dict()
    assert record["overrides"] == {"short_side": 640, "stride": 320, "threshold": 0.3}
    assert json.loads(json.dumps(record)) == record  # plain JSON values for the results file
    assert get_protocol("sclip").with_overrides() is get_protocol("sclip") or get_protocol("sclip").with_overrides() == get_protocol("sclip")
    assert get_protocol("naclip", "voc21").with_overrides(refine="none").refine is None
    assert get_protocol("groupvit", "voc21").with_overrides(rule="argmax").threshold is None
    assert get_protocol("sclip").with_overrides(max_long_side="none").max_long_side is None
    assert get_protocol("zegclip").with_overrides(max_long_side="2048").max_long_side == 2048
    with pytest.raises(InputError, match="max_long_side must be a positive integer or none"):
        get_protocol("zegclip").with_overrides(max_long_side="big")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stride": 0}, r"stride must be a positive integer \(got 0\)"),
        ({"window": 256, "stride": 300}, r"stride must not exceed window.*\(got stride 300 and window 256\)"),
        ({"threshold": 1.5}, r"threshold must lie in \[0, 1\] \(got 1.5\)"),
        ({"rule": "none"}, r"rule must be one of threshold, background-class, argmax \(got 'none'\)"),
        ({"window": 1024, "stride": 512}, r"window 1024 is larger than the resized image's short side 512"),
        ({"class_names": "mine"}, r"class_names must be benchmark or one of clearclip, groupvit, sclip, zegclip \(got 'mine'\)"),
        ({"flip": True}, r"cannot override flip"),
    ],
)
def test_bad_overrides_say_what_was_expected(overrides, message):
    with pytest.raises(InputError, match=message):
        get_protocol("zegclip").with_overrides(**overrides)


def test_unknown_protocol():
    with pytest.raises(InputError, match=r"unknown protocol 'clip' \(expected one of zegclip, groupvit, sclip, naclip, clearclip\)"):
        get_protocol("clip")


def test_resize_follows_mmseg_keep_ratio():
    # A VOC-sized image (375 x 500): short side to the protocol's size.
    assert get_protocol("zegclip").resized_size(375, 500) == (512, 683)
    assert get_protocol("groupvit").resized_size(375, 500) == (448, 597)
    assert get_protocol("sclip").resized_size(375, 500) == (336, 448)
    # A very long image: the long side stops at 2048 (mmseg's cap) except under ZegCLIP's min_size resize.
    assert get_protocol("sclip").resized_size(100, 1000) == (205, 2048)
    assert get_protocol("zegclip").resized_size(100, 1000) == (512, 5120)


def test_window_counts_you_can_predict():
    zegclip, groupvit, sclip = (get_protocol(name) for name in ("zegclip", "groupvit", "sclip"))
    # 512 x 683 with 512/426: one row; columns at 0 and 171 (the last window ends at 683).
    assert zegclip.window_grid(512, 683) == (1, 2)
    # 448 x 597 with 448/224: one row, columns at 0 and 149.
    assert groupvit.window_grid(448, 597) == (1, 2)
    # 336 x 448 with 224/112: rows at 0, 112; columns at 0, 112, 224.
    assert sclip.window_grid(336, 448) == (2, 3) and sclip.num_windows(336, 448) == 6
    # An image smaller than the window takes one window; NACLIP's VOC runs the whole image at once.
    assert sclip.num_windows(100, 150) == 1
    assert get_protocol("naclip", "voc21").num_windows(336, 448) == 1


def test_every_named_protocol_is_listed():
    assert list(PROTOCOLS) == ["zegclip", "groupvit", "sclip", "naclip", "clearclip"]


def test_importing_the_evaluation_package_imports_neither_torch_nor_evaluate():
    code = (
        "import sys, magicseg_hf.evaluation as e\n"
        "e.get_protocol('sclip')\n"
        "print(sorted(m for m in ('torch', 'evaluate', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_torch_free_copies_of_the_trained_threshold_equal_the_models():
    from magicseg_hf.cards.model import EXAMPLE_THRESHOLD
    from magicseg_hf.evaluation.protocols import MODEL_THRESHOLD
    from magicseg_hf.modeling import DEFAULT_THRESHOLD

    assert MODEL_THRESHOLD == EXAMPLE_THRESHOLD == DEFAULT_THRESHOLD
