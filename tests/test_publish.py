"""`magicseg push`: publishing a dataset folder to a local stand-in for the Hub.

The stand-in (tests/helpers.py) patches HfApi with functions bound to HfApi's real signatures and
keeps each repo as a folder; the tests assert on what arrived there, read back with
``load_dataset`` as a user of the repo would.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
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
        with pytest.raises(InputError, match=r"`repo_id` must look like USER/NAME.*\(got "):
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


ENDPOINT_SECRET = "pa55-endpoint-secret"
TOKEN_SECRET = "hf_secret_value_logged_321"


def test_no_credential_reaches_any_log_output_of_a_push(folder, tmp_path, monkeypatch, capsys, caplog):
    """Whatever library logs the request (httpx as huggingface_hub's client does, httpcore,
    urllib3, huggingface_hub, a library with its own handler), the endpoint's ``user:password``
    and the token reach no stdout, stderr, log record or file."""
    import httpx2

    hub = HubStandIn(tmp_path / "hub").install(monkeypatch, token=TOKEN_SECRET)
    monkeypatch.setenv("HF_ENDPOINT", f"https://alice:{ENDPOINT_SECRET}@hub.example")
    commit = HfApi.create_commit  # the stand-in's

    def logging_commit(api, repo_id, *args, **kwargs):
        url = f"{api.endpoint}/api/datasets/{repo_id}/commit/main"
        # What httpx logs for every request (huggingface_hub's client is httpx2; httpx names the logger "httpx").
        for name in ("httpx2", "httpx", "httpcore.http11", "urllib3.connectionpool", "huggingface_hub.utils._http"):
            logging.getLogger(name).info('HTTP Request: %s %s "%s %d %s"', "POST", url, "HTTP/1.1", 200, "OK")
        logging.getLogger("httpcore.connection").info("send_request_headers.started authorization=Bearer %s", TOKEN_SECRET)
        logging.getLogger("huggingface_hub.utils._http").warning(
            "Retrying in 1s", exc_info=httpx2.ConnectError(f"cannot connect to {url}"))
        logging.getLogger("own_handler_library").info("GET %s with token %s", url, TOKEN_SECRET)
        return commit(api, repo_id, *args, **kwargs)

    monkeypatch.setattr(HfApi, "create_commit", logging_commit)
    log_file = tmp_path / "run.log"
    file_handler = logging.FileHandler(log_file, encoding="utf-8")
    stderr_handler = logging.StreamHandler(sys.stderr)  # as the CLI's handler outside pytest
    own = logging.getLogger("own_handler_library")  # a library with its own handler, not propagating
    own_handler = logging.StreamHandler(sys.stderr)
    monkeypatch.setattr(own, "propagate", False)
    own.addHandler(own_handler)
    caplog.set_level(logging.INFO)
    root = logging.getLogger()
    for handler in (file_handler, stderr_handler):
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    try:
        assert main(["push", str(folder), "--repo-id", "alice/logged"]) == 0
    finally:
        for handler in (file_handler, stderr_handler):
            root.removeHandler(handler)
        own.removeHandler(own_handler)
        file_handler.close()
    out, err = capsys.readouterr()
    logged = log_file.read_text(encoding="utf-8")
    assert "HTTP Request: POST https://***@hub.example/api/datasets/alice/logged/commit/main" in logged
    assert "HTTP Request: POST" in err and "Retrying in 1s" in err and "ConnectError" in logged
    assert "GET https://***@hub.example/api/datasets/alice/logged/commit/main with token ***" in err
    for secret in (ENDPOINT_SECRET, TOKEN_SECRET):
        assert secret not in out and secret not in err and secret not in logged, secret
        assert secret not in caplog.text and not any(secret in record.getMessage() for record in caplog.records)
        written = [p for p in (tmp_path / "hub").rglob("*") if p.is_file()]
        assert written and not any(secret.encode() in p.read_bytes() for p in written)
    assert hub.files("alice/logged") == PUBLISHED


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


# ----------------------------------------------------------------------------------------------
# Model folders
# ----------------------------------------------------------------------------------------------
MODEL_VOCABULARY = ["cat", "dog", "traffic light"]
#: What a model push publishes from the folder below (the card is rendered for the repo).
MODEL_PUBLISHED = [
    "README.md", "config.json", "configuration_clip_open_seg.py", "image_processing_clip_open_seg.py",
    "inference_clip_open_seg.py", "model.safetensors", "modeling_clip_open_seg.py", "processing_clip_open_seg.py",
    "processor_config.json",
    "results_voc21.json", "tokenizer.json", "tokenizer_config.json", "training_summary.json",
]
MODEL_RESULT = {"benchmark": "voc21", "split": "val", "num_images": 2, "mean_iou": 0.125, "protocol": "zegclip"}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A model folder as `magicseg train` leaves it, plus what a push must leave behind:
    a checkpoint, the pickled training arguments, an old card and notes of the user's."""
    from magicseg_hf.loading import build_open_seg

    folder = tmp_path_factory.mktemp("publish-model") / "model"
    model, processor = build_open_seg("tiny", seed=5)
    model.set_vocabulary(MODEL_VOCABULARY)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "training_summary.json").write_text(json.dumps({
        "preset": "tiny", "global_steps": 3, "datasets": [{"source": "alice/magicseg", "rows": 8, "vocabulary": 3}],
    }))
    (folder / "results_voc21.json").write_text(json.dumps(MODEL_RESULT))
    (folder / "checkpoint-3").mkdir()
    (folder / "checkpoint-3" / "model.safetensors").write_bytes(b"an older checkpoint")
    (folder / "training_args.bin").write_bytes(b"pickled arguments")
    (folder / "README.md").write_text("an old card\n")
    (folder / "notes.txt").write_text("mine\n")
    return folder


