"""Test helpers: small, valid dataset folders written by the real generation writer, and a local
stand-in for the Hub.

:func:`write_dataset_folder` makes a dataset folder (the layout of ``magicseg_hf.folder``) from
random rows (no models involved) through the writer itself — ``write_run_files``, ``ShardStore.write_shard``,
``finalize``, the card renderer, ``ShardStore.remove`` — so the card, validation, push and
visualization are tested on exactly what ``generate()`` writes.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from magicseg_hf.cards import write_dataset_card
from magicseg_hf.folder import DatasetFolder, atomic_write_bytes
from magicseg_hf.generation.writer import KEPT, ShardStore, finalize, rows_to_parquet_bytes, write_run_files

DEFAULT_CLASSES = ["cat", "dog", "bow (weapon)", "traffic light"]


def make_row(index: int, classes: list[str], size: tuple[int, int] = (48, 40), seed: int = 0) -> dict[str, Any]:
    """One valid row: random pictures, a label with a rectangle per class, matching boxes."""
    rng = np.random.default_rng(seed * 1000 + index)
    width, height = size
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    counterfactual = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    label = np.zeros((height, width), dtype=np.uint8)
    boxes, box_labels, box_scores = [], [], []
    for position in range(len(classes)):
        x0 = int(rng.integers(0, width // 2))
        y0 = int(rng.integers(0, height // 2))
        x1 = int(rng.integers(x0 + width // 4, width + 1))
        y1 = int(rng.integers(y0 + height // 4, height + 1))
        label[y0:y1, x0:x1] = position + 1
        boxes.append([float(x0), float(y0), float(x1), float(y1)])
        box_labels.append(position)
        box_scores.append(float(rng.uniform(0.3, 1.0)))
    seed_value = int(rng.integers(0, 2**31))
    row = {
        "id": f"{seed:04d}-{index:08d}",
        "image": image,
        "counterfactual_image": counterfactual,
        "label": Image.fromarray(label, "L"),
        "classes": list(classes),
        "prompt": f"a photo of {' and '.join(classes)} in a garden",
        "counterfactual_prompt": "a photo of a garden",
        "seed": seed_value,
        "counterfactual_seed": seed_value,
        "boxes": boxes,
        "box_labels": box_labels,
        "box_scores": box_scores,
        "counterfactual_score": float(rng.uniform(0.0, 0.2)),
    }
    # A class painted over by a later one has no pixel left: its class score is NaN.
    present = set(np.unique(label).tolist())
    row["class_scores"] = [float(rng.uniform(0.15, 0.35)) if position + 1 in present else float("nan")
                           for position in range(len(classes))]
    return row


def make_rows(num_rows: int, vocabulary: list[str], seed: int = 0, size: tuple[int, int] = (48, 40)) -> list[dict]:
    """``num_rows`` rows with 1-2 classes each, cycling through ``vocabulary``."""
    rows = []
    for index in range(num_rows):
        count = 1 + index % 2
        classes = [vocabulary[(index + k) % len(vocabulary)] for k in range(count)]
        rows.append(make_row(index, classes, size=size, seed=seed))
    return rows


def generation_info(vocabulary: list[str], num_rows: int, seed: int = 0) -> dict[str, Any]:
    """The ``generation.json`` a tiny run writes before its first attempt (no summary yet)."""
    from magicseg_hf.generation.config import GenerationConfig

    config = GenerationConfig(classes=list(vocabulary), num_pairs=max(num_rows, 1), seed=seed, preset="tiny").resolved()
    return {
        "config": config.to_dict(),
        "models": {
            "diffusion_model": {"id": config.diffusion_model, "revision": config.diffusion_model_revision},
            "detector_model": {"id": config.detector_model, "revision": config.detector_model_revision},
            "segmenter_model": {"id": config.segmenter_model, "revision": config.segmenter_model_revision},
        },
        "package_version": "0.1.0",
        "library_versions": {"torch": "x", "transformers": "x", "diffusers": "x", "datasets": "x"},
    }


def write_shard(folder: str | Path, index: int, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as final shard ``index`` of ``folder``, encoded as the writer encodes them
    (for tests that add or replace a shard after the folder was written)."""
    path = DatasetFolder(folder).shard_path(index)
    atomic_write_bytes(path, rows_to_parquet_bytes(rows))
    return path


