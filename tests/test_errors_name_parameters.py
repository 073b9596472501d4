"""Library errors name the parameter a caller gave, not a command-line flag (issue 21).

A Python caller of ``predict_images`` or ``generate()`` must not read ``--threshold must lie ...``:
outside the command modules, a message names the parameter between backticks (``threshold``), and
the command line writes it as the flag (:func:`magicseg_hf.errors.as_flags`). This walks every
``raise`` of the package and looks for a flag in its message text.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import magicseg_hf

ROOT = Path(magicseg_hf.__file__).resolve().parent
REPOSITORY = ROOT.parent
#: Modules that are the command layer: they speak in flags.
COMMAND_MODULES = {
    "magicseg_hf/cli.py", "magicseg_hf/demo.py", "magicseg_hf/generation/run.py", "magicseg_hf/training/run.py",
    "magicseg_hf/evaluation/run.py", "magicseg_hf/export/run.py",
}
#: Command functions inside library modules (module -> function names).
COMMAND_FUNCTIONS = {"magicseg_hf/predict.py": {"run", "_check_outputs", "add_arguments", "_check_model_source"}}
#: A flag written out, or the "--" an f-string puts before a name it fills in (f"--{name} ...").
FLAG = re.compile(r"(?<![\w`-])--(?:[a-z][a-z0-9_-]*|$)")


def _sources() -> list[Path]:
    files = sorted(ROOT.rglob("*.py"))
    files += sorted((REPOSITORY / "modeling").glob("*.py")) + sorted((REPOSITORY / "dataset_builders").rglob("*.py"))
    return [path for path in files if "__pycache__" not in path.parts]


def _texts(node: ast.AST) -> list[str]:
    """The literal text of every string in ``node`` (f-string parts included)."""
    return [child.value for child in ast.walk(node) if isinstance(child, ast.Constant) and isinstance(child.value, str)]


def _flags_in_raises(path: Path, skip_functions: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []

    def visit(node: ast.AST, inside: str | None) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside = node.name if inside is None else inside
        if isinstance(node, ast.Raise) and node.exc is not None and inside not in skip_functions:
            for text in _texts(node.exc):
                found.extend(f"{path.relative_to(REPOSITORY)}:{node.lineno}: {flag}" for flag in FLAG.findall(text))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, None)
    return found


def test_no_library_error_names_a_flag():
    offenders = []
    for path in _sources():
        name = str(path.relative_to(REPOSITORY)).replace("modeling/", "magicseg_hf/modeling/", 1) \
            if path.parts[-2] == "modeling" and "magicseg_hf" not in path.parts else str(path.relative_to(REPOSITORY))
        if name in COMMAND_MODULES:
            continue
        offenders += _flags_in_raises(path, COMMAND_FUNCTIONS.get(name, set()))
    assert offenders == [], f"{len(offenders)} library errors name a flag:\n" + "\n".join(offenders)
