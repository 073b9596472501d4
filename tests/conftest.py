"""Test-wide setup: offline, no telemetry, temporary caches, one thread per pytest worker."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# One thread everywhere: CPU float results depend on the thread count, and the determinism tests
# compare in-process runs with subprocess runs (which get OMP_NUM_THREADS=1).
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_hf_caches(tmp_path_factory, monkeypatch):
    """A fresh datasets cache per test: load_dataset never serves another test's folder."""
    cache = tmp_path_factory.mktemp("hf_datasets_cache")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache, raising=False)
