"""Test-wide setup: offline, no telemetry, temporary caches, one thread per pytest worker.

Offline mode is set here, once, for the whole suite (``HF_HUB_OFFLINE=1`` before any Hugging Face
library is imported): tests use the ``tiny`` preset and never touch the network.

Tests marked ``slow`` load real checkpoints from the Hub. They are skipped unless selected with
``-m slow``, and they run only when ``MAGICSEG_ONLINE_TESTS=1`` is set: then this file leaves
``HF_HUB_OFFLINE`` as the caller's environment has it, and the offline tests are skipped (they
rely on offline mode)::

    MAGICSEG_ONLINE_TESTS=1 pytest -m slow
"""

from __future__ import annotations

import os

#: Environment variable that turns the session into an online one (only the slow tests run).
ONLINE_TESTS_VARIABLE = "MAGICSEG_ONLINE_TESTS"
ONLINE = os.environ.get(ONLINE_TESTS_VARIABLE) == "1"

if not ONLINE:
    os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# One thread everywhere: CPU float results depend on the thread count, and the determinism tests
# compare in-process runs with subprocess runs (which get OMP_NUM_THREADS=1).
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip slow tests unless ``-m`` names them; in an online session, skip the offline tests."""
    slow_selected = "slow" in (config.getoption("markexpr", default="") or "")
    skip_slow = pytest.mark.skip(reason="slow test: select it with -m slow (and MAGICSEG_ONLINE_TESTS=1)")
    skip_offline = pytest.mark.skip(reason=f"offline test: {ONLINE_TESTS_VARIABLE}=1 runs only the slow tests")
    for item in items:
        is_slow = item.get_closest_marker("slow") is not None
        if is_slow and not slow_selected:
            item.add_marker(skip_slow)
        elif not is_slow and ONLINE:
            item.add_marker(skip_offline)


@pytest.fixture(autouse=True)
def _isolated_hf_caches(tmp_path_factory, monkeypatch):
    """A fresh datasets cache per test: load_dataset never serves another test's folder."""
    cache = tmp_path_factory.mktemp("hf_datasets_cache")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache, raising=False)


@pytest.fixture
def torch_load_calls(monkeypatch) -> list:
    """The ``weights_only`` argument of every ``torch.load`` call made during the test, in order."""
    calls: list = []
    original_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return original_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    return calls