def _model_files(hub: HubStandIn, repo_id: str) -> list[str]:
    base = hub.path(repo_id, repo_type="model")
    return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())


def test_push_model_folder_then_load(model_folder, tmp_path, monkeypatch, capsys):
    import torch
    from huggingface_hub import ModelCard
    from transformers import AutoModel, AutoProcessor

    hub = HubStandIn(tmp_path / "hub").install(monkeypatch, token="hf_secret_model_789")
    before = folder_digest(model_folder)
    assert main(["push", str(model_folder), "--repo-id", "alice/open-seg", "--private"]) == 0
    out, err = capsys.readouterr()
    assert out == f"pushed {len(MODEL_PUBLISHED)} files to https://huggingface.co/alice/open-seg\n"
    assert "hf_secret_model_789" not in out + err
    assert folder_digest(model_folder) == before, "the local folder is byte-for-byte untouched"

    assert hub.repos == {("model", "alice/open-seg"): {"repo_type": "model", "private": True}}
    assert hub.commits == {"alice/open-seg": [f"Upload CLIPForOpenSegmentation model with magicseg-hf {__version__}"]}
    assert _model_files(hub, "alice/open-seg") == MODEL_PUBLISHED
    pushed = hub.path("alice/open-seg", repo_type="model")
    for name in MODEL_PUBLISHED[1:]:
        assert (pushed / name).read_bytes() == (model_folder / name).read_bytes(), name

    # The repo loads as the local folder does: same weights, same vocabulary, same processor output.
    local = AutoModel.from_pretrained(model_folder)
    remote = AutoModel.from_pretrained(pushed)
    assert type(remote).__name__ == "CLIPForOpenSegmentation"
    assert remote.config.vocabulary == MODEL_VOCABULARY
    local_state, remote_state = local.state_dict(), remote.state_dict()
    assert local_state.keys() == remote_state.keys()
    assert all(torch.equal(local_state[key], remote_state[key]) for key in local_state)
    assert type(AutoProcessor.from_pretrained(pushed)).__name__ == "CLIPOpenSegProcessor"

    card = ModelCard.load(pushed / "README.md")
    assert 'model_id = "alice/open-seg"' in card.text and "USER/NAME" not in card.text
    assert "an old card" not in card.text
    assert card.data.pipeline_tag == "image-segmentation" and card.data.library_name == "transformers"
    [result] = card.data.eval_results
    assert (result.dataset_type, result.metric_type, result.metric_value) == ("pascal_voc", "mean_iou", 0.125)
    assert not any("hf_secret_model_789" in p.read_bytes().decode("latin-1") for p in pushed.rglob("*") if p.is_file())


