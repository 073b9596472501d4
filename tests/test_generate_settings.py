"""``magicseg generate``'s settings: bad values are one line, exit 2, nothing written; config field
types are checked at construction; vocabulary files; the help text states the bounds. Tiny preset,
offline."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_generate_resume import TINY, _garbage_model_folder, assert_one_line, run_cli

from magicseg_hf import loading
from magicseg_hf.cli import main
from magicseg_hf.errors import InputError
from magicseg_hf.generation import GenerationConfig, generate, load_vocabulary


# ----------------------------------------------------------------------------------------------
# Bad settings: one line, exit 2, nothing written
# ----------------------------------------------------------------------------------------------
def _unwritable(tmp_path: Path) -> str:
    if os.geteuid() == 0:  # root writes through permissions; /sys is read-only for everyone
        return "/sys/magicseg-test-output"
    locked = tmp_path / "read-only"
    locked.mkdir(mode=0o500)
    return str(locked / "out")


def _evil_pickle_model(tmp_path: Path) -> Path:
    """A tiny Grounding DINO folder whose weights are a pickle that would run a command."""
    folder = tmp_path / "pickled-detector"
    model, processor = loading.load_detector("grounding-dino", "tiny:grounding-dino")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "model.safetensors").unlink()

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    torch.save({"weight": Evil()}, folder / "pytorch_model.bin")
    return folder


def _vocabulary_with_nul(tmp_path: Path) -> str:
    path = tmp_path / "nul.txt"
    path.write_text("cat\nd\x00og\n")
    return str(path)


OPENAI = ["--prompt-backend", "openai", "--prompt-model", "any"]
#: (CLI arguments after the classes, a fragment of the one line). A callable builds its arguments.
BAD_SETTINGS = [
    (["--box-threshold", "2"], "--box-threshold must be in [0, 1] (got 2.0)"),
    (["--text-threshold", "1.5"], "--text-threshold must be in [0, 1]"),
    (["--box-threshold", "-0.5"], "--box-threshold must be in [0, 1]"),
    (["--counterfactual-threshold", "-1"], "--counterfactual-threshold must be >= 0"),
    (["--guidance-scale", "-1"], "--guidance-scale must be >= 0"),
    (["--guidance-scale", "nan"], "--guidance-scale must be a finite number (got nan)"),
    (["--guidance-scale", "inf"], "--guidance-scale must be a finite number (got inf)"),
    (["--min-mask-area", "nan"], "--min-mask-area must be a finite number"),
    (["--box-threshold", "nan"], "--box-threshold must be a finite number"),
    (["--device", "tpu"], "--device must be cpu, cuda, cuda:N or mps (got 'tpu')"),
    (["--device", f"cuda:{torch.cuda.device_count() + 7}"], "--device 'cuda:"),
    (["--device", ""], "--device must name a device"),
    (["--openai-base-url", "not-a-url", *OPENAI], "--openai-base-url must be an http(s) URL"),
    (["--openai-base-url", "ftp://127.0.0.1/v1", *OPENAI], "--openai-base-url must be an http(s) URL"),
    (["--openai-base-url", "http://user:hunter2@127.0.0.1:8000/v1", *OPENAI], "must not carry credentials"),
    (["--openai-base-url", "http://127.0.0.1:8000/v1?api-key=hunter2", *OPENAI], "must not carry credentials"),
    (["--openai-base-url", "http://127.0.0.1:9/v1", *OPENAI], "cannot connect"),
    (["--num-pairs", "1000000000000"], "--num-pairs must be a positive integer of at most 10,000,000"),
    (["--max-attempts", "100000000000"], "--max-attempts must be at most"),
    (["--max-classes-per-prompt", "300"], "--max-classes-per-prompt must be at most 254"),
    (["--num-inference-steps", "5000"], "--num-inference-steps must be in 1..1000"),
    (["--classes", "ca\x00t"], "holds the control character '\\x00'"),
    (["--classes", "ca\tt"], "holds the control character '\\t'"),
    (lambda tmp: ["--classes", " ".join(["word"] * 300)], "is too long for the diffusion model's text encoder"),
    (lambda tmp: ["--classes", *(" ".join(["word"] * n) for n in (24, 23, 22)), "--max-classes-per-prompt", "3"],
     "is too long for the grounding-dino detector"),
    (lambda tmp: ["--vocabulary", _vocabulary_with_nul(tmp)], "holds the control character"),
    (lambda tmp: ["--detector-model", str(_garbage_model_folder(tmp))], "cannot load grounding-dino detector"),
    (lambda tmp: ["--detector-model", str(_evil_pickle_model(tmp))], "holds more than tensors and is refused"),
]


@pytest.mark.parametrize(("args", "message"), BAD_SETTINGS, ids=[str(i) for i in range(len(BAD_SETTINGS))])
def test_bad_settings_are_one_line_exit_2_and_nothing_written(args, message, tmp_path, capsys):
    args = args(tmp_path) if callable(args) else args
    capsys.readouterr()  # what building a test model folder printed
    out = tmp_path / "out"
    classes = [] if {"--classes", "--vocabulary"} & set(args) else ["--classes", "cat", "dog"]
    command = ["generate", *classes, "--num-pairs", "2", "--output-dir", str(out), *TINY, *args]
    start = time.perf_counter()
    code, err = run_cli(command, capsys)
    assert code == 2, err
    assert message in err
    assert_one_line(err)
    assert "hunter2" not in err
    assert time.perf_counter() - start < 30
    assert not out.exists()
    assert not (tmp_path / "PWNED").exists(), "the pickle's code never ran"


@pytest.mark.parametrize("where", ["unwritable", "below a file"])
def test_an_output_dir_that_cannot_be_written_is_one_line(where, tmp_path, capsys):
    if where == "unwritable":
        out = _unwritable(tmp_path)
        expected = "is not writable" if os.geteuid() != 0 else "cannot be created"
    else:
        (tmp_path / "file.txt").write_text("x")
        out = str(tmp_path / "file.txt" / "out")
        expected = "cannot be created"
    code, err = run_cli(["generate", "--classes", "cat", "--num-pairs", "1", "--output-dir", out, *TINY], capsys)
    assert code == 2 and f"--output-dir {out!r} {expected}" in err
    assert_one_line(err)
    assert not Path(out).exists()


@pytest.mark.parametrize(
    ("kwargs", "field", "expected"),
    [
        ({"classes": "cat"}, "classes", "a list of class names or None (got 'cat', a str)"),
        ({"classes": ["cat", 3]}, "classes", "a list of class names"),
        ({"num_pairs": 2.5}, "num_pairs", "an integer (got 2.5, a float)"),
        ({"num_pairs": True}, "num_pairs", "an integer (got True, a bool)"),
        ({"batch_size": 0.5}, "batch_size", "an integer"),
        ({"guidance_scale": "high"}, "guidance_scale", "a number or None (got 'high', a str)"),
        ({"box_threshold": "0.3"}, "box_threshold", "a number or None (got '0.3', a str)"),
        ({"seed": "1"}, "seed", "an integer"),
        ({"safety_checker": "yes"}, "safety_checker", "True or False"),
        ({"detector": 3}, "detector", "a string or None (got 3, a int)"),
        ({"height": 64.0}, "height", "an integer or None"),
    ],
)
def test_config_field_types_are_checked_at_construction(kwargs, field, expected):
    with pytest.raises(InputError) as caught:
        GenerationConfig(**{"classes": ["cat"], "preset": "tiny", **kwargs})
    assert str(caught.value).startswith(f"GenerationConfig.{field} must be {expected}")


def test_config_takes_numpy_numbers_paths_and_tuples_as_their_python_values(tmp_path):
    config = GenerationConfig(classes=("cat", "dog"), num_pairs=np.int64(2), guidance_scale=np.float32(3.0),
                              vocabulary=None, sam_checkpoint=tmp_path / "sam.pth", preset="tiny")
    assert config.classes == ["cat", "dog"] and type(config.num_pairs) is int
    assert type(config.guidance_scale) is float and config.sam_checkpoint == str(tmp_path / "sam.pth")
    json.dumps(config.to_dict())  # generation.json can hold it


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"guidance_scale": float("nan")}, "`guidance_scale` must be a finite number"),
        ({"guidance_scale": -2.0}, "`guidance_scale` must be >= 0"),
        ({"box_threshold": 2.0}, "`box_threshold` must be in [0, 1]"),
        ({"counterfactual_threshold": -1.0}, "`counterfactual_threshold` must be >= 0"),
        ({"num_pairs": 10**12}, "`num_pairs` must be a positive integer of at most"),
        ({"openai_base_url": "http://u:hunter2@localhost:1/v1", "prompt_backend": "openai"}, "credentials"),
        ({"device": "tpu"}, "`device` must be"),
        ({"classes": ["cat", "ca\x00t"]}, "control character"),
    ],
)
def test_the_python_api_refuses_bad_settings_before_writing(kwargs, message, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")) as caught:
        generate(GenerationConfig(**{"classes": ["cat"], "num_pairs": 1, "preset": "tiny", **kwargs}), out)
    assert "hunter2" not in str(caught.value)
    assert not out.exists()


def test_vocabulary_files_drop_a_byte_order_mark_and_refuse_control_characters(tmp_path):
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffcat\r\ndog\n".encode())
    assert load_vocabulary(str(bom)) == ["cat", "dog"]
    with pytest.raises(InputError, match="control character"):
        load_vocabulary(_vocabulary_with_nul(tmp_path))


def test_help_states_the_bounds_and_the_resume_behaviour(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for fragment in ("1..10,000,000", "in [0, 1]", "a finite number >= 0", "settings saved there",
                     "without credentials", "cpu, cuda, cuda:N or mps"):
        assert fragment in text, fragment
