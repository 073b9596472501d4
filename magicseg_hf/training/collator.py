"""``MagicSegCollator``: dataset rows -> a training batch, with category random sampling.

Each row is trained against K = min(num_classes, |vocabulary|) classes: its own classes first
(in the row's label order, so dataset class id ``i`` becomes position ``i - 1``), then negatives
drawn uniformly without replacement from the rest of the vocabulary — as the paper's code does.
The draw, like the augmentation, is a pure function of (seed, row id, epoch) through
:mod:`magicseg_hf.seeding`: DataLoader workers never repeat each other's draws and a resumed run
draws exactly what the interrupted one would have. The epoch is set by the trainer
(:meth:`MagicSegCollator.set_epoch`) before each epoch's DataLoader iterator starts.

Class embeddings are computed once for the whole vocabulary (``model.encode_classes``) and
gathered per row, so no text-encoder forward happens during training.

The collator runs wherever the DataLoader collates: in DataLoader worker processes
(``dataloader_num_workers > 0``) and on every process of a multi-process run, so its own counters
(``skipped_rows``, ``bad_label_pixels``) see only the batches collated in its own process. With
``count_in_batch=True`` each batch also carries its counts (:data:`COUNT_KEYS`, one value per kept
row), and they reach the trainer with the batch, whichever process collated it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from magicseg_hf.errors import InputError, first_line
from magicseg_hf.labels import MAX_CLASSES_PER_CALL, UNKNOWN, dataset_to_model_labels
from magicseg_hf.seeding import derive_seed, seeded_random
from magicseg_hf.training.transforms import AugmentationSettings, PairTransform

logger = logging.getLogger(__name__)

#: Seed namespaces of the collator's draws.
NEGATIVES_STREAM = "magicseg-train-negatives"
AUGMENT_STREAM = "magicseg-train-augment"
#: Unreadable rows named in the log; later ones are counted only.
MAX_NAMED_SKIPS = 5
#: The "epoch" of evaluation batches: fixed negatives, the same at every evaluation.
EVAL_EPOCH = "eval"
#: Batch keys of the data counts (``count_in_batch=True``), (B,) int64 each: ``num_skipped_rows``,
#: the rows left out of the batch (carried by its first row, 0 on the others), and
#: ``num_bad_label_pixels``, each row's label pixels outside its classes. They are per row, not
#: 0-d, so that a data loader that concatenates and re-slices batches along rows (accelerate's
#: ``dispatch_batches`` for streamed data, ``split_batches``) keeps each count with its row (a
#: row such a loader drops, to split rows evenly over processes, takes its counts with it).
COUNT_KEYS = ("num_skipped_rows", "num_bad_label_pixels")


class MagicSegCollator:
    """Turn MagicSeg rows into model inputs.

    Args:
        processor: the model's ``CLIPOpenSegProcessor`` (its image processor's mean/std and size are used).
        vocabulary: every class name the run trains on (negatives are drawn from it).
        class_embeds: ``(len(vocabulary), D)`` class embeddings, ``model.encode_classes(vocabulary)``.
        num_classes: K, classes per row (the paper: 100); capped by the vocabulary size.
        augment: random resize/crop/flip/photometric (training) or a deterministic resize (evaluation).
        crop_size: output side; default the processor's model size.
        seed: the run's seed.
        counterfactual: also return ``counterfactual_pixel_values`` (off when the counterfactual
            loss weight is 0, to save the second image forward).
        fixed_negatives: draw every row's negatives once and for all (evaluation).
        settings: augmentation ranges.
        count_in_batch: also return the batch's data counts (:data:`COUNT_KEYS`), for a trainer that
            sums them (``MagicSegTrainer`` does, and keeps them from the model); off, the batch
            holds model inputs and ``class_ids`` only.

    Returns (from ``__call__``) a dict: ``pixel_values`` (B, 3, S, S), ``counterfactual_pixel_values``
    (B, 3, S, S), ``labels`` (B, S, S) int64 (positions, ``none_label``, ``ignore_label``),
    ``class_embeds`` (B, K, D) and ``class_ids`` (B, K) int64 (vocabulary indices of the K classes);
    with ``count_in_batch``, ``num_skipped_rows`` (B,) and ``num_bad_label_pixels`` (B,) int64 too.
    """

    def __init__(
        self,
        processor: Any,
        vocabulary: Sequence[str],
        class_embeds: torch.Tensor,
        num_classes: int = 100,
        augment: bool = True,
        crop_size: int | None = None,
        seed: int = 0,
        counterfactual: bool = True,
        fixed_negatives: bool = False,
        settings: AugmentationSettings | None = None,
        count_in_batch: bool = False,
    ) -> None:
        self.vocabulary = list(vocabulary)
        if not self.vocabulary:
            raise ValueError("the vocabulary is empty (got no class names)")
        if len(set(self.vocabulary)) != len(self.vocabulary):
            raise ValueError("the vocabulary lists a class twice")
        if class_embeds.dim() != 2 or class_embeds.shape[0] != len(self.vocabulary):
            raise ValueError(
                f"class_embeds must have shape (len(vocabulary)={len(self.vocabulary)}, D) "
                f"(got {tuple(class_embeds.shape)})"
            )
        if not 1 <= num_classes < MAX_CLASSES_PER_CALL:
            raise ValueError(
                f"num_classes must lie in 1..{MAX_CLASSES_PER_CALL - 1} (position {MAX_CLASSES_PER_CALL} is "
                f"the model's none_label) (got {num_classes})"
            )
        self.index = {name: i for i, name in enumerate(self.vocabulary)}
        self.class_embeds = class_embeds.detach().cpu()
        self.num_classes = min(int(num_classes), len(self.vocabulary))
        image_processor = getattr(processor, "image_processor", processor)
        size = crop_size or _processor_size(image_processor)
        self.transform = PairTransform(
            size, image_processor.image_mean, image_processor.image_std, train=augment, settings=settings
        )
        self.seed = int(seed)
        self.counterfactual = counterfactual
        self.fixed_negatives = fixed_negatives
        self.count_in_batch = count_in_batch
        self.epoch: int | str = EVAL_EPOCH if fixed_negatives else 0
        self.bad_label_pixels = 0
        self.skipped_rows = 0
        self.skipped_row_ids: list[str] = []
        self._warned = False

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's negatives and augmentations (ignored with ``fixed_negatives``)."""
        if not self.fixed_negatives:
            self.epoch = int(epoch)

    def classes_for(self, row_id: str, classes: Sequence[str]) -> list[int]:
        """The K vocabulary indices a row trains against: its own classes, then negatives."""
        unknown = [c for c in classes if c not in self.index]
        if unknown:
            raise ValueError(f"row {row_id!r} has classes {unknown} that are not in the vocabulary")
        own = [self.index[c] for c in classes][: self.num_classes]
        taken = set(own)
        rest = [i for i in range(len(self.vocabulary)) if i not in taken]
        rng = seeded_random(NEGATIVES_STREAM, self.seed, row_id, self.epoch)
        return own + rng.sample(rest, self.num_classes - len(own))

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pixels, counterfactuals, labels, class_ids, bad_pixels = [], [], [], [], []
        skipped = 0
        for row in rows:
            row_id, classes = str(row["id"]), list(row["classes"])
            ids = self.classes_for(row_id, classes)
            try:
                image, counterfactual, label = self._decode(row)
            except UnreadableRow as error:
                self._skip(row_id, str(error))
                skipped += 1
                continue
            seed = derive_seed(AUGMENT_STREAM, self.seed, row_id, self.epoch)
            bad_pixels.append(self._count_bad_labels(np.asarray(label), len(classes), row_id))
            image, counterfactual, label = self.transform(image, counterfactual, label, seed)
            label = label.numpy()
            kept = min(len(classes), self.num_classes)
            positions = {class_id: class_id - 1 for class_id in range(1, kept + 1)}
            labels.append(torch.from_numpy(dataset_to_model_labels(label, positions)))
            pixels.append(image)
            if counterfactual is not None:
                counterfactuals.append(counterfactual)
            class_ids.append(ids)
        if not pixels:
            raise InputError(
                f"every row of a batch is unreadable (rows {', '.join(repr(str(r['id'])) for r in rows)}): "
                "check the dataset with `magicseg validate`"
            )
        ids = torch.tensor(class_ids, dtype=torch.long)  # (B, K)
        batch = {
            "pixel_values": torch.stack(pixels),
            "labels": torch.stack(labels),
            "class_embeds": self.class_embeds[ids],  # (B, K, D)
            "class_ids": ids,
        }
        if counterfactuals:
            batch["counterfactual_pixel_values"] = torch.stack(counterfactuals)
        if self.count_in_batch:
            num_skipped = torch.zeros(len(pixels), dtype=torch.long)  # (B,)
            num_skipped[0] = skipped
            batch["num_skipped_rows"] = num_skipped
            batch["num_bad_label_pixels"] = torch.tensor(bad_pixels, dtype=torch.long)  # (B,)
        return batch

    def _decode(self, row: dict[str, Any]) -> tuple[Image.Image, Image.Image | None, Image.Image]:
        """The row's image, counterfactual (None when not used) and label, read in full and checked
        to be the same size.

        Raises:
            UnreadableRow: a picture that cannot be decoded, or pictures of different sizes.
        """
        image = _read_picture(row["image"], "image")
        label = _read_picture(row["label"], "label")
        counterfactual = None
        if self.counterfactual:
            counterfactual = _read_picture(row.get("counterfactual_image"), "counterfactual_image")
        sizes = {"image": image.size, "label": label.size}
        if counterfactual is not None:
            sizes["counterfactual_image"] = counterfactual.size
        if len(set(sizes.values())) > 1:
            raise UnreadableRow("sizes differ: " + ", ".join(f"{k} {w}x{h}" for k, (w, h) in sizes.items()))
        return image, counterfactual, label

    def _skip(self, row_id: str, reason: str) -> None:
        """Leave an unreadable row out of its batch: counted (``skipped_rows``), the first few named."""
        self.skipped_rows += 1
        if self.skipped_rows <= MAX_NAMED_SKIPS:
            self.skipped_row_ids.append(row_id)
            more = " (further unreadable rows are counted silently)" if self.skipped_rows == MAX_NAMED_SKIPS else ""
            logger.warning("skipping row %r: %s%s", row_id, reason, more)

    def _count_bad_labels(self, label: np.ndarray, num_row_classes: int, row_id: str) -> int:
        """Label values naming no class of the row (not 0, 1..n or 255): counted (in the dataset's
        pixels, before augmentation), ignored, warned once. Returns the row's count."""
        bad = int(((label > num_row_classes) & (label != UNKNOWN)).sum())
        if not bad:
            return 0
        self.bad_label_pixels += bad
        if not self._warned:
            self._warned = True
            logger.warning(
                "row %r has %d label pixels with values outside its %d classes; they are ignored "
                "(further rows like it are counted silently)", row_id, bad, num_row_classes,
            )
        return bad


class UnreadableRow(ValueError):
    """A row whose pictures cannot be decoded or do not fit each other."""


def _read_picture(value: Any, column: str) -> Image.Image:
    """A row's picture, read in full: a PIL image, or a stored cell (``{"bytes", "path"}``) that the
    training data leaves undecoded so that a corrupt one is caught here, per row."""
    if value is None:
        raise UnreadableRow(f"{column} is missing")
    try:
        if isinstance(value, dict):
            if value.get("bytes"):
                value = Image.open(io.BytesIO(value["bytes"]))
            elif value.get("path"):
                value = Image.open(value["path"])
            else:
                raise UnreadableRow(f"{column} holds no picture")
        value.load()
    except UnreadableRow:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableRow(f"{column} cannot be decoded ({first_line(error)})") from error
    return value


def _processor_size(image_processor: Any) -> int:
    """The model's square input side from the image processor's pad or resize size."""
    for attribute in ("pad_size", "size"):
        size = getattr(image_processor, attribute, None)
        for key in ("height", "max_height", "shortest_edge"):
            value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
            if value:
                return int(value)
    raise ValueError("cannot tell the model's input size from the image processor: pass crop_size")
