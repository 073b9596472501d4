"""``magicseg push``: publish a dataset folder or a model folder to the Hugging Face Hub.

:func:`push_folder` tells the two kinds apart (:func:`folder_kind`: a dataset folder has ``data/``
and ``vocabulary.txt``, a model folder a ``config.json`` and ``model.safetensors``) and hands over
to :func:`push_dataset_folder` or :func:`push_model_folder`. Each checks its folder first
(:mod:`magicseg_hf.validate` for a dataset, :func:`model_folder_problems` for a model), renders its
card for the repo (:mod:`magicseg_hf.cards`) and publishes it with ``HfApi.create_repo`` + one
``create_commit``. A push never writes into the folder, fails at once when the Hub is offline or
unreachable (:mod:`magicseg_hf.hub_access`), and takes the token from huggingface_hub's usual
sources without ever printing or writing it.

Waiting is bounded: an endpoint that accepts connections but does not answer fails the
reachability check within ``2 * reachability_timeout`` (6 s by default); after it, every Hub
request waits at most ``hub_timeout`` (10 s) to connect, to send a chunk or between two chunks of
the answer (:func:`magicseg_hf.hub_access.bounded_hub_calls`), so a Hub that stops answering
mid-push ends the push with one line instead of hanging. Credentials inside ``HF_ENDPOINT`` are
redacted in every message (:func:`magicseg_hf.hub_access.redact`).

This module is the top of the package's import graph: nothing in the package imports it (the
CLI's ``push`` verb imports it when it runs).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from magicseg_hf import __version__, hub_access
from magicseg_hf.cards import render_dataset_card, render_model_card
from magicseg_hf.cards.model import CONFIG_FILE, RESULTS_GLOB, TRAINING_SUMMARY_FILE
from magicseg_hf.errors import InputError, MagicSegError, first_line
from magicseg_hf.export.card import render_export_card_for
from magicseg_hf.export.check import export_published_files, is_export_folder
from magicseg_hf.folder import DatasetFolder
from magicseg_hf.predict import model_type_problem
from magicseg_hf.schema import CARD_FILE, DATA_DIR, VOCABULARY_FILE
from magicseg_hf.validate import validate_dataset_folder

logger = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Longest repo id the Hub accepts.
MAX_REPO_ID_LENGTH = 96
OFFLINE_MESSAGE = "HF_HUB_OFFLINE=1: cannot push to the Hub; unset it to publish"

#: The two kinds of folder ``magicseg push`` publishes (also the Hub's repo types).
DATASET_KIND = "dataset"
MODEL_KIND = "model"
#: The weights of a model folder: one safetensors file, or shards with their index.
WEIGHT_FILE = "model.safetensors"
WEIGHT_INDEX_FILE = "model.safetensors.index.json"
WEIGHT_PATTERNS = (WEIGHT_FILE, "model-*-of-*.safetensors", WEIGHT_INDEX_FILE)
#: Weight files a model repo may hold from an earlier push; removed when this push does not write them.
STALE_WEIGHT_PATTERNS = (*WEIGHT_PATTERNS, "pytorch_model*.bin", "pytorch_model.bin.index.json")
#: Processor and tokenizer files of a model folder (as ``processor.save_pretrained`` writes them).
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt")
#: Everything a model push publishes, by top-level file name: weights, config, processor and
#: tokenizer, the remote code ``save_pretrained`` copies (``*.py``), the training summary and
#: evaluation results (the card is rendered for the repo). Checkpoints and other sub-folders stay.
MODEL_FILE_PATTERNS = (
    CONFIG_FILE, *WEIGHT_PATTERNS, *PROCESSOR_FILES, *TOKENIZER_FILES, "*.py", TRAINING_SUMMARY_FILE, RESULTS_GLOB,
)


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
            f"`repo_id` must look like USER/NAME, of letters, digits, '-', '_' and '.' (got {repo_id!r})"
        )
    return repo_id


def hub_error(error: BaseException, repo_id: str, hub_timeout: float = hub_access.HUB_CALL_TIMEOUT) -> MagicSegError:
    """A one-line :class:`MagicSegError` for a failed Hub call (never includes the token, nor
    credentials of ``HF_ENDPOINT``)."""
    if isinstance(error, OfflineModeIsEnabled):
        return MagicSegError(OFFLINE_MESSAGE)
    if isinstance(error, HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status == 401:
            return MagicSegError(f"the Hub rejected the token (401) for {repo_id}: log in again with `hf auth login`")
        if status == 403:
            return MagicSegError(f"no write access to {repo_id} (403): check the token's permissions")
        return MagicSegError(
            f"the Hub refused the push to {repo_id} ({status or 'error'}): {hub_access.redact(first_line(error))}"
        )
    endpoint = hub_access.hub_endpoint_for_display()
    if isinstance(error, TimeoutError) or "Timeout" in type(error).__name__:
        return MagicSegError(
            f"the Hugging Face Hub at {endpoint} did not answer within {hub_timeout:g} s "
            f"({type(error).__name__}); check the network and push again"
        )
    return MagicSegError(f"cannot reach the Hugging Face Hub at {endpoint}: {type(error).__name__}")


@dataclass
class PushResult:
    """What a push (:func:`push_dataset_folder`, :func:`push_model_folder`) published."""

    repo_id: str
    #: The branch pushed to (None: the default branch).
    revision: str | None
    #: The repo's page (``.../tree/<revision>`` for a branch).
    url: str
    #: Paths in the repo that the commit wrote, the card first.
    files: list[str]
    #: Remote files the commit deleted: dataset shards or model weights the folder no longer has.
    deleted: list[str]
    commit_url: str | None = None
    #: ``"dataset"`` or ``"model"``.
    repo_type: str = DATASET_KIND


def push_dataset_folder(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    reachability_timeout: float = hub_access.REACHABILITY_TIMEOUT,
    hub_timeout: float = hub_access.HUB_CALL_TIMEOUT,
) -> PushResult:
    """Publish dataset folder ``folder`` to the Hub dataset repo ``repo_id``.

    Checks, in order and each failing at once with a :class:`MagicSegError`: the repo id's form,
    that ``folder`` exists, offline mode, a token (``token``, else ``HF_TOKEN`` / ``hf auth login``),
    that the Hub answers, and that ``folder`` is a valid dataset folder
    (:func:`magicseg_hf.validate.validate_dataset_folder`). Then creates the repo (and branch
    ``revision``) if needed and makes one commit with the shards, ``vocabulary.txt``,
    ``generation.json``, the pictures and the card (rendered with ``repo_id`` in its examples),
    deleting remote shards the folder no longer has. A ``magicseg export`` folder (``export.json``)
    is checked by :func:`magicseg_hf.export.check.check_export_folder` and published with all its
    files (``id2label.json`` included) and its own card. Nothing is written into ``folder``; a push
    that fails half-way can simply be re-run. ``reachability_timeout`` and ``hub_timeout`` bound
    the waiting (see the module's docstring).
    """
    check_repo_id(repo_id)
    dataset = DatasetFolder(folder)
    if not dataset.exists():
        raise InputError(f"{dataset.root} is not a folder")
    token = _hub_token(token, reachability_timeout)
    report = validate_dataset_folder(dataset.root)
    if not report.ok:
        raise InputError(
            f"{dataset.root} is not a valid dataset folder ({report.num_problems} problem(s), first: "
            f"{report.problems[0]}); run `magicseg validate {dataset.root}`"
        )

    if is_export_folder(dataset.root):  # `magicseg export`: every file as written (card, id2label.json...)
        files = [name for name in export_published_files(dataset.root) if name != CARD_FILE]
        card_bytes = render_export_card_for(dataset.root, repo_id)
        stale_patterns = (f"{DATA_DIR}/*", "img_dir/*", "ann_dir/*")
    else:
        files = dataset.published_files()
        card_bytes = str(render_dataset_card(dataset, repo_id=repo_id)).encode("utf-8")
        stale_patterns = (f"{DATA_DIR}/*",)
    operations: list[Any] = [CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=card_bytes)]
    operations += [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(dataset.root / name)) for name in files]
    return _commit(
        repo_id,
        DATASET_KIND,
        operations,
        files=[CARD_FILE, *files],
        is_stale=lambda name: any(fnmatch.fnmatch(name, pattern) for pattern in stale_patterns),
        token=token,
        private=private,
        revision=revision,
        commit_message=commit_message
        or f"Upload MagicSeg dataset ({report.num_rows} rows) with magicseg-hf {__version__}",
        hub_timeout=hub_timeout,
    )


def _hub_token(token: str | None, reachability_timeout: float) -> str:
    """The token to push with, after the cheap checks that make an offline or unreachable Hub fail
    within seconds: offline mode, a token (``token``, else ``HF_TOKEN`` / ``hf auth login``), the Hub answers."""
    if hub_access.hub_offline():
        raise MagicSegError(OFFLINE_MESSAGE)
    token = token or get_token()
    if not token:
        raise MagicSegError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    hub_access.register_secret(token)  # redacted wherever it would be shown or logged
    if not hub_access.hub_reachable(reachability_timeout):
        raise MagicSegError(
            f"cannot reach the Hugging Face Hub at {hub_access.hub_endpoint_for_display()} (no answer within "
            f"{reachability_timeout:g} s); check the network"
        )
    return token


def _commit(
    repo_id: str,
    repo_type: str,
    operations: list[Any],
    files: list[str],
    is_stale: Callable[[str], bool],
    token: str,
    private: bool,
    revision: str | None,
    commit_message: str,
    hub_timeout: float = hub_access.HUB_CALL_TIMEOUT,
) -> PushResult:
    """Create the repo (and branch) if needed and make one commit of ``operations``, deleting the
    remote files for which ``is_stale`` holds and that ``files`` (the paths written) do not list.
    Each request waits at most ``hub_timeout`` seconds to connect, send or hear the next part of the answer."""
    api = HfApi(endpoint=hub_access.hub_endpoint(), token=token)  # the endpoint checked, read now
    deleted: list[str] = []
    try:
        with hub_access.bounded_hub_calls(hub_timeout):
            repo_url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
            if revision:
                api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
            remote = api.list_repo_files(repo_id, repo_type=repo_type, revision=revision)
            deleted = sorted(name for name in remote if is_stale(name) and name not in files)
            operations = operations + [CommitOperationDelete(path_in_repo=name) for name in deleted]
            commit = api.create_commit(
                repo_id,
                operations=operations,
                commit_message=commit_message,
                repo_type=repo_type,
                revision=revision,
            )
    except (HfHubHTTPError, OfflineModeIsEnabled, *hub_access.network_errors()) as error:
        raise hub_error(error, repo_id, hub_timeout) from None
    prefix = "" if repo_type == MODEL_KIND else f"{repo_type}s/"
    url = hub_access.redact(str(getattr(repo_url, "url", None) or f"{hub_access.hub_endpoint()}/{prefix}{repo_id}"))
    if revision:
        url = f"{url}/tree/{revision}"
    logger.info("pushed %d files to %s%s", len(files), repo_id, f" ({revision})" if revision else "")
    return PushResult(
        repo_id=repo_id,
        revision=revision,
        url=url,
        files=files,
        deleted=deleted,
        commit_url=getattr(commit, "commit_url", None),
        repo_type=repo_type,
    )


# ----------------------------------------------------------------------------------------------
# Which kind of folder
# ----------------------------------------------------------------------------------------------
def folder_kind(folder: str | Path) -> str:
    """``"model"`` for a model folder (a ``config.json``), ``"dataset"`` for a dataset folder
    (``data/`` or ``vocabulary.txt``).

    Raises:
        InputError: ``folder`` is not a folder, holds neither kind, or holds both.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(f"{root} is not a folder")
    is_model = (root / CONFIG_FILE).is_file()
    is_dataset = (root / DATA_DIR).is_dir() or (root / VOCABULARY_FILE).is_file() or is_export_folder(root)
    if is_model and is_dataset:
        raise InputError(
            f"{root} holds both a model ({CONFIG_FILE}) and a dataset ({DATA_DIR}/, {VOCABULARY_FILE}); "
            "push each from its own folder"
        )
    if is_model:
        return MODEL_KIND
    if is_dataset:
        return DATASET_KIND
    raise InputError(
        f"{root} is neither a dataset folder ({DATA_DIR}/ and {VOCABULARY_FILE}) nor a model folder "
        f"({CONFIG_FILE} and {WEIGHT_FILE})"
    )


def push_folder(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    reachability_timeout: float = hub_access.REACHABILITY_TIMEOUT,
    hub_timeout: float = hub_access.HUB_CALL_TIMEOUT,
) -> PushResult:
    """Publish ``folder`` to the Hub: a dataset folder to dataset repo ``repo_id``
    (:func:`push_dataset_folder`), a model folder to model repo ``repo_id`` (:func:`push_model_folder`)."""
    check_repo_id(repo_id)
    push = push_model_folder if folder_kind(folder) == MODEL_KIND else push_dataset_folder
    return push(
        folder, repo_id, private=private, revision=revision, token=token, commit_message=commit_message,
        reachability_timeout=reachability_timeout, hub_timeout=hub_timeout,
    )


# ----------------------------------------------------------------------------------------------
# Model folders
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No weight-loading progress bars while a folder is checked (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _auto_map_modules(value: Any) -> set[str]:
    """Module names that an ``auto_map`` (of a config or processor file, nested maps included) refers to
    in the folder itself (``module.Class``; references to other repos, ``repo--module.Class``, are left out)."""
    modules: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "auto_map":
                references = [ref for entry in (item or {}).values()
                              for ref in (entry if isinstance(entry, list) else [entry])]
                modules |= {ref.rsplit(".", 1)[0] for ref in references
                            if isinstance(ref, str) and "." in ref and "--" not in ref}
            else:
                modules |= _auto_map_modules(item)
    return modules


def model_folder_problems(folder: str | Path) -> list[str]:
    """What keeps ``folder`` from being a publishable ``CLIPForOpenSegmentation`` folder, one line each.

    Checked: ``config.json`` names the model and loads as a ``CLIPOpenSegConfig``; the safetensors
    weights are there and load into the model with no weight missing, unexpected or of the wrong
    shape; the processor and tokenizer files are there and load as a ``CLIPOpenSegProcessor``; every
    remote-code module named by an ``auto_map`` is in the folder. An empty list means it is valid.
    """
    from magicseg_hf.modeling import CLIPForOpenSegmentation, CLIPOpenSegConfig, CLIPOpenSegProcessor

    root = Path(folder).expanduser()
    problem = model_type_problem(root)
    if problem:
        return [problem]
    try:
        CLIPOpenSegConfig.from_pretrained(root)
    except Exception as error:  # any failure means "not a config of this model"; reported, not raised
        return [f"{CONFIG_FILE} does not load as a CLIPOpenSegConfig ({first_line(error)})"]

    problems: list[str] = []
    if not ((root / WEIGHT_FILE).is_file() or (root / WEIGHT_INDEX_FILE).is_file()):
        problems.append(f"no {WEIGHT_FILE} (the weights; save them with model.save_pretrained(DIR))")
    else:
        try:
            with _quiet_loading():
                _, info = CLIPForOpenSegmentation.from_pretrained(root, output_loading_info=True)
        except Exception as error:  # a truncated or foreign file: reported, not raised
            problems.append(f"the weights in {WEIGHT_FILE} do not load ({first_line(error)})")
        else:
            for key, what in (("missing_keys", "lacks {n} weight(s) of the model"),
                              ("unexpected_keys", "holds {n} weight(s) the model does not have"),
                              ("mismatched_keys", "holds {n} weight(s) of the wrong shape")):
                names = sorted(str(name) for name in info.get(key) or ())
                if names:
                    problems.append(f"{WEIGHT_FILE} {what.format(n=len(names))} (first: {names[0]})")

    has_processor = any((root / name).is_file() for name in PROCESSOR_FILES)
    has_tokenizer = (root / "tokenizer.json").is_file() or all((root / n).is_file() for n in ("vocab.json", "merges.txt"))
    if not has_processor:
        problems.append(f"no {PROCESSOR_FILES[0]} (save the processor with processor.save_pretrained(DIR))")
    if not has_tokenizer:
        problems.append("no tokenizer files (tokenizer.json, or vocab.json and merges.txt)")
    if has_processor and has_tokenizer:
        try:
            CLIPOpenSegProcessor.from_pretrained(root)
        except Exception as error:  # reported, not raised
            problems.append(f"the processor does not load ({first_line(error)})")

    referenced: set[str] = set()
    for name in (CONFIG_FILE, *PROCESSOR_FILES):
        if (root / name).is_file():
            try:
                referenced |= _auto_map_modules(json.loads((root / name).read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                problems.append(f"{name} is not readable JSON ({first_line(error)})")
    for module in sorted(referenced):
        if not (root / f"{module}.py").is_file():
            problems.append(f"auto_map names {module}.py, which is not in the folder (remote code would not load)")
    return problems


def model_published_files(folder: str | Path) -> list[str]:
    """The files a model push publishes from ``folder`` (top level only, see :data:`MODEL_FILE_PATTERNS`), sorted."""
    root = Path(folder).expanduser()
    return sorted(
        path.name for path in root.iterdir()
        if path.is_file() and path.name != CARD_FILE and not path.name.startswith(".")
        and any(fnmatch.fnmatch(path.name, pattern) for pattern in MODEL_FILE_PATTERNS)
    )


def push_model_folder(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    reachability_timeout: float = hub_access.REACHABILITY_TIMEOUT,
    hub_timeout: float = hub_access.HUB_CALL_TIMEOUT,
) -> PushResult:
    """Publish model folder ``folder`` (a saved ``CLIPForOpenSegmentation``) to the Hub model repo ``repo_id``.

    Checks, in order and each failing at once with a :class:`MagicSegError`: the repo id's form, that
    ``folder`` exists, offline mode, a token, that the Hub answers, and that ``folder`` is a valid
    model folder (:func:`model_folder_problems`, every problem named on the one line). Then creates
    the repo (and branch ``revision``) if needed and makes one commit with the weights, config,
    processor and tokenizer files, remote code, ``training_summary.json``, ``results*.json`` and the
    card (:func:`magicseg_hf.cards.render_model_card` with ``repo_id`` in its code), deleting remote
    weight files this push does not write. Nothing is written into ``folder``.
    """
    check_repo_id(repo_id)
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(f"{root} is not a folder")
    token = _hub_token(token, reachability_timeout)
    problems = model_folder_problems(root)
    if problems:
        raise InputError(f"{root} is not a valid model folder ({len(problems)} problem(s)): {'; '.join(problems)}")

    files = model_published_files(root)
    card_bytes = str(render_model_card(root, repo_id=repo_id)).encode("utf-8")
    operations: list[Any] = [CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=card_bytes)]
    operations += [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(root / name)) for name in files]
    return _commit(
        repo_id,
        MODEL_KIND,
        operations,
        files=[CARD_FILE, *files],
        is_stale=lambda name: "/" not in name and any(fnmatch.fnmatch(name, p) for p in STALE_WEIGHT_PATTERNS),
        token=token,
        private=private,
        revision=revision,
        commit_message=commit_message or f"Upload CLIPForOpenSegmentation model with magicseg-hf {__version__}",
        hub_timeout=hub_timeout,
    )
