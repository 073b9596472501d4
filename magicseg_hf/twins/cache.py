"""The twins' folders in the cache: each written once, atomically, under a key that changes with its builder.

A twin's folder is ``<cache>/<name>-<package version>-seed<seed>-<digest>``. ``<cache>`` is
``$MAGICSEG_TWINS_CACHE`` or else ``$HF_HOME/magicseg-twins`` (huggingface_hub's default
``HF_HOME``, ``~/.cache/huggingface``, when unset). ``<digest>`` hashes what the folder's content
follows from: the twin's name, seed and options, the source of every module of
:mod:`magicseg_hf.twins`, the shipped vocabularies the tokenizers are built from, and the versions
of torch, transformers, diffusers and segment-anything. A changed builder (or library) gets a new
folder: a stale one is never served. Old folders are left in place; deleting the cache folder is
always safe.

A folder is written into a temporary sibling and renamed into place, so it exists only complete.
Two processes that race both build; the first rename wins and the other process drops its copy and
uses the winner's (``os.rename`` onto a non-empty folder fails), so both end with a valid folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Environment variable naming the folder that holds the twins (default: ``$HF_HOME/magicseg-twins``).
TWINS_CACHE_VARIABLE = "MAGICSEG_TWINS_CACHE"
#: The file each twin folder holds beside the model: its name, seed, options and builder digest.
TWIN_RECORD = "magicseg_twin.json"
_LIBRARIES = ("torch", "transformers", "diffusers", "segment-anything")
#: A staging folder untouched this long was left by a killed writer (a live one writes a twin in seconds).
STALE_STAGING_SECONDS = 3600.0


def cache_root() -> Path:
    """The folder that holds the twins' folders (not created here)."""
    override = os.environ.get(TWINS_CACHE_VARIABLE)
    if override:
        return Path(override).expanduser()
    hf_home = os.environ.get("HF_HOME")
    if not hf_home:
        from huggingface_hub import constants

        hf_home = constants.HF_HOME
    return Path(hf_home).expanduser() / "magicseg-twins"


@lru_cache(maxsize=1)
def builders_digest() -> str:
    """A digest of everything a twin's content follows from besides its name, seed and options:
    the twins package's source, the shipped vocabularies and the model libraries' versions."""
    from magicseg_hf.twins.tokenizers import _CORPUS_FILES

    digest = hashlib.sha256()
    package = resources.files("magicseg_hf.twins")
    for name in sorted(entry.name for entry in package.iterdir() if entry.name.endswith(".py")):
        digest.update(name.encode() + b"\0" + (package / name).read_bytes() + b"\0")
    vocabularies = resources.files("magicseg_hf") / "vocabularies"
    for name in _CORPUS_FILES:
        digest.update(name.encode() + b"\0" + (vocabularies / name).read_bytes() + b"\0")
    for library in _LIBRARIES:
        try:
            version = metadata.version(library)
        except metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"{library}=={version}\0".encode())
    return digest.hexdigest()


def _package_version() -> str:
    from magicseg_hf import __version__

    return __version__


def twin_record(name: str, seed: int, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a twin folder's key is computed from (and what its :data:`TWIN_RECORD` file holds)."""
    return {
        "name": name,
        "seed": seed,
        "options": dict(options or {}),
        "package_version": _package_version(),
        "builders": builders_digest(),
    }


def twin_folder_path(name: str, seed: int = 0, options: Mapping[str, Any] | None = None) -> Path:
    """Where the twin ``name`` drawn under ``seed`` with ``options`` lives in the cache (it may not exist yet)."""
    record = twin_record(name, seed, options)
    key = hashlib.sha256(json.dumps(record, sort_keys=True, default=repr).encode()).hexdigest()[:16]
    slug = name.removeprefix("tiny:").replace("/", "-").replace(":", "-")
    return cache_root() / f"{slug}-{record['package_version']}-seed{seed}-{key}"


def twin_folder(
    name: str,
    write: Callable[..., None],
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
) -> Path:
    """The cache folder of the twin ``name``, written by ``write(folder, seed, **options)`` the first time.

    Args:
        name: the twin's ``tiny:`` id.
        write: saves the twin into an empty folder (``save_pretrained`` of its model and processor,
            or a checkpoint file); safetensors weights, tokenizers included.
        seed: the seed the weights are drawn under; each seed has its own folder.
        options: builder settings beyond the seed (e.g. the open-segmentation model's config
            overrides); each set of options has its own folder.
    """
    folder = twin_folder_path(name, seed, options)
    if folder.is_dir():
        return folder
    record = json.dumps(twin_record(name, seed, options), sort_keys=True, indent=2, default=repr)

    def write_twin(staging: Path) -> None:
        write(staging, seed, **dict(options or {}))
        (staging / TWIN_RECORD).write_text(record + "\n", encoding="utf-8")

    write_folder_atomically(folder, write_twin)
    return folder


def write_folder_atomically(folder: Path, write: Callable[[Path], None]) -> bool:
    """Make ``folder`` by ``write(staging)`` into a temporary sibling, then renaming it into place.

    ``folder`` thus exists only complete: a process killed while writing leaves a hidden staging
    folder (``.<name>.*``, removed on the way out where it can be), never a half-written ``folder``;
    staging folders of ``folder`` untouched for :data:`STALE_STAGING_SECONDS` (a killed writer's)
    are removed by the next writer.
    Returns ``False`` when ``folder`` already existed or another process renamed its own copy into
    place first (this process's copy is then dropped), ``True`` when this call wrote it. Progress
    bars of transformers and diffusers are off while writing.
    """
    from magicseg_hf.loading import quiet_progress_bars

    if folder.is_dir():
        return False
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with quiet_progress_bars():
            write(staging)
        try:
            os.rename(staging, folder)
        except OSError:
            if not folder.is_dir():  # not a lost race: a real failure
                raise
            logger.debug("another process wrote %s first", folder)
            return False
        logger.info("wrote %s", folder)
        return True
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _remove_stale_staging(folder: Path) -> None:
    """Remove the staging folders of ``folder`` that a killed writer left (older than the stale age)."""
    now = time.time()
    for leftover in folder.parent.glob(f".{folder.name}.*"):
        try:
            stale = leftover.is_dir() and now - leftover.stat().st_mtime > STALE_STAGING_SECONDS
        except OSError:  # removed by another process meanwhile
            continue
        if stale:
            logger.debug("removing %s, left by a writer that did not finish", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
