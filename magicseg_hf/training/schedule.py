"""The released recipe's learning-rate schedule: mmcv's linear warm-up *times* poly decay.

The release (``configs/magicseg/vpt_seg_fully_vit-b_512x512_20k_12_10.py``) sets
``lr_config = dict(policy='poly', power=0.9, min_lr=1e-6, by_epoch=False, warmup='linear',
warmup_iters=1500, warmup_ratio=1e-6)`` over 20k iterations. In mmcv 1.4 (``PolyLrUpdaterHook.get_lr``,
``LrUpdaterHook.get_warmup_lr``) the learning rate at iteration ``t`` is::

    poly(t) = (base_lr - min_lr) * (1 - t / max_iters) ** power + min_lr
    lr(t)   = poly(t) * (1 - (1 - t / warmup_iters) * (1 - warmup_ratio))   for t < warmup_iters
    lr(t)   = poly(t)                                                        otherwise

So the warm-up multiplies a poly curve that already decays over *all* iterations (peak about
1.865e-4 at step 1500 for base 2e-4), where transformers' ``polynomial`` schedule warms up to the
base rate and then decays over the remaining steps. ``magicseg train --preset paper`` selects this
schedule with ``lr_scheduler_type="polynomial"`` and ``"warmup_times_poly": true`` in
``lr_scheduler_kwargs`` (:func:`wants_release_schedule`); without that key the Trainer's own
polynomial schedule runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch

#: The ``lr_scheduler_kwargs`` key that selects :func:`get_release_schedule` for ``polynomial``.
RELEASE_SCHEDULE_KEY = "warmup_times_poly"


def release_lr_factor(
    step: int,
    *,
    num_warmup_steps: int,
    num_training_steps: int,
    power: float = 0.9,
    min_lr_ratio: float = 0.0,
    warmup_ratio: float = 1e-6,
) -> float:
    """The multiplier of the base learning rate at optimizer step ``step`` (0-based, mmcv's ``runner.iter``).

    Args:
        num_warmup_steps: mmcv's ``warmup_iters`` (0: no warm-up).
        num_training_steps: mmcv's ``max_iters``; the poly curve reaches ``min_lr_ratio`` there.
        power: the poly exponent.
        min_lr_ratio: ``min_lr / base_lr`` (mmcv's ``min_lr`` is absolute).
        warmup_ratio: the warm-up's starting fraction of the poly value.
    """
    progress = min(max(step, 0), num_training_steps) / max(1, num_training_steps)
    regular = (1.0 - min_lr_ratio) * (1.0 - progress) ** power + min_lr_ratio
    if step >= num_warmup_steps:
        return regular
    k = (1.0 - step / num_warmup_steps) * (1.0 - warmup_ratio)
    return regular * (1.0 - k)


def get_release_schedule(
    optimizer: torch.optim.Optimizer,
    num_warmup_steps: int,
    num_training_steps: int,
    lr_end: float = 1e-6,
    power: float = 0.9,
    warmup_ratio: float = 1e-6,
    last_epoch: int = -1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following :func:`release_lr_factor` for every parameter group.

    ``lr_end`` is an absolute rate, as mmcv's ``min_lr``: each group's factor uses its own base rate.
    """
    factors = []
    for group in optimizer.param_groups:
        base = group.get("initial_lr", group["lr"])
        factors.append(partial(
            release_lr_factor, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps,
            power=power, min_lr_ratio=(lr_end / base) if base > 0 else 0.0, warmup_ratio=warmup_ratio,
        ))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors, last_epoch=last_epoch)


def wants_release_schedule(lr_scheduler_type: Any, lr_scheduler_kwargs: Mapping[str, Any] | None) -> bool:
    """Whether TrainingArguments ask for the release's schedule (``polynomial`` + ``warmup_times_poly``)."""
    kind = getattr(lr_scheduler_type, "value", lr_scheduler_type)
    return kind == "polynomial" and bool((lr_scheduler_kwargs or {}).get(RELEASE_SCHEDULE_KEY))


def release_schedule_kwargs(lr_scheduler_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`get_release_schedule` keywords in ``lr_scheduler_kwargs`` (the selector key removed)."""
    known = {"lr_end", "power", "warmup_ratio"}
    unknown = set(lr_scheduler_kwargs) - known - {RELEASE_SCHEDULE_KEY}
    if unknown:
        raise ValueError(
            f"lr_scheduler_kwargs {sorted(unknown)} are not settings of the release schedule "
            f"(known: {sorted(known)})"
        )
    return {key: value for key, value in lr_scheduler_kwargs.items() if key in known}
