"""Test helpers: small, valid dataset folders written the way the generation writer writes them.

:func:`write_dataset_folder` makes a folder of DESIGN.md's layout with random images and labels
(no models involved), so the card, validation, push and visualization can be tested on their own.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from magicseg_hf.schema import (
    DATASET_FEATURES,
    DROP_REASONS,
    GENERATION_FILE,
    PREVIEW_FILE,
    VOCABULARY_FILE,
    shard_file_name,
)

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
    return {
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


def make_rows(num_rows: int, vocabulary: list[str], seed: int = 0, size: tuple[int, int] = (48, 40)) -> list[dict]:
    """``num_rows`` rows with 1-2 classes each, cycling through ``vocabulary``."""
    rows = []
    for index in range(num_rows):
        count = 1 + index % 2
        classes = [vocabulary[(index + k) % len(vocabulary)] for k in range(count)]
        rows.append(make_row(index, classes, size=size, seed=seed))
    return rows


def generation_info(vocabulary: list[str], num_rows: int, seed: int = 0) -> dict[str, Any]:
    """A ``generation.json`` of the contract's shape for a tiny run."""
    from magicseg_hf.generation.config import GenerationConfig

    config = GenerationConfig(classes=list(vocabulary), num_pairs=max(num_rows, 1), seed=seed, preset="tiny").resolved()
    dropped = {reason: 0 for reason in DROP_REASONS}
    dropped["no_detection"] = 1
    return {
        "config": config.to_dict(),
        "models": {
            "diffusion_model": {"id": config.diffusion_model, "revision": config.diffusion_model_revision},
            "detector_model": {"id": config.detector_model, "revision": config.detector_model_revision},
            "segmenter_model": {"id": config.segmenter_model, "revision": config.segmenter_model_revision},
        },
        "package_version": "0.1.0",
        "library_versions": {"torch": "x", "transformers": "x", "diffusers": "x", "datasets": "x"},
        "summary": {
            "num_rows": num_rows,
            "attempts": num_rows + 1,
            "kept": num_rows,
            "dropped": dropped,
            "shortfall": 0,
            "num_processes": 1,
            "elapsed_seconds": 1.0,
        },
    }


def write_shard(folder: Path, index: int, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as shard ``index`` exactly as the writer does (features embedded)."""
    import datasets

    path = folder / shard_file_name(index)
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows, features=DATASET_FEATURES).to_parquet(str(path))
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
    """A complete, valid dataset folder (shards, vocabulary, generation.json, preview, card)."""
    from magicseg_hf.hub import write_dataset_card
    from magicseg_hf.visualization import pair_grid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocabulary = list(vocabulary or DEFAULT_CLASSES)
    rows = rows if rows is not None else make_rows(num_rows, vocabulary, seed=seed, size=size)
    for start in range(0, len(rows), rows_per_shard):
        write_shard(folder, start // rows_per_shard, rows[start:start + rows_per_shard])
    (folder / VOCABULARY_FILE).write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    (folder / GENERATION_FILE).write_text(
        json.dumps(generation_info(vocabulary, len(rows), seed), indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    if rows:
        pair_grid(rows, max_rows=4).save(folder / PREVIEW_FILE)
    if card:
        write_dataset_card(folder)
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


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    """A row with images replaced by (mode, size, pixel bytes), for exact equality checks."""
    out = {}
    for key, value in row.items():
        if isinstance(value, Image.Image):
            out[key] = (value.mode, value.size, value.tobytes())
        else:
            out[key] = value
    return out


class HubStandIn:
    """A local stand-in for the Hub: patched ``HfApi`` calls write repos into ``root``.

    ``root/<owner>/<name>/<branch>/`` holds each branch's files; :meth:`path` gives the folder that
    ``load_dataset`` then reads as if it were the repo. ``calls`` records (method, repo_id, kwargs).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def path(self, repo_id: str, revision: str | None = None) -> Path:
        return self.root / repo_id / (revision or "main")

    def install(self, monkeypatch: Any, token: str = "hf_standin_token") -> HubStandIn:
        """Patch HfApi, make the Hub look online and reachable, and provide a token."""
        import shutil

        from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, RepoUrl, constants

        import magicseg_hf.hub as hub

        stand_in = self

        def create_repo(api, repo_id, *, repo_type=None, private=None, exist_ok=False, **kwargs):
            stand_in.calls.append(("create_repo", repo_id, {"repo_type": repo_type, "private": private}))
            stand_in.path(repo_id).mkdir(parents=True, exist_ok=True)
            return RepoUrl(f"https://huggingface.co/datasets/{repo_id}")

        def create_branch(api, repo_id, *, branch, repo_type=None, exist_ok=False, **kwargs):
            stand_in.calls.append(("create_branch", repo_id, {"branch": branch, "repo_type": repo_type}))
            target = stand_in.path(repo_id, branch)
            if not target.exists():
                shutil.copytree(stand_in.path(repo_id), target)

        def list_repo_files(api, repo_id, *, repo_type=None, revision=None, **kwargs):
            stand_in.calls.append(("list_repo_files", repo_id, {"revision": revision}))
            base = stand_in.path(repo_id, revision)
            return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())

        def create_commit(api, repo_id, operations, *, commit_message, repo_type=None, revision=None, **kwargs):
            stand_in.calls.append(("create_commit", repo_id, {"revision": revision, "message": commit_message,
                                                              "repo_type": repo_type}))
            base = stand_in.path(repo_id, revision)
            for operation in operations:
                target = base / operation.path_in_repo
                if isinstance(operation, CommitOperationDelete):
                    target.unlink()
                elif isinstance(operation, CommitOperationAdd):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = operation.path_or_fileobj
                    data = source if isinstance(source, bytes) else Path(source).read_bytes()
                    target.write_bytes(data)
            return None

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_branch", create_branch)
        monkeypatch.setattr(HfApi, "list_repo_files", list_repo_files)
        monkeypatch.setattr(HfApi, "create_commit", create_commit)
        monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: True)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", token)
        return self
