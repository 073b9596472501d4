"""hub.py: the dataset card (parsed as YAML, checked against the data) and pushing to a Hub stand-in."""

from __future__ import annotations

import json
import shutil
import time

import datasets
import pytest
import yaml
from helpers import HubStandIn, comparable, folder_digest, make_rows, write_dataset_folder, write_shard

import magicseg_hf.hub as hub
from magicseg_hf.cli import main
from magicseg_hf.errors import InputError, MagicSegError
from magicseg_hf.schema import CARD_FILE, DATASET_FEATURES, GENERATION_FILE, WORK_DIR

VOCABULARY = ["cat", "dog", "bow (weapon)", "traffic light"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_dataset_folder(tmp_path_factory.mktemp("hub") / "ds", num_rows=5, vocabulary=VOCABULARY)


def _yaml(card_path):
    text = card_path.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1]), text.split("---\n", 2)[2]


def _rows(path, **kwargs):
    return [comparable(row) for row in datasets.load_dataset(str(path), split="train", **kwargs)]


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
    import pyarrow.parquet as pq

    ds = datasets.load_dataset(str(folder), split="train")
    assert ds.features == DATASET_FEATURES
    assert len(ds) == 5
    stored = [row for path in sorted((folder / "data").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]
    assert [row["id"] for row in ds] == [row["id"] for row in stored]
    assert ds[1]["label"].mode == "L"
    stream = datasets.load_dataset(str(folder), split="train", streaming=True)
    assert [comparable(r) for r in stream] == [comparable(r) for r in ds]


def test_card_body_says_how_it_was_made(folder):
    _, body = _yaml(folder / CARD_FILE)
    generation = json.loads((folder / GENERATION_FILE).read_text())
    config = generation["config"]
    for model in generation["models"].values():
        assert f"`{model['id']}`" in body
    assert "`template` prompt backend" in body and "`prompt` mode" in body
    assert f"| box threshold | {config['box_threshold']:g} |" in body
    assert f"| counterfactual threshold | {config['counterfactual_threshold']:g} |" in body
    assert f"| master seed | {config['seed']} |" in body
    assert "| dropped: no detection of a target class | 1 |" in body
    assert "| **kept (rows)** | **5** |" in body
    assert "| cat | 3 | 3 |" in body  # rows 0, 3 and 4 hold cat (one box each)
    assert "![Rows per class](class_histogram.png)" in body and (folder / "class_histogram.png").is_file()
    assert "(preview.png)" in body
    assert 'load_dataset("USER/NAME", split="train", streaming=True)' in body
    assert "magicseg train --dataset USER/NAME" in body
    assert "## Licensing" in body and "## Limitations" in body and "No human has checked any label" in body
    assert "arXiv:2603.19575" in body and "@article{cai2026magicseg" in body
    assert "magicseg generate --classes cat dog 'bow (weapon)' 'traffic light'" in body


def test_card_is_a_pure_function_of_the_data(folder, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "copy")
    (copy / WORK_DIR).mkdir()
    write_shard(copy / WORK_DIR, 0, make_rows(2, VOCABULARY, seed=3))  # an unfinished run's work files
    hub.write_dataset_card(copy)
    assert (copy / CARD_FILE).read_bytes() == (folder / CARD_FILE).read_bytes()
    assert (copy / "class_histogram.png").read_bytes() == (folder / "class_histogram.png").read_bytes()


def test_card_for_stable_diffusion_names_its_license(tmp_path):
    folder = write_dataset_folder(tmp_path / "sd", num_rows=2, vocabulary=["cat"], card=False)
    generation = json.loads((folder / GENERATION_FILE).read_text())
    generation["models"]["diffusion_model"] = {"id": "stable-diffusion-v1-5/stable-diffusion-v1-5",
                                               "revision": "451f4fe16113bff5a5d2269ed5ad43b0592e9a14"}
    generation["config"]["vocabulary"] = "lvis"
    (folder / GENERATION_FILE).write_text(json.dumps(generation))
    hub.write_dataset_card(folder)
    meta, body = _yaml(folder / CARD_FILE)
    assert meta["license"] == "creativeml-openrail-m"
    assert "`451f4fe16113bff5a5d2269ed5ad43b0592e9a14`" in body
    assert "CreativeML OpenRAIL-M" in body and "Attachment A" in body
    assert "LVIS vocabulary" in meta["pretty_name"]


def test_size_categories():
    assert hub.size_category(0) == "n<1K"
    assert hub.size_category(999) == "n<1K"
    assert hub.size_category(1000) == "1K<n<10K"
    assert hub.size_category(250_000) == "100K<n<1M"


def test_repo_id_form():
    assert hub.check_repo_id("user/my-data.v2") == "user/my-data.v2"
    for bad in ("noslash", "a/b/c", "/x", "user/", "us er/x", "user/..x", "user/x.git"):
        with pytest.raises(InputError):
            hub.check_repo_id(bad)


# ----------------------------------------------------------------------------------------------
# Pushing to a local stand-in for the Hub
# ----------------------------------------------------------------------------------------------
def test_push_then_load_gives_identical_rows(folder, tmp_path, monkeypatch, capsys):
    hub_root = HubStandIn(tmp_path / "hub").install(monkeypatch, token="hf_secret_value_123")
    before = folder_digest(folder)
    assert main(["push", str(folder), "--repo-id", "alice/magicseg", "--private"]) == 0
    out, err = capsys.readouterr()
    assert "pushed 7 files to https://huggingface.co/datasets/alice/magicseg" in out
    assert "hf_secret_value_123" not in out + err
    assert folder_digest(folder) == before, "the local folder is byte-for-byte untouched"

    pushed = hub_root.path("alice/magicseg")
    assert sorted(p.relative_to(pushed).as_posix() for p in pushed.rglob("*") if p.is_file()) == [
        "README.md", "class_histogram.png", "data/train-00000.parquet", "data/train-00001.parquet",
        "generation.json", "preview.png", "vocabulary.txt",
    ]
    assert ("create_repo", "alice/magicseg", {"repo_type": "dataset", "private": True}) in hub_root.calls
    assert _rows(pushed) == _rows(folder)
    assert datasets.load_dataset(str(pushed), split="train").features == DATASET_FEATURES
    card = (pushed / CARD_FILE).read_text()
    assert 'load_dataset("alice/magicseg", split="train")' in card
    assert card.split("---\n")[1] == (folder / CARD_FILE).read_text().split("---\n")[1], "same metadata"
    assert not any("hf_secret_value_123" in p.read_bytes().decode("latin-1") for p in pushed.rglob("*") if p.is_file())


def test_push_ignores_work_area_and_deletes_stale_shards(folder, tmp_path, monkeypatch):
    hub_root = HubStandIn(tmp_path / "hub").install(monkeypatch)
    local = shutil.copytree(folder, tmp_path / "local")
    hub.push_dataset_folder(local, "bob/data")
    # The dataset shrinks to one shard, and an unfinished run leaves a work area behind.
    (local / "data" / "train-00001.parquet").unlink()
    generation = json.loads((local / GENERATION_FILE).read_text())
    generation["summary"]["num_rows"] = 3
    (local / GENERATION_FILE).write_text(json.dumps(generation))
    hub.write_dataset_card(local)
    (local / WORK_DIR).mkdir()
    (local / WORK_DIR / "shard-00000.json").write_text("{}")
    result = hub.push_dataset_folder(local, "bob/data")
    assert result.deleted == ["data/train-00001.parquet"]
    pushed = hub_root.path("bob/data")
    assert not (pushed / WORK_DIR).exists()
    assert sorted(p.name for p in (pushed / "data").iterdir()) == ["train-00000.parquet"]
    assert _rows(pushed) == _rows(local)


def test_push_to_a_branch(folder, tmp_path, monkeypatch):
    hub_root = HubStandIn(tmp_path / "hub").install(monkeypatch)
    result = hub.push_dataset_folder(folder, "carol/data", revision="v1")
    assert result.url.endswith("/tree/v1")
    assert ("create_branch", "carol/data", {"branch": "v1", "repo_type": "dataset"}) in hub_root.calls
    assert len(_rows(hub_root.path("carol/data", "v1"))) == 5


def test_push_refuses_an_invalid_folder(tmp_path, monkeypatch, capsys):
    hub_root = HubStandIn(tmp_path / "hub").install(monkeypatch)
    folder = write_dataset_folder(tmp_path / "ds", num_rows=2, vocabulary=["cat"])
    (folder / "vocabulary.txt").write_text("dog\n")
    before = folder_digest(folder)
    capsys.readouterr()
    assert main(["push", str(folder), "--repo-id", "dave/data"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a valid dataset folder" in err
    assert hub_root.calls == [] and folder_digest(folder) == before
    assert main(["push", str(tmp_path / "nope"), "--repo-id", "dave/data"]) == 2
    assert main(["push", str(folder), "--repo-id", "not-a-repo-id"]) == 2


def test_push_offline_fails_at_once(folder, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    before = folder_digest(folder)
    start = time.perf_counter()
    assert main(["push", str(folder), "--repo-id", "erin/data"]) == 2
    assert time.perf_counter() - start < 2
    err = capsys.readouterr().err
    assert err == "magicseg push: error: HF_HUB_OFFLINE=1: cannot push to the Hub; unset it to publish\n"
    assert folder_digest(folder) == before


def test_push_to_an_unreachable_hub_fails_quickly(folder, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    before = folder_digest(folder)
    start = time.perf_counter()
    assert main(["push", str(folder), "--repo-id", "erin/data"]) == 2
    assert time.perf_counter() - start < 5
    assert "cannot reach the Hugging Face Hub at http://127.0.0.1:9" in capsys.readouterr().err
    assert folder_digest(folder) == before


def test_push_without_token(folder, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(MagicSegError, match="no Hugging Face token"):
        hub.push_dataset_folder(folder, "erin/data")


def test_connection_lost_during_push_is_one_line(folder, tmp_path, monkeypatch):
    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    HubStandIn(tmp_path / "hub").install(monkeypatch, token="hf_secret_value_456")

    def refuse(*args, **kwargs):
        raise httpx2.ConnectError("connection reset")

    monkeypatch.setattr(HfApi, "create_commit", refuse)
    with pytest.raises(MagicSegError, match="cannot reach the Hugging Face Hub"):
        hub.push_dataset_folder(folder, "frank/data")

    def unauthorized(*args, **kwargs):
        request = httpx2.Request("POST", "https://huggingface.co/api/repos/create")
        raise HfHubHTTPError("401 Unauthorized", response=httpx2.Response(401, request=request))

    monkeypatch.setattr(HfApi, "create_repo", unauthorized)
    with pytest.raises(MagicSegError) as caught:
        hub.push_dataset_folder(folder, "frank/data")
    assert "rejected the token (401)" in str(caught.value)
    assert "hf_secret_value_456" not in str(caught.value) and "\n" not in str(caught.value)


def test_card_of_a_run_that_kept_nothing(tmp_path):
    folder = write_dataset_folder(tmp_path / "empty", rows=[], vocabulary=["cat"])
    meta, body = _yaml(folder / CARD_FILE)
    assert meta["dataset_info"]["splits"][0]["num_examples"] == 0
    assert "class_histogram.png" not in body and "preview.png" not in body
    assert not (folder / "class_histogram.png").exists()
