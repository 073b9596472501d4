"""``MagicSeg``: a ``datasets`` builder that manufactures its data with :func:`generate`.

datasets 5 has no loading scripts, so the builder is used as a class::

    from magicseg_hf.dataset_builders.magicseg import MagicSeg

    builder = MagicSeg(cache_dir="cache", preset="tiny", classes=["cat", "dog"], num_pairs=3, seed=0)
    builder.download_and_prepare()
    ds = builder.as_dataset(split="train")

Its :class:`MagicSegConfig` is a plain dataclass that inherits from both ``datasets.BuilderConfig``
and :class:`~magicseg_hf.generation.GenerationConfig` — every generation setting is a config field
with the same name and default, no second list —
and ``_split_generators`` calls the generation engine into a work folder under the builder's
cache (``<cache_dir>/magicseg/<config_id>/generation``, a complete dataset folder with its card,
kept for inspection and resumed if a run was interrupted), then yields that folder's rows.

The config id (and so the cache entry) is a hash of the *resolved* generation settings (preset
defaults filled in, model ids and revisions included), the package version and the content of
the vocabulary: re-running with the same settings is a cache hit, and another package version,
model revision or vocabulary file content is a different entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets

import magicseg_hf
from magicseg_hf.cards.paper import PAPER_CITATION, PAPER_URL
from magicseg_hf.folder import DatasetFolder
from magicseg_hf.generation.config import GenerationConfig, generation_fields
from magicseg_hf.generation.vocabulary import resolve_classes
from magicseg_hf.schema import DATASET_FEATURES

logger = logging.getLogger(__name__)

#: The builder's one configuration name (datasets' default).
DEFAULT_CONFIG = "default"

_DESCRIPTION = (
    "Synthetic open-world segmentation data made from class names with the MagicSeg method: "
    "positive and counterfactual diffusion images with detector + SAM pixel labels."
)


def _package_version() -> str:
    """The installed package version (read at call time)."""
    return magicseg_hf.__version__


def vocabulary_digest(config: GenerationConfig) -> str:
    """SHA-256 of the run's class list (the vocabulary file's or shipped list's lines, or --classes)."""
    names = resolve_classes(config.classes, config.vocabulary)
    return hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()


@dataclasses.dataclass
class MagicSegConfig(datasets.BuilderConfig, GenerationConfig):
    """BuilderConfig of :class:`MagicSeg`: datasets' ``name``/``version``/... plus every
    :class:`~magicseg_hf.generation.GenerationConfig` field (inherited: same names, defaults, help)."""

    def __post_init__(self) -> None:
        datasets.BuilderConfig.__post_init__(self)
        self.generation_config()  # GenerationConfig checks the type of every generation field

    def generation_config(self) -> GenerationConfig:
        """The :class:`GenerationConfig` this builder config stands for."""
        return GenerationConfig(**{f.name: getattr(self, f.name) for f in generation_fields()})

    def provenance(self) -> dict[str, Any]:
        """What the cached data depends on: resolved settings, package version, vocabulary content."""
        config = self.generation_config().resolved()
        return {
            "generation": config.to_dict(),
            "package_version": _package_version(),
            "vocabulary_sha256": vocabulary_digest(config),
        }

    def create_config_id(self, config_kwargs: dict, custom_features: datasets.Features | None = None) -> str:
        """``<name>-<hash>`` where the hash covers :meth:`provenance` (not only the kwargs given)."""
        digest = datasets.fingerprint.Hasher.hash(self.provenance())
        return super().create_config_id({"provenance": digest}, custom_features=custom_features)


class MagicSeg(datasets.GeneratorBasedBuilder):
    """Generates a MagicSeg dataset (columns of ``magicseg_hf.schema``) from class names, through ``generate()``."""

    BUILDER_CONFIG_CLASS = MagicSegConfig
    VERSION = datasets.Version(_package_version())
    DEFAULT_WRITER_BATCH_SIZE = 64

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=_DESCRIPTION,
            features=DATASET_FEATURES,
            homepage=PAPER_URL,
            citation=PAPER_CITATION,
        )

    def _create_builder_config(self, config_name: Any = None, custom_features: Any = None, config_id: Any = None,
                               **config_kwargs: Any) -> Any:
        # datasets makes a config of any name it is given when the builder lists none: a mistyped
        # name would run with the defaults. This builder has one configuration; its settings are keywords.
        if config_name not in (None, DEFAULT_CONFIG):
            raise ValueError(
                f"unknown configuration {config_name!r}: the MagicSeg builder has one, {DEFAULT_CONFIG!r}; "
                "pass the generation settings as keyword arguments (classes=[...], num_pairs=..., preset=...)"
            )
        return super()._create_builder_config(config_name, custom_features, config_id, **config_kwargs)

    @property
    def generation_dir(self) -> Path:
        """The work folder ``generate()`` writes into (a full dataset folder once done): beside the
        versions of this config's cache (``<cache_dir>/magicseg/<config_id>/generation``)."""
        version_dir = Path(self.cache_dir)  # <root>/magicseg/<config_id>/<version>, ".incomplete" while preparing
        return version_dir.parent / "generation"

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        """Run ``generate()`` into :attr:`generation_dir` and hand its rows to the train split."""
        from magicseg_hf.generation import pipeline  # torch and the model libraries: only when generating

        folder = self.generation_dir
        folder.parent.mkdir(parents=True, exist_ok=True)
        logger.info("generating into %s", folder)
        # resume=True: a fresh folder is a plain start, an interrupted run continues, a complete
        # one is returned as it is.
        summary = pipeline.generate(self.config.generation_config(), folder, resume=True)
        if summary.shortfall:
            logger.warning("%s", summary.describe())
        return [datasets.SplitGenerator(name=datasets.Split.TRAIN, gen_kwargs={"folder": str(folder)})]

    def _generate_examples(self, folder: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The folder's rows in dataset order, keyed by their ``id``."""
        for row in DatasetFolder(folder).iter_rows(batch_size=self.DEFAULT_WRITER_BATCH_SIZE):
            yield row["id"], row