def write_dataset_folder(
    folder: str | Path,
    num_rows: int = 5,
    vocabulary: list[str] | None = None,
    rows_per_shard: int = 3,
    seed: int = 0,
    size: tuple[int, int] = (48, 40),
    rows: list[dict[str, Any]] | None = None,
    card: bool = True,
) -> Path:
    """A complete, valid dataset folder written by the generation writer.

    The run asked for ``max(len(rows), 1)`` pairs; its first attempt was dropped (no detection),
    every later one kept, ``rows_per_shard`` attempts per work shard. ``card=False`` leaves out
    the card (and the histogram), as a folder looks between ``finalize`` and the card renderer.
    """
    vocabulary = list(vocabulary or DEFAULT_CLASSES)
    rows = rows if rows is not None else make_rows(num_rows, vocabulary, seed=seed, size=size)
    generation = generation_info(vocabulary, len(rows), seed)
    num_pairs = generation["config"]["num_pairs"]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_run_files(folder, vocabulary, generation)
    store = ShardStore(folder)
    chunks = [rows[start:start + rows_per_shard] for start in range(0, len(rows), rows_per_shard)] or [[]]
    attempt = 0
    for shard, chunk in enumerate(chunks):
        records = []
        if shard == 0:
            records.append({"attempt": attempt, "status": "no_detection"})
            attempt += 1
        for _ in chunk:
            records.append({"attempt": attempt, "status": KEPT})
            attempt += 1
        store.write_shard(shard, chunk, records)
    finalize(folder, len(chunks), num_pairs, generation, elapsed_seconds=1.0, num_processes=1)
    if card:
        write_dataset_card(folder)
    store.remove()
    return folder


def folder_digest(folder: str | Path) -> str:
    """A hash of every file's relative path and bytes under ``folder`` (hidden files included)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        digest.update(relative.encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes())
        digest.update(b"\1")
    return digest.hexdigest()


def same_nan(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (read from parquet) with every NaN class score replaced by the one object
    ``math.nan``: list equality checks identity before ``==``, so two reads of the same rows
    compare equal although NaN != NaN (the values stay floats)."""
    for row in rows:
        if row.get("class_scores") is not None:
            row["class_scores"] = [math.nan if v != v else v for v in row["class_scores"]]
    return rows


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    """A row with images replaced by (mode, size, pixel bytes) and NaN class scores by the string
    "nan" (NaN != NaN), for exact equality checks."""
    out = {}
    for key, value in row.items():
        if isinstance(value, Image.Image):
            out[key] = (value.mode, value.size, value.tobytes())
        elif key == "class_scores" and value is not None:
            out[key] = ["nan" if v != v else v for v in value]
        else:
            out[key] = value
    return out




