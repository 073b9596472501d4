"""The label mapping of an export and the ``datasets`` view that applies it without a copy.

Label mapping (:func:`label_table`): for a row with ``classes`` and the folder's vocabulary,

- source 0 (background) -> 0,
- source ``i`` in 1..len(classes) -> ``vocabulary.index(classes[i-1]) + 1``,
- source 255 (unknown) -> 255,

and any other source value is an error (the row is named). The exported ``label`` therefore holds
one global id per class over the whole dataset, the convention of transformers' semantic-segmentation
recipe (``id2label.json``: ``{"0": "background", "1": vocabulary[0], ...}``, ``do_reduce_labels=False``)
and of mmsegmentation (``reduce_zero_label=False``, ``ignore_index=255``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from magicseg_hf.errors import InputError
from magicseg_hf.export import BACKGROUND_NAME
from magicseg_hf.folder import DatasetFolder
from magicseg_hf.labels import BACKGROUND, UNKNOWN
from magicseg_hf.schema import VOCABULARY_FILE


# ----------------------------------------------------------------------------------------------
# Label mapping
# ----------------------------------------------------------------------------------------------
def id2label(vocabulary: Sequence[str]) -> dict[str, str]:
    """The export's ``id2label`` (string keys, as ``id2label.json`` holds it): ``"0"`` background,
    ``str(k + 1)`` = ``vocabulary[k]``. 255 (unknown) is not a class and is not listed."""
    return {"0": BACKGROUND_NAME, **{str(k + 1): name for k, name in enumerate(vocabulary)}}


def label_table(classes: Sequence[str], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """The lookup tables that turn one row's label into global ids.

    Args:
        classes: the row's ``classes`` (source value ``i`` = ``classes[i-1]``).
        index: vocabulary name -> position in ``vocabulary.txt`` (0-based).

    Returns:
        ``(table, valid)``, each (256,): ``table`` uint8 maps a source value to its global id
        (0 -> 0, i -> ``index[classes[i-1]] + 1``, 255 -> 255); ``valid`` bool marks the source
        values a label may hold (0..len(classes) and 255).

    Raises:
        KeyError: a class of ``classes`` is not in ``index``.
    """
    table = np.full(256, UNKNOWN, dtype=np.uint8)
    valid = np.zeros(256, dtype=bool)
    table[BACKGROUND] = BACKGROUND
    valid[BACKGROUND] = valid[UNKNOWN] = True
    for position, name in enumerate(classes, start=1):
        table[position] = index[name] + 1
        valid[position] = True
    return table, valid


def global_label(label: np.ndarray | Image.Image, classes: Sequence[str], index: dict[str, int]) -> np.ndarray:
    """One row's label in global ids.

    Args:
        label: (H, W) uint8 source label (0 background, i = ``classes[i-1]``, 255 unknown).
        classes: the row's ``classes``.
        index: vocabulary name -> 0-based position in ``vocabulary.txt``.

    Returns:
        (H, W) uint8: 0 background, ``index[name] + 1`` per class, 255 unknown.

    Raises:
        KeyError: a class is not in ``index``.
        ValueError: the label holds a value outside 0..len(classes) and 255.
    """
    array = np.asarray(label, dtype=np.uint8)
    table, valid = label_table(classes, index)
    if not valid[array].all():
        bad = sorted(set(np.unique(array).tolist()) - set(np.flatnonzero(valid).tolist()))
        raise ValueError(f"label values {bad} outside 0..{len(classes)} and {UNKNOWN}")
    return table[array]


# ----------------------------------------------------------------------------------------------
# The datasets transform (the semantic view without a copy)
# ----------------------------------------------------------------------------------------------
def semantic_transform(
    vocabulary: Sequence[str], with_counterfactual: bool = False
) -> Callable[[dict[str, list[Any]]], dict[str, list[Any]]]:
    """A ``Dataset.with_transform`` function giving the rows of a ``semantic`` export.

    ``load_dataset(DIR, split="train").with_transform(semantic_transform(vocabulary))[i]`` equals
    row ``i`` of ``magicseg export DIR --format semantic`` (same ``id``, same image pixels, same
    ``label`` pixels), decoded lazily and without writing anything.

    Args:
        vocabulary: the lines of the folder's ``vocabulary.txt``.
        with_counterfactual: also return ``counterfactual_image``.

    Returns:
        ``transform(batch) -> batch``: ``batch`` holds decoded columns (``image`` and ``label`` PIL
        images, ``classes`` lists); the result holds ``id``, ``image``, ``label`` (PIL mode "L",
        global ids) and, if asked, ``counterfactual_image``.
    """
    index = {name: k for k, name in enumerate(vocabulary)}

    def transform(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        labels = []
        for row_id, label, classes in zip(batch["id"], batch["label"], batch["classes"]):
            try:
                labels.append(Image.fromarray(global_label(label, classes, index), "L"))
            except KeyError as error:
                raise InputError(f"row {row_id!r}: class {error.args[0]!r} is not a line of {VOCABULARY_FILE}") from None
            except ValueError as error:
                raise InputError(f"row {row_id!r}: {error}") from None
        out = {"id": list(batch["id"]), "image": list(batch["image"]), "label": labels}
        if with_counterfactual:
            out["counterfactual_image"] = list(batch["counterfactual_image"])
        return out

    return transform


def semantic_view(source: str | Path, split: str = "train", with_counterfactual: bool = False) -> Any:
    """``load_dataset(source, split=split)`` with :func:`semantic_transform`: the rows of a
    ``semantic`` export of dataset folder ``source``, computed on access (a ``datasets.Dataset``)."""
    import datasets

    folder = DatasetFolder(source)
    vocabulary = folder.read_vocabulary()
    dataset = datasets.load_dataset(str(folder.root), split=split)
    return dataset.with_transform(semantic_transform(vocabulary, with_counterfactual=with_counterfactual))


def semantic_features(with_counterfactual: bool = False) -> Any:
    """The ``datasets.Features`` of a semantic export: ``id``, ``image``, ``label`` (mode "L") and,
    if asked, ``counterfactual_image``."""
    import datasets

    columns = {"id": datasets.Value("string"), "image": datasets.Image(), "label": datasets.Image(mode="L")}
    if with_counterfactual:
        columns["counterfactual_image"] = datasets.Image()
    return datasets.Features(columns)


