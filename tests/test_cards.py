"""The dataset card: rendered from the shipped template, parsed as YAML, checked against the data."""

from __future__ import annotations

import json
import shutil
from importlib import resources

import datasets
import numpy as np
import pytest
import yaml
from helpers import DEFAULT_CLASSES, comparable, make_rows, write_dataset_folder

from magicseg_hf.cards import PAPER_CITATION, render_dataset_card, size_category, write_dataset_card
from magicseg_hf.errors import InputError
from magicseg_hf.folder import DatasetFolder
from magicseg_hf.generation.writer import KEPT, ShardStore
from magicseg_hf.schema import CARD_FILE, DATASET_FEATURES, GENERATION_FILE

VOCABULARY = DEFAULT_CLASSES


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_dataset_folder(tmp_path_factory.mktemp("cards") / "ds", num_rows=5, vocabulary=VOCABULARY)


def _yaml(card_path):
    text = card_path.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1]), text.split("---\n", 2)[2]


def test_template_ships_as_package_data():
    template = resources.files("magicseg_hf.cards") / "dataset_card.md"
    assert template.is_file()
    text = template.read_text(encoding="utf-8")
    assert "{{ card_data }}" in text and "{{ dataset_ref }}" in text


def test_card_metadata_matches_the_data(folder):
    meta, _ = _yaml(folder / CARD_FILE)
    assert meta["license"] == "apache-2.0"  # tiny preset: random weights built by the package
    assert meta["task_categories"] == ["image-segmentation"]
    assert meta["size_categories"] == ["n<1K"]
    assert meta["pretty_name"] == "MagicSeg synthetic segmentation: cat, dog, bow (weapon), traffic light"
    assert {"synthetic", "magicseg", "semantic-segmentation"} <= set(meta["tags"])
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    info = meta["dataset_info"]
    assert datasets.Features._from_yaml_list(info["features"]) == DATASET_FEATURES
    assert info["splits"][0]["name"] == "train" and info["splits"][0]["num_examples"] == 5
    assert info["download_size"] == sum(p.stat().st_size for p in (folder / "data").glob("*.parquet"))
    # Key order kept (not sorted): datasets needs "list" before "length" in nested list features.
    assert "list:\n      list: float32\n      length: 4" in (folder / CARD_FILE).read_text()


def test_load_dataset_returns_the_schema_and_the_rows(folder):
    ds = datasets.load_dataset(str(folder), split="train")
    assert ds.features == DATASET_FEATURES
    loaded, written = [comparable(row) for row in ds], [comparable(row) for row in make_rows(5, VOCABULARY)]
    for row in loaded + written:  # float32 columns: compare at float32 precision
        row["box_scores"] = np.float32(row["box_scores"]).tolist()
        row["counterfactual_score"] = float(np.float32(row["counterfactual_score"]))
        row["class_scores"] = [v if v == "nan" else float(np.float32(v)) for v in row["class_scores"]]
    assert loaded == written
    stream = datasets.load_dataset(str(folder), split="train", streaming=True)
    assert [comparable(r) for r in stream] == [comparable(r) for r in ds]