# ----------------------------------------------------------------------------------------------
# A local stand-in for the Hub
# ----------------------------------------------------------------------------------------------
def _hub_http_error(status: int, message: str) -> Exception:
    """The error huggingface_hub raises for an HTTP ``status`` answer."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    request = httpx2.Request("POST", "https://huggingface.co/api/stand-in")
    return HfHubHTTPError(message, response=httpx2.Response(status, request=request))


def with_signature_of(real: Callable[..., Any], implementation: Callable[..., Any]) -> Callable[..., Any]:
    """A function with ``real``'s signature that calls ``implementation(self, **arguments)``.

    The arguments are bound to ``real``'s signature first (defaults applied), so a call with a
    keyword or a positional argument that the real method does not take raises ``TypeError``, as
    it would against the Hub.
    """
    signature = inspect.signature(real)

    def method(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        api = arguments.pop("self")
        return implementation(api, **arguments)

    method.__signature__ = signature  # type: ignore[attr-defined]
    method.__name__ = real.__name__
    return method


class HubStandIn:
    """A local Hub: the patched ``HfApi`` methods keep repos as folders under ``root``.

    ``root/<repo_type>s/<owner>/<name>/<branch>/`` holds a branch's files (the default branch is
    ``main``), so :meth:`path` is a folder that ``load_dataset`` reads as it would read the repo.
    The patched methods have ``HfApi``'s real signatures (a wrong keyword raises ``TypeError``),
    refuse a call without a token (401), a repo or branch that does not exist (404) and a
    duplicate without ``exist_ok`` (409), and apply a commit's operations to the branch's folder.
    :attr:`repos` records what the Hub would know of each repo, by ``(repo_type, repo_id)``
    (``{"repo_type": ..., "private": ...}``), and
    :attr:`commits` each repo's commit messages, oldest first.
    """

    METHODS = ("create_repo", "create_branch", "list_repo_files", "create_commit")

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.repos: dict[tuple[str, str], dict[str, Any]] = {}
        self.commits: dict[str, list[str]] = {}

    def path(self, repo_id: str, revision: str | None = None, repo_type: str = "dataset") -> Path:
        """The folder of branch ``revision`` (``main`` when None) of repo ``repo_id``."""
        return self.root / f"{repo_type}s" / repo_id / (revision or "main")

    def files(self, repo_id: str, revision: str | None = None) -> list[str]:
        """Relative paths of the files in a branch of dataset repo ``repo_id``, sorted."""
        base = self.path(repo_id, revision)
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())

    def install(self, monkeypatch: Any, token: str = "hf_standin_token") -> HubStandIn:
        """Patch ``HfApi``, make the Hub look online and reachable, and provide ``token``."""
        from huggingface_hub import HfApi

        from magicseg_hf import hub_access

        for name in self.METHODS:
            monkeypatch.setattr(HfApi, name, with_signature_of(getattr(HfApi, name), getattr(self, f"_{name}")))
        monkeypatch.setattr(hub_access, "hub_reachable", lambda timeout=hub_access.REACHABILITY_TIMEOUT: True)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_TOKEN", token)
        return self

    # --- the patched methods (arguments as HfApi's signatures name them) -------------------------
    def _authorize(self, api: Any, token: Any) -> None:
        if not (token or api.token):
            raise _hub_http_error(401, "401 Unauthorized: no token")

    def _existing(self, repo_id: str, repo_type: str | None, revision: str | None = None) -> Path:
        if (repo_type or "model", repo_id) not in self.repos:
            raise _hub_http_error(404, f"404 Repository Not Found: {repo_id}")
        branch = self.path(repo_id, revision, repo_type or "model")
        if not branch.is_dir():
            raise _hub_http_error(404, f"404 Revision Not Found: {revision}")
        return branch

    def _create_repo(self, api: Any, repo_id: str, *, token: Any, private: Any, repo_type: str | None,
                     exist_ok: bool, **unused: Any) -> Any:
        from huggingface_hub import RepoUrl

        from magicseg_hf.hub_access import hub_endpoint

        self._authorize(api, token)
        key = (repo_type or "model", repo_id)
        if key in self.repos and not exist_ok:
            raise _hub_http_error(409, f"409 Conflict: {repo_id} exists")
        self.repos.setdefault(key, {"repo_type": repo_type or "model", "private": bool(private)})
        self.path(repo_id, None, repo_type or "model").mkdir(parents=True, exist_ok=True)
        prefix = "" if repo_type in (None, "model") else f"{repo_type}s/"
        return RepoUrl(f"{hub_endpoint()}/{prefix}{repo_id}", endpoint=api.endpoint)

    def _create_branch(self, api: Any, repo_id: str, *, branch: str, revision: str | None, token: Any,
                       repo_type: str | None, exist_ok: bool) -> None:
        self._authorize(api, token)
        source = self._existing(repo_id, repo_type, revision)
        target = self.path(repo_id, branch, repo_type or "model")
        if target.exists():
            if not exist_ok:
                raise _hub_http_error(409, f"409 Conflict: branch {branch} exists")
            return
        shutil.copytree(source, target)

    def _list_repo_files(self, api: Any, repo_id: str, *, revision: str | None, repo_type: str | None,
                         token: Any) -> list[str]:
        self._authorize(api, token)
        base = self._existing(repo_id, repo_type, revision)
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())

    def _create_commit(self, api: Any, repo_id: str, operations: Any, *, commit_message: str, token: Any,
                       repo_type: str | None, revision: str | None, **unused: Any) -> Any:
        from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete

        from magicseg_hf.hub_access import hub_endpoint

        self._authorize(api, token)
        base = self._existing(repo_id, repo_type, revision)
        if not isinstance(commit_message, str) or not commit_message.strip():
            raise _hub_http_error(400, "400 Bad Request: empty commit message")
        for operation in operations:
            target = base / operation.path_in_repo
            if isinstance(operation, CommitOperationDelete):
                if not target.is_file():
                    raise _hub_http_error(404, f"404 Entry Not Found: {operation.path_in_repo}")
                target.unlink()
            elif isinstance(operation, CommitOperationAdd):
                source = operation.path_or_fileobj
                if isinstance(source, bytes):
                    data = source
                elif isinstance(source, (str, Path)):
                    data = Path(source).read_bytes()
                else:
                    data = source.read()
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            else:
                raise TypeError(f"unexpected commit operation {operation!r}")
        self.commits.setdefault(repo_id, []).append(commit_message)
        oid = hashlib.sha1(f"{repo_id}:{len(self.commits[repo_id])}".encode()).hexdigest()
        prefix = "" if repo_type in (None, "model") else f"{repo_type}s/"
        return CommitInfo(commit_url=f"{hub_endpoint()}/{prefix}{repo_id}/commit/{oid}",
                          commit_message=commit_message, commit_description="", oid=oid, _endpoint=api.endpoint)


def subprocess_env() -> dict[str, str]:
    """The environment of a `magicseg` subprocess started by a test: this process's (offline, set
    by conftest) with one thread, so its float results match an in-process run's."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def read_rows(folder: str | Path) -> list[dict[str, Any]]:
    """Every row of a folder's final shards, in order (raw parquet values: image bytes), NaN scores
    made comparable (:func:`same_nan`)."""
    import pyarrow.parquet as pq

    return [row for path in sorted((Path(folder) / "data").glob("train-*.parquet"))
            for row in same_nan(pq.read_table(path).to_pylist())]


def sigkill_after_first_shard(command: list[str], out: Path, timeout: float = 240) -> None:
    """Start ``command`` (a `magicseg generate` writing ``out``) and SIGKILL it as soon as its first
    shard is finished; fails the test if the run ends before, or had already finished."""
    import signal
    import subprocess
    import time

    import pytest

    done = out / ".work" / "shard-00000.json"
    proc = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while time.time() < deadline and not done.exists():
        if proc.poll() is not None:
            pytest.fail(f"generate ended before the kill: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert done.exists()
    assert not (out / "README.md").exists(), "killed too late: the run had already finished"


def train_in_two_processes(train_args: list[str], timeout: float = 300) -> Any:
    """Run ``magicseg train train_args`` as two CPU processes (gloo) under ``accelerate launch``;
    returns the finished ``subprocess.CompletedProcess`` (text output captured)."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "MASTER_ADDR": "127.0.0.1"}
    port = str(29600 + os.getpid() % 1000)  # pytest-xdist workers get ports of their own
    # These flags start two CPU processes (gloo); `--cpu --num_processes 2` would start one.
    args = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port,
            "-m", "magicseg_hf", "train", "--use_cpu", *train_args]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
