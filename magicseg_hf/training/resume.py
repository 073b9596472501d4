"""A resumed run records what the uninterrupted run records.

The Trainer keeps two running sums outside its checkpoints: the loss summed since the last log line
(``_tr_loss``, with ``_globalstep_last_logged``) and the loss summed over the run
(``_total_loss_scalar``); ``MagicSegTrainer`` keeps a third, the loss components since the last log
line. A run resumed from a checkpoint saved between two log lines would start those sums at zero,
so its next logged ``loss`` would average fewer steps than the straight run's and its
``train_loss`` would cover the resumed steps only, while its weights are bit-identical.

:class:`RunningSums` is a stateful callback (transformers' ``ExportableState``): the Trainer writes
its state into ``trainer_state.json`` with every checkpoint (restoring it into callbacks is off by
default, ``restore_callback_states_from_checkpoint``, so the mixin reads it back from the resumed
state itself), and :class:`ResumableRecordsMixin` fills it before each save and puts it back into
the Trainer's sums at the first step after a resume. The sums are the mean over processes, taken by every process before
the save (so the next log line, itself a mean over processes, is the straight run's).

The data counts (rows skipped, label pixels out of range: see ``MagicSegCollator``'s ``COUNT_KEYS``)
ride along the same way: the mixed class adds each batch's counts as the batch reaches the model
(:meth:`ResumableRecordsMixin.add_data_counts`), so batches collated in DataLoader workers and on
every process are counted, and batches collated ahead but never trained on are not. Before each
save they are summed over processes, added to what the checkpoint the run resumed from recorded,
and written; :meth:`ResumableRecordsMixin.run_data_counts` gives the whole run's totals.

A checkpoint that already holds the last step (a kill during the final save of the model folder)
is not trained further: :func:`finished_checkpoint_state` tells ``magicseg train`` so, and it loads
the checkpoint's weights and records instead of taking one more step.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

logger = logging.getLogger(__name__)


class RunningSums(TrainerCallback, ExportableState):
    """The Trainer's running loss sums at the last checkpoint (restored on resume).

    Attributes:
        global_step: the step the sums belong to (-1: nothing recorded yet).
        partial_loss: loss summed since the last log line (mean over processes).
        last_logged: the step of the last log line.
        total_loss: loss summed over the run's logged intervals.
        component_sums: ``MagicSegTrainer``'s loss components summed since the last log line.
        component_steps: how many steps ``component_sums`` holds.
        data_counts: the run's data counts up to ``global_step`` (summed over processes), by
            ``split/name`` (e.g. ``train/num_skipped_rows``).
        skipped_row_ids: the skipped rows named so far (unique, sorted; best effort, see
            :meth:`ResumableRecordsMixin.run_skipped_row_ids`).
    """

    def __init__(self) -> None:
        self.global_step = -1
        self.partial_loss = 0.0
        self.last_logged = 0
        self.total_loss = 0.0
        self.component_sums: dict[str, float] = {}
        self.component_steps = 0
        self.data_counts: dict[str, int] = {}
        self.skipped_row_ids: list[str] = []

    def state(self) -> dict[str, Any]:
        names = ("global_step", "partial_loss", "last_logged", "total_loss", "component_sums", "component_steps",
                 "data_counts", "skipped_row_ids")
        return {"args": {}, "attributes": {name: getattr(self, name) for name in names}}


class ResumableRecordsMixin:
    """Mixed into a ``transformers.Trainer`` (before it): keeps the running sums across a resume.

    The mixed class may keep ``_component_sums`` (name -> 0-d tensor) and ``_component_steps``, and
    names its data counts in :attr:`data_count_names` (``split/name``; every process reduces the same
    list, so it is fixed, not taken from the batches seen).
    """

    #: The data counts the run records, ``split/name`` (e.g. ``train/num_skipped_rows``).
    data_count_names: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._data_counts: dict[str, torch.Tensor] = {}  # split/name -> 0-d int64, this process, this call
        self._resumed_data_counts: dict[str, int] = {}  # the checkpoint's totals (all processes)
        self._resumed_row_ids: list[str] = []
        self.add_callback(RunningSums())  # type: ignore[attr-defined]

    # ---- data counts ---------------------------------------------------------------------------
    def add_data_counts(self, split: str, counts: dict[str, torch.Tensor]) -> None:
        """Add one batch's data counts (name -> (B,) int64, per row) to this process's, under ``split/name``."""
        for name, value in counts.items():
            key = f"{split}/{name}"
            if key not in self.data_count_names:
                raise ValueError(f"`counts` holds {key!r}, which is not in `data_count_names` {self.data_count_names}")
            total = value.detach().sum()
            previous = self._data_counts.get(key)
            self._data_counts[key] = total if previous is None else previous + total.to(previous.device)

    def run_data_counts(self) -> dict[str, int]:
        """The whole run's data counts (every process, and the run resumed from), by ``split/name``.

        A collective: every process calls it (it sums over processes).
        """
        names = self.data_count_names
        if not names:
            return {}
        accelerator = self.accelerator  # type: ignore[attr-defined]
        local = torch.stack([
            self._data_counts[name].to(accelerator.device, torch.long) if name in self._data_counts
            else torch.zeros((), dtype=torch.long, device=accelerator.device)
            for name in names
        ])  # (N,)
        if accelerator.num_processes > 1:
            local = accelerator.reduce(local, reduction="sum")
        return {name: int(value) + int(self._resumed_data_counts.get(name, 0))
                for name, value in zip(names, local.tolist())}

    def run_skipped_row_ids(self) -> list[str]:
        """The skipped rows named by the collators (``skipped_row_ids``) of every process, with the
        run resumed from's: unique, sorted. Best effort, unlike the counts: ids are strings, which do
        not travel in batches, so rows skipped in DataLoader workers are counted but not named here
        (the workers log them). A collective: every process calls it."""
        local: list[str] = []
        for collator in (getattr(self, "data_collator", None), getattr(self, "eval_data_collator", None)):
            local += [str(row_id) for row_id in getattr(collator, "skipped_row_ids", None) or []]
        if self.accelerator.num_processes > 1:  # type: ignore[attr-defined]
            from accelerate.utils import gather_object

            local = list(gather_object(local))
        return sorted(set(local) | set(self._resumed_row_ids))

    def _adopt_recorded_counts(self, attributes: dict[str, Any]) -> None:
        """Take a checkpoint's recorded data counts and named rows as this run's starting point."""
        self._resumed_data_counts = {str(k): int(v) for k, v in (attributes.get("data_counts") or {}).items()}
        self._resumed_row_ids = [str(row_id) for row_id in attributes.get("skipped_row_ids") or []]

    def adopt_finished_checkpoint(self, checkpoint: str | Path, state: dict[str, Any]) -> None:
        """A checkpoint holding the run's last step is the run: load its weights and ``state`` (its
        ``trainer_state.json``), and take its ``RunningSums`` as the run's loss total and data counts."""
        from transformers import TrainerState

        self._load_from_checkpoint(str(checkpoint))  # type: ignore[attr-defined]
        self.state = TrainerState(**state)
        attributes = recorded_sums(state)
        self._run_loss_total = float(attributes.get("total_loss", 0.0)) + float(attributes.get("partial_loss", 0.0))
        self._adopt_recorded_counts(attributes)

    def _running_sums(self) -> RunningSums:
        for callback in self.callback_handler.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, RunningSums):
                return callback  # after a resume, the instance the Trainer rebuilt from the checkpoint
        raise RuntimeError("RunningSums callback missing")

    def _maybe_log_save_evaluate(self, tr_loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        self._restore_running_sums(tr_loss)
        super()._maybe_log_save_evaluate(tr_loss, *args, **kwargs)  # type: ignore[misc]

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        # After this step's log line (if any), before trainer_state.json is written.
        self._record_running_sums(self._tr_loss)  # type: ignore[attr-defined]
        super()._save_checkpoint(model, trial)  # type: ignore[misc]

    def _restore_running_sums(self, tr_loss: torch.Tensor) -> None:
        """At the first step after a resume: add the checkpoint's sums to the Trainer's (once)."""
        start = getattr(self, "_initial_global_step", 0)
        if not start or getattr(self, "_restored_at", None) == start:
            return  # not a resumed run, or restored already
        self._restored_at = start
        attributes = recorded_sums({"stateful_callbacks": self.state.stateful_callbacks})  # type: ignore[attr-defined]
        if attributes.get("global_step") != start:
            logger.warning("the checkpoint of step %d records no running loss sums: the first logged loss "
                           "after the resume averages the resumed steps only, and the data counts "
                           "(skipped rows, bad label pixels) cover them only", start)
            return
        sums = self._running_sums()
        for name, value in attributes.items():
            setattr(sums, name, value)
        self._adopt_recorded_counts(attributes)
        tr_loss += torch.tensor(sums.partial_loss, dtype=tr_loss.dtype, device=tr_loss.device)
        self._globalstep_last_logged = sums.last_logged
        self._total_loss_scalar = sums.total_loss
        component_sums = getattr(self, "_component_sums", None)
        if component_sums is not None:
            for name, value in sums.component_sums.items():
                restored = torch.tensor(value)
                total = component_sums.get(name)
                component_sums[name] = restored if total is None else total + restored.to(total.device)
            self._component_steps = getattr(self, "_component_steps", 0) + sums.component_steps
        logger.debug("restored the running loss sums of step %d", sums.global_step)

    def _record_running_sums(self, tr_loss: torch.Tensor) -> None:
        """Before a save: the sums as they stand (means over processes; every process takes part)."""
        sums = self._running_sums()
        accelerator = self.accelerator  # type: ignore[attr-defined]
        values = [tr_loss.detach().float().reshape(1)]
        names = sorted(getattr(self, "_component_sums", {}) or {})
        values += [self._component_sums[name].detach().float().reshape(1).to(values[0].device) for name in names]
        stacked = torch.cat(values)
        if accelerator.num_processes > 1:
            stacked = accelerator.reduce(stacked, reduction="mean")
        sums.global_step = self.state.global_step  # type: ignore[attr-defined]
        sums.partial_loss = float(stacked[0].item())
        sums.last_logged = int(self._globalstep_last_logged)
        sums.total_loss = float(self._total_loss_scalar)
        sums.component_sums = {name: float(value) for name, value in zip(names, stacked[1:].tolist())}
        sums.component_steps = int(getattr(self, "_component_steps", 0))
        sums.data_counts = self.run_data_counts()
        sums.skipped_row_ids = self.run_skipped_row_ids()

    def _finalize_training(self, *args: Any, **kwargs: Any) -> Any:
        # The Trainer's train_loss divides its sum by the steps of this call: after a resume the sum
        # covers the whole run (restored above), so scale it to give the whole run's mean.
        steps, start = self.state.global_step, getattr(self, "_initial_global_step", 0)  # type: ignore[attr-defined]
        pending = float(self._tr_loss.item())  # type: ignore[attr-defined]
        self._run_loss_total = float(self._total_loss_scalar) + pending
        if start and steps > start:
            self._total_loss_scalar = self._run_loss_total * (steps - start) / steps - pending
        return super()._finalize_training(*args, **kwargs)  # type: ignore[misc]

    def run_mean_loss(self) -> float | None:
        """The loss averaged over every step of the run, resumed parts included (after ``train``)."""
        steps = self.state.global_step  # type: ignore[attr-defined]
        total = getattr(self, "_run_loss_total", None)
        if not steps or total is None:
            total = float(getattr(self, "_total_loss_scalar", 0.0))
        return total / steps if steps else None


def recorded_sums(state: dict[str, Any]) -> dict[str, Any]:
    """The :class:`RunningSums` attributes a ``trainer_state.json`` (as a dict) recorded; {} when none.

    transformers stores a stateful callback under its class name, as a list when several share it.
    """
    stored = (state.get("stateful_callbacks") or {}).get(RunningSums.__name__)
    return (stored[0] if isinstance(stored, list) else stored or {}).get("attributes", {})


def finished_checkpoint_state(
    checkpoint: str | Path | None, max_steps: int, num_train_epochs: float
) -> dict[str, Any] | None:
    """The ``trainer_state.json`` of ``checkpoint`` when it already holds this run's last step, else None.

    This run's last step is ``max_steps`` when positive; otherwise the step count the checkpoint's
    run computed from its epochs, if this run asks for as many epochs. A run resumed with a larger
    ``max_steps`` (or other epochs) trains on.
    """
    if not checkpoint:
        return None
    path = Path(checkpoint) / "trainer_state.json"
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if max_steps > 0:
        last_step = max_steps
    elif float(state.get("num_train_epochs") or 0) == float(num_train_epochs):
        last_step = int(state.get("max_steps") or 0)
    else:
        return None
    if last_step > 0 and int(state.get("global_step") or 0) >= last_step:
        return state
    return None
