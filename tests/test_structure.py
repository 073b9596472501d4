"""The package's shape: a command line that answers without torch, no import cycles, lazy registration."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import magicseg_hf

PACKAGE_ROOT = Path(magicseg_hf.__file__).parent


def _modules_loaded_by(code: str) -> set[str]:
    """Top-level names of the modules that ``python -c code`` has imported when it ends."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        "import magicseg_hf",
        "import magicseg_hf.generation.config",
        "import magicseg_hf.presets",
        "from magicseg_hf.cli import build_parser; build_parser(['--help'])",
        "from magicseg_hf.cli import build_parser; build_parser(['generate', '--help'])",
        "from magicseg_hf.cli import build_parser; build_parser(['validate', '--help'])",
    ],
)
def test_light_entry_points_do_not_import_torch(code: str):
    loaded = _modules_loaded_by(code)
    assert not {"torch", "transformers", "diffusers", "datasets"} & loaded


@pytest.mark.parametrize("argv", [["--help"], ["generate", "--help"], ["validate", "--help"], ["push", "--help"]])
def test_help_answers(argv: list[str]):
    result = subprocess.run([sys.executable, "-m", "magicseg_hf", *argv], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: magicseg")


def test_import_registers_the_model_when_transformers_comes_later(tmp_path: Path):
    # A folder saved by the model; a fresh process imports magicseg_hf first, transformers after.
    from magicseg_hf.loading import build_open_seg

    model, processor = build_open_seg("tiny")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    code = (
        "import magicseg_hf, sys\n"
        "assert 'torch' not in sys.modules\n"
        "from transformers import AutoModel, AutoProcessor, pipeline\n"
        f"model = AutoModel.from_pretrained({str(tmp_path)!r})\n"
        f"processor = AutoProcessor.from_pretrained({str(tmp_path)!r})\n"
        f"pipe = pipeline('open-vocabulary-segmentation', model={str(tmp_path)!r})\n"
        "print(type(model).__name__, type(processor).__name__, type(pipe).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["CLIPForOpenSegmentation", "CLIPOpenSegProcessor", "OpenVocabularySegmentationPipeline"]


def _package_modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        relative = path.relative_to(PACKAGE_ROOT).with_suffix("")
        parts = ["magicseg_hf", *relative.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Package modules imported anywhere in a module (inside functions too), resolved to known names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_no_import_cycles_counting_imports_inside_functions():
    modules = _package_modules()
    known = set(modules)
    graph = {name: _imports_of(name, path, known) for name, path in modules.items()}
    # A package's __init__ importing its own submodules is how packages work, not a cycle of jobs.
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


@pytest.mark.parametrize(
    "module", ["magicseg_hf", "magicseg_hf.generation", "magicseg_hf.evaluation", "magicseg_hf.presets"]
)
def test_lazy_names_resolve_to_their_defining_module(module: str):
    """Every lazily exported name is found where the export table says, and is listed by dir()."""
    package = importlib.import_module(module)
    table = getattr(package, "_LAZY", None) or getattr(package, "_EXPORTS", None) or package._FORWARDED
    for name, source in table.items():
        value = getattr(package, name)
        assert value is getattr(importlib.import_module(source), name)
        assert name in dir(package)
    with pytest.raises(AttributeError, match=rf"module '{module}' has no attribute 'not_a_name'"):
        package.not_a_name  # noqa: B018
