"""What every twin builder shares: seeded weight draws and the text-config fields that fit a tokenizer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, restoring the caller's RNG state afterwards.

    ``torch.manual_seed`` seeds the CPU and every CUDA device (a twin may be drawn on a GPU), so
    every one of their states is saved and put back.
    """
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        yield


def drawing_on(device: str | None) -> contextlib.AbstractContextManager[Any]:
    """Build modules on ``device`` (torch's default device for the block); ``None``: as usual."""
    return torch.device(device) if device is not None else contextlib.nullcontext()


def tokenizer_fields(tokenizer: Any) -> dict[str, Any]:
    """The text-config fields that make a model fit ``tokenizer``: its vocabulary size and the ids
    of its beginning, end and padding tokens."""
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