def test_card_body_says_how_it_was_made(folder):
    _, body = _yaml(folder / CARD_FILE)
    generation = json.loads((folder / GENERATION_FILE).read_text())
    config = generation["config"]
    for model in generation["models"].values():
        assert f"`{model['id']}`" in body
    assert body.startswith("\n# MagicSeg synthetic segmentation: cat, dog, bow (weapon), traffic light\n")
    assert "**5 image pairs** with pixel labels for cat, dog, bow (weapon), traffic light" in body
    assert "> **Test data.**" in body  # tiny preset
    assert "`template` prompt backend" in body and "`prompt` mode — the same initial noise" in body
    assert "| Prompt writer | built-in `template` backend (no model) | — | — |" in body
    assert f"| box threshold | {config['box_threshold']:g} |" in body
    assert f"| counterfactual threshold | {config['counterfactual_threshold']:g} |" in body
    assert f"| master seed | {config['seed']} |" in body
    assert "| `label` | Image (\"L\") | mode \"L\" label map" in body
    assert "| `boxes` | list[list[float32, 4]] | detector boxes, xyxy in pixels |" in body
    assert "Images are 48×40 px." in body
    # The writer saw one dropped attempt (no detection) before the five kept ones.
    assert "| attempts | 6 |\n| **kept (rows)** | **5** |" in body
    assert "| dropped: no detection of a target class | 1 |" in body
    assert "| dropped: blank image (safety checker output) | 0 |" in body
    assert "shortfall" not in body
    assert "7 detector boxes in all; mean `counterfactual_score` 0." in body
    assert "4 of the 4 vocabulary classes appear in at least one row. The 4 most frequent:" in body
    assert "| cat | 3 | 3 |\n| bow (weapon) | 2 | 2 |\n| dog | 1 | 1 |\n| traffic light | 1 | 1 |\n" in body
    assert "Vocabulary classes with no row" not in body
    assert "![Rows per class](class_histogram.png)" in body and (folder / "class_histogram.png").is_file()
    assert "(preview.png)" in body
    assert 'load_dataset("USER/NAME", split="train", streaming=True)' in body
    assert "magicseg train --dataset USER/NAME" in body
    assert "## Licensing" in body and "## Limitations" in body and "No human has checked any label" in body
    assert "Attachment A" not in body  # Apache-2.0 tiny weights carry no use restrictions
    assert body.endswith(f"## Citation\n\n```bibtex\n{PAPER_CITATION}\n```\n")
    assert "magicseg generate --classes cat dog 'bow (weapon)' 'traffic light' --num-pairs 5" in body
    assert "{{" not in body and "{%" not in body


def test_repo_id_goes_into_the_examples(folder):
    card = render_dataset_card(folder, repo_id="alice/magicseg")
    assert 'load_dataset("alice/magicseg", split="train")' in card.text
    assert "accelerate launch -m magicseg_hf train --dataset alice/magicseg" in card.text
    assert "USER/NAME" not in card.text
    assert card.data.to_dict() == render_dataset_card(folder).data.to_dict()


def test_card_is_a_pure_function_of_the_data(folder, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "copy")
    store = ShardStore(copy)  # an unfinished run's work files
    store.write_shard(0, make_rows(2, VOCABULARY, seed=3), [{"attempt": 0, "status": KEPT}] * 2)
    (copy / CARD_FILE).unlink()
    (copy / "class_histogram.png").unlink()
    write_dataset_card(DatasetFolder(copy))
    assert (copy / CARD_FILE).read_bytes() == (folder / CARD_FILE).read_bytes()
    assert (copy / "class_histogram.png").read_bytes() == (folder / "class_histogram.png").read_bytes()


def test_card_for_stable_diffusion_names_its_license(tmp_path):
    folder = write_dataset_folder(tmp_path / "sd", num_rows=2, vocabulary=["cat"], card=False)
    generation = json.loads((folder / GENERATION_FILE).read_text())
    generation["models"]["diffusion_model"] = {"id": "stable-diffusion-v1-5/stable-diffusion-v1-5",
                                               "revision": "451f4fe16113bff5a5d2269ed5ad43b0592e9a14"}
    generation["config"]["vocabulary"] = "lvis"
    (folder / GENERATION_FILE).write_text(json.dumps(generation))
    write_dataset_card(folder)
    meta, body = _yaml(folder / CARD_FILE)
    assert meta["license"] == "creativeml-openrail-m"
    assert "`451f4fe16113bff5a5d2269ed5ad43b0592e9a14`" in body
    assert "distributed under CreativeML OpenRAIL-M. The license's use-based restrictions (its Attachment A)" in body
    assert meta["pretty_name"] == "MagicSeg synthetic segmentation: the LVIS vocabulary (1 classes)"


