"""`magicseg push`: publishing a dataset folder to a local stand-in for the Hub.

The stand-in (tests/helpers.py) patches HfApi with functions bound to HfApi's real signatures and
keeps each repo as a folder; the tests assert on what arrived there, read back with
``load_dataset`` as a user of the repo would.
"""

from __future__ import annotations

import json
import shutil
import time

import datasets
import pytest
from helpers import HubStandIn, comparable, folder_digest, write_dataset_folder
from huggingface_hub import HfApi

from magicseg_hf import __version__, publish
from magicseg_hf.cards import write_dataset_card
from magicseg_hf.cli import main
from magicseg_hf.errors import InputError, MagicSegError
from magicseg_hf.folder import DatasetFolder
from magicseg_hf.generation.writer import KEPT, ShardStore
from magicseg_hf.schema import CARD_FILE, DATASET_FEATURES, GENERATION_FILE, WORK_DIR

VOCABULARY = ["cat", "dog", "bow (weapon)", "traffic light"]
PUBLISHED = [
    "README.md", "class_histogram.png", "data/train-00000.parquet", "data/train-00001.parquet",
    "generation.json", "preview.png", "vocabulary.txt",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_dataset_folder(tmp_path_factory.mktemp("publish") / "ds", num_rows=5, vocabulary=VOCABULARY)


def _rows(path, **kwargs):
    return [comparable(row) for row in datasets.load_dataset(str(path), split="train", **kwargs)]


def test_repo_id_form():
    assert publish.check_repo_id("user/my-data.v2") == "user/my-data.v2"
    for bad in ("noslash", "a/b/c", "/x", "user/", "us er/x", "user/..x", "user/x.git", "u/" + "x" * 95):
        with pytest.raises(InputError, match=r"--repo-id must look like USER/NAME.*\(got "):
            publish.check_repo_id(bad)


def test_stand_in_keeps_hfapi_signatures(tmp_path, monkeypatch):
    """A call the real HfApi would refuse is refused: the push tests below cannot pass on a typo."""
    HubStandIn(tmp_path / "hub").install(monkeypatch)
    api = HfApi(token="hf_x")
    with pytest.raises(TypeError):
        api.create_repo("a/b", repo_type="dataset", exists_ok=True)
    with pytest.raises(TypeError):
        api.create_commit("a/b", [], message="m", repo_type="dataset")
    with pytest.raises(TypeError):
        api.list_repo_files("a/b", "dataset")  # repo_type is keyword-only
    api.create_repo("a/b", repo_type="dataset")
    assert api.list_repo_files("a/b", repo_type="dataset") == []


def test_push_then_load_gives_identical_rows(folder, tmp_path, monkeypatch, capsys):
    hub = HubStandIn(tmp_path / "hub").install(monkeypatch, token="hf_secret_value_123")
    before = folder_digest(folder)
    assert main(["push", str(folder), "--repo-id", "alice/magicseg", "--private"]) == 0
    out, err = capsys.readouterr()
    assert out == "pushed 7 files to https://huggingface.co/datasets/alice/magicseg\n"
    assert "hf_secret_value_123" not in out + err
    assert folder_digest(folder) == before, "the local folder is byte-for-byte untouched"

    assert hub.repos == {("dataset", "alice/magicseg"): {"repo_type": "dataset", "private": True}}
    assert hub.commits == {"alice/magicseg": [f"Upload MagicSeg dataset (5 rows) with magicseg-hf {__version__}"]}
    pushed = hub.path("alice/magicseg")
    assert hub.files("alice/magicseg") == PUBLISHED
    for name in PUBLISHED[1:]:
        assert (pushed / name).read_bytes() == (folder / name).read_bytes(), name
    assert _rows(pushed) == _rows(folder)
    assert datasets.load_dataset(str(pushed), split="train").features == DATASET_FEATURES
    card = (pushed / CARD_FILE).read_text()
    assert 'load_dataset("alice/magicseg", split="train")' in card and "USER/NAME" not in card
    assert card.split("---\n")[1] == (folder / CARD_FILE).read_text().split("---\n")[1], "same metadata"
    assert not any("hf_secret_value_123" in p.read_bytes().decode("latin-1") for p in pushed.rglob("*") if p.is_file())


def test_push_ignores_work_area_and_deletes_stale_shards(folder, tmp_path, monkeypatch):
    hub = HubStandIn(tmp_path / "hub").install(monkeypatch)
    local = shutil.copytree(folder, tmp_path / "local")
    first = publish.push_dataset_folder(local, "bob/data")
    assert first.deleted == [] and first.files == ["README.md", *PUBLISHED[1:]]
    assert first.commit_url.startswith("https://huggingface.co/datasets/bob/data/commit/")
    # The dataset shrinks to one shard, and an unfinished run leaves a work area behind.
    (local / "data" / "train-00001.parquet").unlink()
    generation = json.loads((local / GENERATION_FILE).read_text())
    generation["summary"]["num_rows"] = 3
    (local / GENERATION_FILE).write_text(json.dumps(generation))
    write_dataset_card(local)
    ShardStore(local).write_shard(0, [], [{"attempt": 0, "status": "no_detection"}])
    (local / "data" / ".train-00002.parquet.tmp").write_bytes(b"half a write")
    result = publish.push_dataset_folder(local, "bob/data")
    assert result.deleted == ["data/train-00001.parquet"]
    assert len(hub.commits["bob/data"]) == 2
    assert not (hub.path("bob/data") / WORK_DIR).exists()
    assert [name for name in hub.files("bob/data") if name.startswith("data/")] == ["data/train-00000.parquet"]
    assert _rows(hub.path("bob/data")) == _rows(local)
    assert len(_rows(hub.path("bob/data"))) == 3


def test_push_to_a_branch(folder, tmp_path, monkeypatch):
    hub = HubStandIn(tmp_path / "hub").install(monkeypatch)
    result = publish.push_dataset_folder(folder, "carol/data", revision="v1")
    assert result.url == "https://huggingface.co/datasets/carol/data/tree/v1"
    assert hub.files("carol/data") == [], "the default branch stays as it was"
    assert hub.files("carol/data", "v1") == PUBLISHED
    assert _rows(hub.path("carol/data", "v1")) == _rows(folder)


def test_push_with_a_token_argument(folder, tmp_path, monkeypatch):
    hub = HubStandIn(tmp_path / "hub").install(monkeypatch)
    monkeypatch.delenv("HF_TOKEN")
    publish.push_dataset_folder(folder, "gina/data", token="hf_given")
    assert hub.files("gina/data") == PUBLISHED


def test_push_refuses_an_invalid_folder(tmp_path, monkeypatch, capsys):
    hub = HubStandIn(tmp_path / "hub").install(monkeypatch)
    folder = write_dataset_folder(tmp_path / "ds", num_rows=2, vocabulary=["cat"])
    (folder / "vocabulary.txt").write_text("dog\n")
    before = folder_digest(folder)
    capsys.readouterr()
    assert main(["push", str(folder), "--repo-id", "dave/data"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a valid dataset folder" in err and "are not lines of vocabulary.txt" in err
    assert hub.repos == {} and folder_digest(folder) == before
    assert main(["push", str(tmp_path / "nope"), "--repo-id", "dave/data"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["push", str(folder), "--repo-id", "not-a-repo-id"]) == 2
    assert "--repo-id must look like USER/NAME" in capsys.readouterr().err
    assert not (tmp_path / "hub").exists()


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


def test_push_without_token(folder, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-here"))
    with pytest.raises(MagicSegError, match="no Hugging Face token: set HF_TOKEN or run `hf auth login`"):
        publish.push_dataset_folder(folder, "erin/data")


def test_hub_errors_during_push_are_one_line(folder, tmp_path, monkeypatch):
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    hub = HubStandIn(tmp_path / "hub").install(monkeypatch, token="hf_secret_value_456")

    def refuse(*args, **kwargs):
        raise httpx2.ConnectError("connection reset")

    monkeypatch.setattr(HfApi, "create_commit", refuse)
    with pytest.raises(MagicSegError, match="cannot reach the Hugging Face Hub at https://huggingface.co: ConnectError"):
        publish.push_dataset_folder(folder, "frank/data")
    assert hub.files("frank/data") == [], "nothing arrived"

    def answer(status):
        def call(*args, **kwargs):
            request = httpx2.Request("POST", "https://huggingface.co/api/repos/create")
            raise HfHubHTTPError(f"{status} Client Error\nsecond line", response=httpx2.Response(status, request=request))
        return call

    expected = {
        401: "the Hub rejected the token (401) for frank/data: log in again with `hf auth login`",
        403: "no write access to frank/data (403): check the token's permissions",
        500: "the Hub refused the push to frank/data (500): 500 Client Error",
    }
    for status, message in expected.items():
        monkeypatch.setattr(HfApi, "create_repo", answer(status))
        with pytest.raises(MagicSegError) as caught:
            publish.push_dataset_folder(folder, "frank/data")
        assert str(caught.value) == message
        assert "hf_secret_value_456" not in str(caught.value)


def test_nothing_in_the_package_imports_publish():
    import ast
    from pathlib import Path

    import magicseg_hf

    package = Path(magicseg_hf.__file__).parent
    importers = []
    for path in package.rglob("*.py"):
        if path.name in ("publish.py", "cli.py"):
            continue  # the CLI's push verb is the entry point that runs it
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            if "magicseg_hf.publish" in names:
                importers.append(path.name)
    assert importers == []


def test_work_files_are_not_published(folder, tmp_path):
    local = shutil.copytree(folder, tmp_path / "local")
    store = ShardStore(local)
    store.write_shard(3, [], [{"attempt": 9, "status": KEPT}])
    (local / "notes.md").write_text("mine")
    (local / "data" / ".train-00002.parquet.x1.tmp").write_bytes(b"half")  # an atomic write cut short
    assert DatasetFolder(local).published_files() == PUBLISHED[1:]
