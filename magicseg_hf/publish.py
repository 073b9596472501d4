"""``magicseg push``: publish a dataset folder to the Hugging Face Hub.

:func:`push_dataset_folder` checks the folder (:mod:`magicseg_hf.validate`), renders its card for
the repo (:mod:`magicseg_hf.cards`) and publishes it with ``HfApi.create_repo`` + one
``create_commit``. It never writes into the folder, fails at once when the Hub is offline or
unreachable (:mod:`magicseg_hf.hub_access`), and takes the token from huggingface_hub's usual
sources without ever printing or writing it.

This module is the top of the package's import graph: nothing in the package imports it (the
CLI's ``push`` verb imports it when it runs).
"""

from __future__ import annotations

import fnmatch
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from magicseg_hf import __version__, hub_access
from magicseg_hf.cards import render_dataset_card
from magicseg_hf.errors import InputError, MagicSegError, first_line
from magicseg_hf.folder import DatasetFolder
from magicseg_hf.schema import CARD_FILE, DATA_DIR
from magicseg_hf.validate import validate_dataset_folder

logger = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Longest repo id the Hub accepts.
MAX_REPO_ID_LENGTH = 96
OFFLINE_MESSAGE = "HF_HUB_OFFLINE=1: cannot push to the Hub; unset it to publish"


def check_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` if it has the form ``USER/NAME``; raise :class:`InputError` otherwise."""
    if (
        not isinstance(repo_id, str)
        or not _REPO_ID.match(repo_id)
        or ".." in repo_id
        or repo_id.endswith((".git", "."))
        or len(repo_id) > MAX_REPO_ID_LENGTH
    ):
        raise InputError(
            f"--repo-id must look like USER/NAME, of letters, digits, '-', '_' and '.' (got {repo_id!r})"
        )
    return repo_id


def hub_error(error: BaseException, repo_id: str) -> MagicSegError:
    """A one-line :class:`MagicSegError` for a failed Hub call (never includes the token)."""
    if isinstance(error, OfflineModeIsEnabled):
        return MagicSegError(OFFLINE_MESSAGE)
    if isinstance(error, HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status == 401:
            return MagicSegError(f"the Hub rejected the token (401) for {repo_id}: log in again with `hf auth login`")
        if status == 403:
            return MagicSegError(f"no write access to {repo_id} (403): check the token's permissions")
        return MagicSegError(f"the Hub refused the push to {repo_id} ({status or 'error'}): {first_line(error)}")
    return MagicSegError(f"cannot reach the Hugging Face Hub at {hub_access.hub_endpoint()}: {type(error).__name__}")


@dataclass
class PushResult:
    """What :func:`push_dataset_folder` published."""

    repo_id: str
    #: The branch pushed to (None: the default branch).
    revision: str | None
    #: The repo's page (``.../tree/<revision>`` for a branch).
    url: str
    #: Paths in the repo that the commit wrote, the card first.
    files: list[str]
    #: Remote shards the commit deleted (the folder no longer has them).
    deleted: list[str]
    commit_url: str | None = None


def push_dataset_folder(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    reachability_timeout: float = hub_access.REACHABILITY_TIMEOUT,
) -> PushResult:
    """Publish dataset folder ``folder`` to the Hub dataset repo ``repo_id``.

    Checks, in order and each failing at once with a :class:`MagicSegError`: the repo id's form,
    that ``folder`` exists, offline mode, a token (``token``, else ``HF_TOKEN`` / ``hf auth login``),
    that the Hub answers, and that ``folder`` is a valid dataset folder
    (:func:`magicseg_hf.validate.validate_dataset_folder`). Then creates the repo (and branch
    ``revision``) if needed and makes one commit with the shards, ``vocabulary.txt``,
    ``generation.json``, the pictures and the card (rendered with ``repo_id`` in its examples),
    deleting remote shards the folder no longer has. Nothing is written into ``folder``; a push
    that fails half-way can simply be re-run.
    """
    check_repo_id(repo_id)
    dataset = DatasetFolder(folder)
    if not dataset.exists():
        raise InputError(f"{dataset.root} is not a folder")
    # Cheap checks first, so an offline or unreachable Hub fails within seconds.
    if hub_access.hub_offline():
        raise MagicSegError(OFFLINE_MESSAGE)
    token = token or get_token()
    if not token:
        raise MagicSegError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    if not hub_access.hub_reachable(reachability_timeout):
        raise MagicSegError(f"cannot reach the Hugging Face Hub at {hub_access.hub_endpoint()}; check the network")
    report = validate_dataset_folder(dataset.root)
    if not report.ok:
        raise InputError(
            f"{dataset.root} is not a valid dataset folder ({report.num_problems} problem(s), first: "
            f"{report.problems[0]}); run `magicseg validate {dataset.root}`"
        )

    files = dataset.published_files()
    card_bytes = str(render_dataset_card(dataset, repo_id=repo_id)).encode("utf-8")
    operations: list[Any] = [CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=card_bytes)]
    operations += [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(dataset.root / name)) for name in files]
    api = HfApi(token=token)
    deleted: list[str] = []
    try:
        repo_url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
        remote = api.list_repo_files(repo_id, repo_type="dataset", revision=revision)
        deleted = sorted(name for name in remote if fnmatch.fnmatch(name, f"{DATA_DIR}/*") and name not in files)
        operations += [CommitOperationDelete(path_in_repo=name) for name in deleted]
        commit = api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message
            or f"Upload MagicSeg dataset ({report.num_rows} rows) with magicseg-hf {__version__}",
            repo_type="dataset",
            revision=revision,
        )
    except (HfHubHTTPError, OfflineModeIsEnabled, *hub_access.network_errors()) as error:
        raise hub_error(error, repo_id) from None
    url = str(getattr(repo_url, "url", None) or f"{hub_access.hub_endpoint()}/datasets/{repo_id}")
    if revision:
        url = f"{url}/tree/{revision}"
    logger.info("pushed %d files to %s%s", len(files) + 1, repo_id, f" ({revision})" if revision else "")
    return PushResult(
        repo_id=repo_id,
        revision=revision,
        url=url,
        files=[CARD_FILE, *files],
        deleted=deleted,
        commit_url=getattr(commit, "commit_url", None),
    )
