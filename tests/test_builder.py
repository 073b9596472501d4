"""The MagicSeg builder, and the whole chain on the tiny preset:
builder -> generate() -> dataset folder -> `magicseg validate` -> `magicseg push` (stand-in) -> load_dataset."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import datasets
import pytest
from helpers import HubStandIn, comparable, folder_digest

import magicseg_hf
from magicseg_hf import presets
from magicseg_hf.cli import main
from magicseg_hf.dataset_builders.magicseg import MagicSeg, MagicSegConfig
from magicseg_hf.errors import InputError
from magicseg_hf.folder import DatasetFolder
from magicseg_hf.generation.config import GenerationConfig, generation_fields
from magicseg_hf.schema import DATASET_FEATURES, GENERATION_FILE

TINY = {"preset": "tiny", "classes": ["cat", "dog"], "num_pairs": 2, "seed": 0}


def test_builder_config_is_derived_from_generation_config():
    own = {f.name: f for f in dataclasses.fields(MagicSegConfig)}
    base = {f.name for f in dataclasses.fields(datasets.BuilderConfig)}
    generation = {f.name: f for f in generation_fields()}
    assert set(own) == base | set(generation), "no second list of settings"
    for name, source in generation.items():
        assert own[name].metadata == source.metadata
    config = MagicSegConfig(**TINY)
    assert config.generation_config() == GenerationConfig(**TINY)
    assert MagicSegConfig().generation_config() == GenerationConfig()


def _config_id(tmp_path, **kwargs):
    return MagicSeg(cache_dir=str(tmp_path), **{**TINY, **kwargs}).config_id


def test_config_id_covers_settings_version_revisions_and_vocabulary(tmp_path, monkeypatch):
    reference = _config_id(tmp_path)
    assert _config_id(tmp_path) == reference
    assert _config_id(tmp_path, seed=1) != reference
    assert _config_id(tmp_path, num_pairs=3) != reference
    # A preset value made explicit is the same run, hence the same cache entry.
    assert _config_id(tmp_path, num_inference_steps=4) == reference
    assert _config_id(tmp_path, diffusion_model_revision="abc123") != reference

    with monkeypatch.context() as patch:
        patch.setattr(magicseg_hf, "__version__", "9.9.9")
        assert _config_id(tmp_path) != reference
    with monkeypatch.context() as patch:  # the preset pins another revision in a new release
        model_id, _ = presets.TINY_MODELS["detector_model"]
        patch.setitem(presets.TINY_MODELS, "detector_model", (model_id, "rev-2"))
        assert _config_id(tmp_path) != reference

    vocabulary = tmp_path / "classes.txt"
    vocabulary.write_text("cat\ndog\n")
    first = _config_id(tmp_path, classes=None, vocabulary=str(vocabulary))
    assert _config_id(tmp_path, classes=None, vocabulary=str(vocabulary)) == first
    vocabulary.write_text("cat\nbow (weapon)\n")  # same path, other content
    assert _config_id(tmp_path, classes=None, vocabulary=str(vocabulary)) != first


def test_bad_settings_fail_when_the_builder_is_made(tmp_path):
    with pytest.raises(InputError, match="num_pairs"):
        MagicSeg(cache_dir=str(tmp_path), **{**TINY, "num_pairs": 0})
    with pytest.raises(InputError, match="unknown vocabulary"):
        MagicSeg(cache_dir=str(tmp_path), **{**TINY, "classes": None, "vocabulary": "nope"})


def test_an_unknown_configuration_name_is_refused(tmp_path):
    # datasets would make a config of any name: a typo must not silently run with the defaults
    with pytest.raises(ValueError, match="unknown configuration 'tiny'.*'default'"):
        MagicSeg(cache_dir=str(tmp_path), config_name="tiny", **TINY)
    assert MagicSeg(cache_dir=str(tmp_path), config_name="default", **TINY).config.name == "default"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One tiny generation through the builder (shared by the end-to-end tests below)."""
    cache = tmp_path_factory.mktemp("builder_cache")
    builder = MagicSeg(cache_dir=str(cache), **TINY)
    builder.download_and_prepare()
    return builder, builder.as_dataset(split="train")


def test_builder_generates_the_schema(built):
    import json

    builder, ds = built
    assert ds.features == DATASET_FEATURES
    summary = json.loads((builder.generation_dir / GENERATION_FILE).read_text())["summary"]
    assert len(ds) == summary["num_rows"] > 0
    assert len(set(ds["id"])) == len(ds)
    assert all(set(row["classes"]) <= {"cat", "dog"} for row in ds)
    assert ds[0]["label"].mode == "L"
    assert ds[0]["image"].size == ds[0]["counterfactual_image"].size == ds[0]["label"].size


def test_same_config_is_a_cache_hit(built, monkeypatch):
    from magicseg_hf.generation import pipeline

    builder, ds = built

    def fail(*args, **kwargs):
        raise AssertionError("generate() must not run on a cache hit")

    monkeypatch.setattr(pipeline, "generate", fail)
    again = MagicSeg(cache_dir=str(Path(builder.cache_dir).parents[2]), **TINY)  # <root>/magicseg/<id>/<version>
    assert again.config_id == builder.config_id
    again.download_and_prepare()
    assert [comparable(r) for r in again.as_dataset(split="train")] == [comparable(r) for r in ds]


def test_generate_validate_push_load_round_trip(built, tmp_path, monkeypatch, capsys):
    builder, ds = built
    folder = builder.generation_dir
    local = [comparable(r) for r in datasets.load_dataset(str(folder), split="train")]
    assert local == [comparable(r) for r in ds], "the builder yields exactly the folder's rows"
    assert [row["id"] for row in DatasetFolder(folder).iter_rows(columns=["id"])] == ds["id"]
    assert not (folder / ".work").exists()

    assert main(["validate", str(folder)]) == 0
    assert "valid" in capsys.readouterr().out

    stand_in = HubStandIn(tmp_path / "hub").install(monkeypatch)
    before = folder_digest(folder)
    assert main(["push", str(folder), "--repo-id", "user/magicseg-tiny"]) == 0
    assert folder_digest(folder) == before
    pushed = stand_in.path("user/magicseg-tiny")
    assert stand_in.repos[("dataset", "user/magicseg-tiny")]["private"] is False
    assert {"README.md", "vocabulary.txt", "generation.json", "preview.png", "data/train-00000.parquet"} <= set(
        stand_in.files("user/magicseg-tiny"))
    assert 'load_dataset("user/magicseg-tiny", split="train")' in (pushed / "README.md").read_text()
    remote = datasets.load_dataset(str(pushed), split="train")
    assert remote.features == DATASET_FEATURES
    assert [comparable(r) for r in remote] == local

    stream = datasets.load_dataset(str(pushed), split="train", streaming=True)
    first = next(iter(stream))
    assert comparable(first) == local[0]
    assert first["label"].mode == "L"