def test_many_classes_are_summarised(tmp_path):
    vocabulary = [f"class {i:02d}" for i in range(50)]
    folder = write_dataset_folder(tmp_path / "many", num_rows=25, vocabulary=vocabulary, rows_per_shard=10)
    meta, body = _yaml(folder / CARD_FILE)
    assert meta["pretty_name"] == "MagicSeg synthetic segmentation: 50 classes"
    # Rows 0..24 hold classes 00..24 (odd rows also the next one): 25 classes seen, 25 never.
    assert "25 of the 50 vocabulary classes appear in at least one row. The 20 most frequent:" in body
    table = body.split("| class | rows | boxes |\n|---|---|---|\n")[1].split("\n\n")[0].splitlines()
    assert table[:2] == ["| class 02 | 2 | 2 |", "| class 04 | 2 | 2 |"]  # in two rows each
    assert len(table) == 21 and table[-1] == "| *5 more classes* | 5 | 5 |"  # the last five seen once
    missing = ", ".join(vocabulary[25:45])
    assert f"Vocabulary classes with no row: {missing} and 5 more." in body


def test_inpaint_run_with_a_shortfall(tmp_path):
    folder = write_dataset_folder(tmp_path / "inpaint", num_rows=3, card=False)
    generation = json.loads((folder / GENERATION_FILE).read_text())
    generation["config"]["counterfactual"] = "inpaint"
    generation["models"]["inpainting_model"] = {"id": "org/inpainter|v2", "revision": None}
    generation["summary"]["shortfall"] = 4
    generation["summary"]["dropped"]["cosmic_rays"] = 2
    (folder / GENERATION_FILE).write_text(json.dumps(generation))
    _, body = _yaml(write_dataset_card(folder))
    assert "`inpaint` mode — the positive image's own labelled region repainted" in body
    assert "| Inpainting diffusion (counterfactuals) | `org/inpainter\\|v2` | default branch (not pinned) |" in body
    assert "| dropped: cosmic_rays | 2 |" in body
    assert "| shortfall (asked but not kept) | 4 |" in body


def test_size_categories():
    assert size_category(0) == "n<1K"
    assert size_category(999) == "n<1K"
    assert size_category(1000) == "1K<n<10K"
    assert size_category(250_000) == "100K<n<1M"
    assert size_category(10**10) == "1B<n<10B"


def test_card_of_a_run_that_kept_nothing(tmp_path):
    folder = write_dataset_folder(tmp_path / "empty", rows=[], vocabulary=["cat"])
    meta, body = _yaml(folder / CARD_FILE)
    assert meta["dataset_info"]["splits"][0]["num_examples"] == 0
    assert "class_histogram.png" not in body and "preview.png" not in body
    assert not (folder / "class_histogram.png").exists()
    assert "| shortfall (asked but not kept) | 1 |" in body
    assert "Vocabulary classes with no row: cat." in body


def test_card_of_a_missing_folder(tmp_path):
    with pytest.raises(InputError, match="is not a folder"):
        write_dataset_card(tmp_path / "nope")


def test_the_card_of_drawn_scenes_describes_drawn_scenes(tmp_path):
    # A procedural folder's card named Stable Diffusion, Grounding DINO and SAM, their licence and a
    # command that generates diffusion pictures: a reader of the card would believe the wrong origin.
    import shlex

    from procedural import write_procedural_dataset

    from magicseg_hf.cli import main

    source = write_procedural_dataset(tmp_path / "drawn", num_rows=6, seed=3)
    metadata, body = _yaml(source / CARD_FILE)
    assert metadata["license"] == "apache-2.0"
    assert "procedural" in metadata["tags"] and not {"stable-diffusion", "sam", "grounding-dino"} & set(metadata["tags"])
    assert "drawn scene pairs" in body and "exact pixel labels" in body
    for wrong in ("detector followed by SAM", "OpenRAIL", "stable-diffusion-v1-5", "grounding-dino-tiny", "| role | model"):
        assert wrong not in body, wrong
    assert "Test data" not in body  # drawn scenes are learnable, not the tiny preset's noise

    # The card's reproduce command writes the same rows.
    command = body.split("to reproduce:\n\n```bash\n", 1)[1].split("\n", 1)[0]
    argv = shlex.split(command)
    assert argv[:4] == ["magicseg", "generate", "--source", "procedural"]
    argv[argv.index("--output-dir") + 1] = str(tmp_path / "again")
    assert main(argv[1:]) == 0
    ours, theirs = (datasets.load_dataset("parquet", data_files=str(folder / "data" / "*.parquet"), split="train")
                    for folder in (source, tmp_path / "again"))
    assert [comparable(row) for row in ours] == [comparable(row) for row in theirs]
