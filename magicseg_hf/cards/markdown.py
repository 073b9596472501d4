"""Small text helpers shared by the card renderers (dataset card and model card)."""

from __future__ import annotations

from typing import Any


def md_cell(text: Any) -> str:
    """``text`` made safe for one markdown table cell: ``|`` escaped, line breaks turned into spaces."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def fmt_value(value: Any) -> str:
    """A setting as a card shows it: "—" for None, floats in ``%g`` form (``0.0002``, ``1e-06``)."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
