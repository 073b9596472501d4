"""One way from settings to a command line (magicseg_hf.settings) and one runtime module
(magicseg_hf.runtime): devices, dtypes and the package-version record."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from magicseg_hf import runtime, settings
from magicseg_hf.cli import VERBS, Parser, build_parser, main
from magicseg_hf.errors import InputError

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "magicseg_hf"


@dataclass
class _Example:
    name: str = field(metadata={"help": "A positional.", "flag": "NAME"})
    count: int = field(default=3, metadata={"help": "How many."})
    ratio: float | None = field(default=None, metadata={"help": "A ratio."})
    words: list[str] | None = field(default=None, metadata={"help": "Words.", "metavar": "W"})
    kinds: tuple[str, ...] = field(default=("a", "b"), metadata={"help": "Kinds.", "group": "more"})
    mode: str = field(default="x", metadata={"help": "A mode.", "choices": ("x", "y")})
    quiet: bool = field(default=False, metadata={"help": "Say less."})
    check: bool = field(default=True, metadata={"help": "Check things."})
    out: str | None = field(default=None, metadata={"help": "Where.", "required": True})
    record: list[str] = field(default_factory=list)  # no help: not a flag


def _parser(**kwargs) -> argparse.ArgumentParser:
    parser = Parser(prog="t")
    settings.add_arguments(parser, _Example, **kwargs)
    return parser


def test_fields_become_typed_flags_with_their_metadata() -> None:
    args = _parser().parse_args(["n", "--count", "5", "--ratio", "0.5", "--words", "a", "b", "--kinds", "k",
                                 "--mode", "y", "--quiet", "--no-check", "--out", "o"])
    example = settings.from_args(_Example, args)
    assert example == _Example(name="n", count=5, ratio=0.5, words=["a", "b"], kinds=["k"], mode="y", quiet=True,
                               check=False, out="o")
    assert not hasattr(args, "record")
    defaults = _parser().parse_args(["n", "--out", "o"])
    assert (defaults.count, defaults.ratio, defaults.kinds, defaults.check) == (3, None, ["a", "b"], True)


@pytest.mark.parametrize("argv", [["n", "--out", "o", "--count", "two"], ["n", "--out", "o", "--mode", "z"], ["n"]])
def test_a_bad_value_is_one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(argv)
    assert exit_.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_given_flags_are_recorded_when_asked() -> None:
    args = _parser(record_given=True).parse_args(["n", "--out", "o", "--count", "3", "--no-check"])
    assert settings.given_settings(args) == {"check": False, "count": 3, "out": "o"}


def test_unknown_metadata_is_refused() -> None:
    @dataclass
    class Bad:
        x: int = field(default=0, metadata={"help": "x", "hlep": "typo"})

    with pytest.raises(TypeError, match="hlep"):
        settings.add_arguments(Parser(prog="t"), Bad)


def test_every_verb_takes_its_flags_from_settings_dataclasses() -> None:
    """No module of the package writes an add_argument call of its own (the one exception: the
    command's global -v/--verbose); TrainingArguments is the only HfArgumentParser."""
    calls = []
    for path in PACKAGE_ROOT.rglob("*.py"):
        if path.name == "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
                calls.append((path.relative_to(PACKAGE_ROOT).as_posix(), node.args[0].value))
    assert calls == [("cli.py", "-v")]
    parser = build_parser()
    verbs = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))  # noqa: SLF001
    assert set(verbs.choices) == {verb.name for verb in VERBS}
    for verb in VERBS:
        assert not hasattr(verb.load(), "HELP"), f"{verb.name}: the one-line help lives in cli.VERBS"
        for action in verbs.choices[verb.name]._actions:  # noqa: SLF001
            if action.option_strings and action.dest != "help":
                assert action.option_strings[0] == settings.flag_name(action.dest), (verb.name, action.dest)


@pytest.mark.parametrize("verb", [None, *(verb.name for verb in VERBS)])
def test_help_imports_no_model_library(verb: str | None) -> None:
    code = (
        "import sys\nfrom magicseg_hf.cli import main\n"
        f"try:\n    main({[verb, '--help'] if verb else ['--help']!r})\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'diffusers', 'datasets') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


# ----------------------------------------------------------------------------------------------
# runtime
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_device_names_are_one_rule(name: str) -> None:
    runtime.check_device_name(name)


@pytest.mark.parametrize("name", ["tpu", "gpu", "", "cuda:", "cuda:-1", "CPU", " cpu", None, 0])
def test_bad_device_names_are_refused_naming_the_parameter(name: object) -> None:
    with pytest.raises(InputError, match=r"`device` must be auto, cpu, cuda, cuda:N or mps"):
        runtime.check_device_name(name)


def test_generation_spells_auto_by_leaving_the_device_out() -> None:
    with pytest.raises(InputError, match=r"`device` must be cpu, cuda, cuda:N or mps \(got 'auto'\)"):
        runtime.check_device_name("auto", auto=False)


def test_resolve_device_checks_this_machine() -> None:
    import torch

    assert runtime.resolve_device("cpu") == torch.device("cpu")
    assert runtime.resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(InputError, match="`device` 'cuda:"):
        runtime.resolve_device(f"cuda:{count + 3}")
    if not torch.backends.mps.is_available():
        with pytest.raises(InputError, match="MPS is not available"):
            runtime.resolve_device("mps")


def test_dtypes() -> None:
    import torch

    assert runtime.resolve_dtype("auto", "cpu") == torch.float32
    assert runtime.resolve_dtype("auto", "cuda") == torch.float16
    assert [runtime.resolve_dtype(name) for name in runtime.DTYPE_NAMES] == [torch.float32, torch.float16,
                                                                              torch.bfloat16]
    with pytest.raises(InputError, match="`dtype` must be one of float32, float16, bfloat16"):
        runtime.check_dtype_name("auto", auto=False)


def test_the_version_record_has_one_set_of_keys_and_old_records_still_read() -> None:
    versions = runtime.package_versions(("pycocotools",))
    assert set(versions) >= {"magicseg_hf", "torch", "transformers", "datasets", "diffusers", "accelerate",
                             "huggingface_hub", "python"}
    assert list(versions)[0] == "magicseg_hf" and list(versions)[-1] == "python"
    assert runtime.recorded_versions({"package_versions": versions}) == versions
    older = {"package_version": "0.1.0", "library_versions": {"torch": "2.14.1", "diffusers": "0.42.1"}}
    assert runtime.recorded_versions(older) == {"magicseg_hf": "0.1.0", "torch": "2.14.1", "diffusers": "0.42.1"}
    assert runtime.recorded_versions(None) == {}


def test_runtime_and_settings_import_no_model_library() -> None:
    code = ("import sys\nimport magicseg_hf.runtime, magicseg_hf.settings\n"
            "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_device_error_names_the_verbs_flag(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    assert main(["predict", "--model", str(tmp_path), "--image", str(image), "--device", "tpu"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "magicseg predict: error: --device must be auto, cpu, cuda, cuda:N or mps (got 'tpu')"
