"""Evaluation protocols: their values, overrides, the resize and the sliding-window grid they imply."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from magicseg_hf.errors import InputError
from magicseg_hf.evaluation.protocols import PROTOCOLS, get_protocol


def test_named_protocols_carry_the_literature_values():
    values = {
        name: (p.short_side, p.window, p.stride, p.background, p.threshold) for name, p in PROTOCOLS.items()
    }
    assert values == {
        "zegclip": (512, 512, 426, "class", None),
        "groupvit": (448, 448, 224, "threshold", 0.5),
        "sclip": (336, 224, 112, "threshold", 0.1),
    }


def test_overrides_replace_values_and_are_recorded():
    protocol = get_protocol("zegclip").with_overrides(short_side=640, window=None, stride=320, threshold=0.3)
    assert (protocol.name, protocol.short_side, protocol.window, protocol.stride) == (
        "zegclip",
        640,
        512,
        320,
    )
    record = protocol.to_dict()
    assert record["overrides"] == {"short_side": 640, "stride": 320, "threshold": 0.3}
    assert json.loads(json.dumps(record)) == record  # plain JSON values for the results file
    assert get_protocol("zegclip").to_dict()["overrides"] == {}
    assert get_protocol("sclip").with_overrides() is get_protocol("sclip")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stride": 0}, r"stride must be a positive integer \(got 0\)"),
        ({"window": 256, "stride": 300}, r"stride must not exceed window.*\(got stride 300 and window 256\)"),
        ({"threshold": 1.5}, r"threshold must lie in \[0, 1\] \(got 1.5\)"),
        ({"background": "none"}, r"background must be one of class, threshold \(got 'none'\)"),
        ({"flip": True}, r"cannot override flip"),
    ],
)
def test_bad_overrides_say_what_was_expected(overrides, message):
    with pytest.raises(InputError, match=message):
        get_protocol("zegclip").with_overrides(**overrides)


def test_unknown_protocol():
    with pytest.raises(
        InputError, match=r"unknown protocol 'clip' \(expected one of zegclip, groupvit, sclip\)"
    ):
        get_protocol("clip")


def test_resize_follows_mmseg_keep_ratio():
    # A VOC-sized image (375 x 500): short side to the protocol's size.
    assert get_protocol("zegclip").resized_size(375, 500) == (512, 683)
    assert get_protocol("groupvit").resized_size(375, 500) == (448, 597)
    assert get_protocol("sclip").resized_size(375, 500) == (336, 448)
    # A very long image: the long side stops at 2048.
    assert get_protocol("zegclip").resized_size(100, 1000) == (205, 2048)


def test_window_counts_you_can_predict():
    zegclip, groupvit, sclip = (get_protocol(name) for name in ("zegclip", "groupvit", "sclip"))
    # 512 x 683 with 512/426: one row; columns at 0 and 171 (the last window ends at 683).
    assert zegclip.window_grid(512, 683) == (1, 2)
    # 448 x 597 with 448/224: one row, columns at 0 and 149.
    assert groupvit.window_grid(448, 597) == (1, 2)
    # 336 x 448 with 224/112: rows at 0, 112; columns at 0, 112, 224.
    assert sclip.window_grid(336, 448) == (2, 3) and sclip.num_windows(336, 448) == 6
    # An image smaller than the window takes one window.
    assert sclip.num_windows(100, 150) == 1


def test_importing_the_evaluation_package_imports_neither_torch_nor_evaluate():
    code = (
        "import sys, magicseg_hf.evaluation as e\n"
        "e.get_protocol('sclip')\n"
        "print(sorted(m for m in ('torch', 'evaluate', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