def test_pushed_model_loads_as_remote_code_without_the_package(model_folder, tmp_path, monkeypatch):
    """The remote-code files arrive: a process that never imports magicseg_hf loads the repo."""
    import os
    import subprocess
    import sys

    hub = HubStandIn(tmp_path / "hub").install(monkeypatch)
    publish.push_folder(model_folder, "alice/remote")
    pushed = hub.path("alice/remote", repo_type="model")
    code = (
        "import sys\n"
        "from transformers import AutoModel, AutoProcessor\n"
        f"model = AutoModel.from_pretrained({str(pushed)!r}, trust_remote_code=True)\n"
        f"processor = AutoProcessor.from_pretrained({str(pushed)!r}, trust_remote_code=True)\n"
        "print(type(model).__name__, type(processor).__name__, model.config.vocabulary, 'magicseg_hf' in sys.modules)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        f"CLIPForOpenSegmentation CLIPOpenSegProcessor {MODEL_VOCABULARY} False"
    )


def test_model_push_replaces_stale_weights_and_keeps_other_files(model_folder, tmp_path, monkeypatch):
    from huggingface_hub import CommitOperationAdd

    hub = HubStandIn(tmp_path / "hub").install(monkeypatch)
    api = HfApi(token="hf_x")
    api.create_repo("bob/seg", repo_type="model")
    api.create_commit("bob/seg", [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=b"old")
        for name in ("model-00001-of-00002.safetensors", "model.safetensors.index.json", "app.py", "notes/readme.txt")
    ], commit_message="an earlier sharded upload", repo_type="model")
    result = publish.push_folder(model_folder, "bob/seg", revision=None)
    assert result.repo_type == "model" and result.url == "https://huggingface.co/bob/seg"
    assert result.deleted == ["model-00001-of-00002.safetensors", "model.safetensors.index.json"]
    assert result.files == MODEL_PUBLISHED
    assert _model_files(hub, "bob/seg") == sorted([*MODEL_PUBLISHED, "app.py", "notes/readme.txt"])


def test_model_push_offline_fails_at_once(model_folder, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    start = time.perf_counter()
    assert main(["push", str(model_folder), "--repo-id", "erin/seg"]) == 2
    assert time.perf_counter() - start < 2
    assert capsys.readouterr().err == (
        "magicseg push: error: HF_HUB_OFFLINE=1: cannot push to the Hub; unset it to publish\n"
    )


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("weights", ["the weights in model.safetensors do not load"]),
        ("no-weights", ["no model.safetensors (the weights; save them with model.save_pretrained(DIR))"]),
        ("processor", ["no processor_config.json (save the processor with processor.save_pretrained(DIR))",
                       "no tokenizer files (tokenizer.json, or vocab.json and merges.txt)"]),
        ("remote-code", ["auto_map names modeling_clip_open_seg.py, which is not in the folder"]),
        ("config", ["config.json does not load as a CLIPOpenSegConfig (decoder_hidden_size must be divisible"]),
        ("not-ours", ["config.json has model_type 'clip', not a CLIPForOpenSegmentation (expected 'clip_open_seg')"]),
    ],
)
def test_push_refuses_an_invalid_model_folder(damage, expected, model_folder, tmp_path, monkeypatch, capsys):
    hub = HubStandIn(tmp_path / "hub").install(monkeypatch)
    folder = shutil.copytree(model_folder, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    if damage == "weights":
        (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:100])
    elif damage == "no-weights":
        (folder / "model.safetensors").unlink()
    elif damage == "processor":
        (folder / "processor_config.json").unlink()
        (folder / "tokenizer.json").unlink()
    elif damage == "remote-code":
        (folder / "modeling_clip_open_seg.py").unlink()
    elif damage == "config":
        (folder / "config.json").write_text(json.dumps({**config, "decoder_num_heads": 7}))
    else:
        (folder / "config.json").write_text(json.dumps({**config, "model_type": "clip"}))
    before = folder_digest(folder)
    assert main(["push", str(folder), "--repo-id", "dave/seg"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"magicseg push: error: {folder} is not a valid model folder (")
    assert f"({len(expected)} problem(s))" in err
    for problem in expected:
        assert problem in err
    assert hub.repos == {} and folder_digest(folder) == before


def test_folder_kinds(folder, model_folder, tmp_path):
    assert publish.folder_kind(folder) == "dataset"
    assert publish.folder_kind(model_folder) == "model"
    with pytest.raises(InputError, match=r"is neither a dataset folder \(data/ and vocabulary.txt\) nor a model folder"):
        publish.folder_kind(tmp_path)
    both = shutil.copytree(folder, tmp_path / "both")
    shutil.copy(model_folder / "config.json", both / "config.json")
    with pytest.raises(InputError, match="holds both a model"):
        publish.push_folder(both, "x/y")
    with pytest.raises(InputError, match="is not a folder"):
        publish.folder_kind(tmp_path / "missing")
