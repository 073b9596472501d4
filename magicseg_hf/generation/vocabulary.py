"""Class vocabularies: the shipped lists (LVIS, VOC, Context, COCO) or a user's file.

Every vocabulary text, shipped or not, is read by the one parser of vocabulary files
(:func:`magicseg_hf.folder.parse_vocabulary_lines`): one class per non-blank line, no repeats, no
control characters; a UTF-8 byte-order mark at the start is dropped.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from magicseg_hf.errors import InputError
from magicseg_hf.folder import check_class_name, parse_vocabulary_lines

#: Short names accepted by ``--vocabulary`` -> shipped file.
SHIPPED_VOCABULARIES = {
    "lvis": "lvis.txt",
    "voc": "voc20.txt",
    "voc20": "voc20.txt",
    "context": "context59.txt",
    "context59": "context59.txt",
    "coco": "coco80.txt",
    "coco80": "coco80.txt",
}


def load_vocabulary(name_or_path: str) -> list[str]:
    """The class list of a shipped vocabulary (``lvis``, ``voc``, ``context``, ``coco``) or a
    text file with one class per line (exact lines kept, LVIS qualifiers included)."""
    key = name_or_path.strip().lower()
    if key in SHIPPED_VOCABULARIES:
        text = (resources.files("magicseg_hf") / "vocabularies" / SHIPPED_VOCABULARIES[key]).read_text("utf-8")
        return parse_vocabulary_lines(text, repr(key))
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise InputError(
            f"unknown vocabulary {name_or_path!r}: use one of lvis, voc, context, coco or a text file "
            "with one class per line"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read vocabulary file {str(path)!r}: {error}") from error
    return parse_vocabulary_lines(text, repr(str(path)))


def resolve_classes(classes: list[str] | None, vocabulary: str | None) -> list[str]:
    """The run's vocabulary from ``--classes`` or ``--vocabulary`` (exactly one of them)."""
    if classes and vocabulary:
        raise InputError("pass either `classes` or `vocabulary`, not both")
    if vocabulary:
        return load_vocabulary(vocabulary)
    if not classes:
        raise InputError("no classes given: pass `classes` NAME [NAME ...] or `vocabulary` lvis|voc|context|coco|FILE")
    for name in classes:
        check_class_name(name, "`classes`")
    names = [c.strip() for c in classes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"`classes` lists {duplicates} more than once")
    return names
