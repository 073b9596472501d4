"""``magicseg evaluate --method``: training-free baselines on a CLIP checkpoint, and their bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_evaluation_benchmarks import make_voc

from magicseg_hf.cli import main
from magicseg_hf.errors import InputError
from magicseg_hf.evaluation.protocols import get_protocol
from magicseg_hf.evaluation.run import EvaluationConfig
from magicseg_hf.loading import build_open_seg

#: A tiny geometry for 8 px patches.
TINY = ["--short-side", "48", "--window", "32", "--stride", "16"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny CLIPModel folder (random weights, 8 px patches) with its processor."""
    from magicseg_hf.twins import tiny_clip

    folder = tmp_path_factory.mktemp("clip")
    model, processor = tiny_clip(seed=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def open_seg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("openseg")
    model, processor = build_open_seg("tiny")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def voc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("data")
    make_voc(data)
    return data


def evaluate(model: Path, output: Path, *argv: str) -> int:
    return main(["evaluate", "--model", str(model), "--output", str(output), *argv])


@pytest.mark.parametrize("method", ["maskclip", "sclip", "clearclip", "naclip"])
def test_each_method_evaluates_a_clip_checkpoint(clip_dir: Path, voc_dir: Path, tmp_path: Path, method: str) -> None:
    output = tmp_path / "r.json"
    status = evaluate(clip_dir, output, "--method", method, "--benchmark", "voc21", "--data-dir", str(voc_dir),
                      *TINY)  # fmt: skip
    assert status == 0
    results = json.loads(output.read_text())
    assert results["method"] == method
    default = {"maskclip": "clearclip", "sclip": "sclip", "clearclip": "clearclip", "naclip": "naclip"}[method]
    assert results["protocol"]["name"] == default
    harness = get_protocol(default, "voc21").harness
    assert f"x {harness['logit_scale']:g}" in results["score_averaging"]
    assert results["decision"]["rule"] == "background-class"
    assert results["decision"]["threshold"] == harness["prob_thd"]
    assert results["refine"] == ("pamr" if method == "naclip" else None)
    assert 0.0 <= results["mean_iou"] <= 1.0
    # the harness's class file: SCLIP's stuff words for background, ClearCLIP's plain "background"
    background = results["queries"]["background_texts"]
    assert background == (["background"] if default == "clearclip" else background) and len(background) >= 1
    if default != "clearclip":
        assert "sky" in background


@pytest.mark.parametrize(("model_id", "method"), [("tiny:clip", "sclip"), ("tiny:open-seg", "magicseg")])
def test_a_tiny_id_evaluates_like_its_saved_folder(
    clip_dir: Path, open_seg_dir: Path, voc_dir: Path, tmp_path: Path, model_id: str, method: str
) -> None:
    # A tiny: id is its twin's folder, loaded by the Hub-id code: the checkpoint check must resolve it too.
    folder = clip_dir if method == "sclip" else open_seg_dir
    scores = []
    for index, model in enumerate((model_id, folder)):
        output = tmp_path / f"r{index}.json"
        assert evaluate(model, output, "--method", method, "--benchmark", "voc21", "--data-dir", str(voc_dir),
                        *TINY) == 0
        scores.append(json.loads(output.read_text())["mean_iou"])
    assert scores[0] == scores[1]


def test_methods_give_different_answers(clip_dir: Path, voc_dir: Path, tmp_path: Path) -> None:
    """The last-block change matters: MaskCLIP and ClearCLIP under one harness predict differently."""
    predicted = {}
    for method in ("maskclip", "clearclip"):
        output = tmp_path / f"{method}.json"
        assert evaluate(clip_dir, output, "--method", method, "--benchmark", "voc21", "--data-dir", str(voc_dir),
                        "--threshold", "0", *TINY) == 0  # fmt: skip
        predicted[method] = [row["predicted_pixels"] for row in json.loads(output.read_text())["per_class"]]
    assert predicted["maskclip"] != predicted["clearclip"]


def _refused(capsys: pytest.CaptureFixture[str], output: Path, status: int) -> str:
    assert status == 2
    assert not output.exists()
    assert list(output.parent.iterdir()) == []
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    return error


def test_training_free_method_on_an_open_seg_folder_names_what_it_can_run(
    open_seg_dir: Path, voc_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out" / "r.json"
    output.parent.mkdir()
    error = _refused(capsys, output, evaluate(open_seg_dir, output, "--method", "naclip", "--benchmark", "voc21",
                                              "--data-dir", str(voc_dir), *TINY))  # fmt: skip
    assert "CLIPForOpenSegmentation" in error and "--method magicseg" in error


def test_magicseg_on_a_clip_checkpoint_names_the_training_free_methods(
    clip_dir: Path, voc_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out" / "r.json"
    output.parent.mkdir()
    error = _refused(capsys, output, evaluate(clip_dir, output, "--benchmark", "voc21", "--data-dir", str(voc_dir),
                                              *TINY))  # fmt: skip
    assert "maskclip or sclip or clearclip or naclip" in error


def test_a_checkpoint_that_is_not_clip_names_its_type(
    voc_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import BertConfig

    folder = tmp_path / "bert"
    BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2).save_pretrained(folder)
    output = tmp_path / "out" / "r.json"
    output.parent.mkdir()
    error = _refused(capsys, output, evaluate(folder, output, "--method", "sclip", "--benchmark", "voc21",
                                              "--data-dir", str(voc_dir)))  # fmt: skip
    assert "'bert'" in error and "not a CLIP model" in error


@pytest.mark.parametrize(
    ("flag", "value", "listed"),
    [("--method", "segclip", "maskclip, sclip, clearclip, naclip"), ("--protocol", "mmseg", "clearclip")],
)
def test_unknown_method_or_protocol_lists_the_known_ones(
    clip_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, listed: str
) -> None:
    output = tmp_path / "out" / "r.json"
    output.parent.mkdir()
    error = _refused(capsys, output, evaluate(clip_dir, output, "--benchmark", "voc21", flag, value))
    assert value in error and listed in error


@pytest.mark.parametrize(("field", "value"), [("device", "tpu"), ("dtype", "int8"), ("method", "nope")])
def test_evaluation_config_refuses_unknown_device_dtype_and_method(field: str, value: str) -> None:
    with pytest.raises(InputError, match=value):
        EvaluationConfig(model="m", benchmark="voc21", output="o.json", **{field: value})


def test_protocol_defaults_to_the_methods_own() -> None:
    assert EvaluationConfig(model="m", benchmark="voc21", output="o.json").protocol == "zegclip"
    assert EvaluationConfig(model="m", benchmark="voc21", output="o.json", method="maskclip").protocol == "clearclip"
    assert EvaluationConfig(model="m", benchmark="voc21", output="o.json", method="sclip",
                            protocol="naclip").protocol == "naclip"  # fmt: skip


def test_methods_of_one_clip_share_its_text_encodings() -> None:
    """A class list is encoded once per CLIP, whatever the method (the suite's reuse)."""
    from magicseg_hf.evaluation.methods import TrainingFreeCLIP
    from magicseg_hf.twins import tiny_clip

    clip, processor = tiny_clip(seed=0)
    calls = []
    original = clip.get_text_features

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    clip.get_text_features = counting
    sclip = TrainingFreeCLIP(clip, "sclip", tokenizer=processor.tokenizer)
    first = sclip.encode_classes(["cat", "dog"])
    naclip = sclip.with_method("naclip")
    again = naclip.encode_classes(["dog", "cat", "car"])
    assert len(calls) == 3  # cat, dog, then only car
    assert naclip.clip is sclip.clip and naclip.method == "naclip"
    assert first.shape == (2, clip.config.projection_dim)
    assert (again[0] == first[1]).all() and (again[1] == first[0]).all()


@pytest.mark.parametrize(
    ("protocol", "benchmark", "has_background", "expected"),
    [
        ("sclip", "voc21", True, {"rule": "background-class", "threshold": 0.1, "area_threshold": 0.1,
                                  "logit_scale": 65.0}),
        ("sclip", "context60", True, {"rule": "background-class", "threshold": 0.1, "area_threshold": None,
                                      "logit_scale": 50.0}),
        ("sclip", "context59", False, {"rule": "argmax", "threshold": None, "area_threshold": None,
                                       "logit_scale": 40.0}),
        ("naclip", "voc21", True, {"rule": "background-class", "threshold": 0.1, "area_threshold": None,
                                   "logit_scale": 40.0}),
        ("clearclip", "voc21", True, {"rule": "background-class", "threshold": 0.5, "area_threshold": None,
                                      "logit_scale": 50.0}),
        ("clearclip", "coco-object", True, {"rule": "background-class", "threshold": 0.4, "area_threshold": None,
                                            "logit_scale": 50.0}),
        ("clearclip", "context60", True, {"rule": "background-class", "threshold": 0.15, "area_threshold": None,
                                          "logit_scale": 50.0}),
    ],
)
def test_training_free_score_is_each_harness_published_config(
    protocol: str, benchmark: str, has_background: bool, expected: dict
) -> None:
    """The values the fixture's pipeline cases take, as each reference's configs/cfg_<benchmark>.py sets them."""
    from types import SimpleNamespace

    score = get_protocol(protocol, benchmark).training_free_score(SimpleNamespace(has_background=has_background),
                                                                  "sclip" if protocol == "sclip" else protocol)
    assert score == expected


def test_a_decision_override_decides_for_a_training_free_method() -> None:
    # `--decision argmax` with --method sclip was written into the results (protocol overrides) but the
    # harness's background-class rule still decided.
    from types import SimpleNamespace

    voc = SimpleNamespace(has_background=True)
    sclip = get_protocol("sclip", "voc21")
    assert sclip.training_free_score(voc, "sclip")["rule"] == "background-class"
    argmax = sclip.with_overrides(rule="argmax").training_free_score(voc, "sclip")
    assert (argmax["rule"], argmax["threshold"]) == ("argmax", None)
    threshold = sclip.with_overrides(rule="threshold", threshold=0.3).training_free_score(voc, "sclip", 0.3)
    assert (threshold["rule"], threshold["threshold"]) == ("threshold", 0.3)
    # Without background the benchmark decides by argmax, whatever the override.
    assert sclip.with_overrides(rule="threshold").training_free_score(SimpleNamespace(has_background=False),
                                                                      "sclip")["rule"] == "argmax"


def test_naclip_protocol_is_whole_image_with_pamr_on_voc21() -> None:
    protocol = get_protocol("naclip", "voc21")
    assert (protocol.mode, protocol.refine, protocol.short_side) == ("whole", "pamr", 336)
    clear = get_protocol("clearclip", "voc21")
    assert (clear.short_side, clear.window, clear.stride, clear.class_names) == (448, 448, 224, "clearclip")
