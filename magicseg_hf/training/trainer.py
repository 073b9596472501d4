"""``MagicSegTrainer``: a ``transformers.Trainer`` for counterfactual contrastive pretraining.

What it adds to the plain Trainer, and nothing more:

- the batch's ``class_ids`` (which vocabulary classes the K class embeddings are) stay out of the
  model call and are used to score evaluation predictions against the vocabulary;
- the batch's data counts (``num_skipped_rows``, ``num_bad_label_pixels``: the collator's
  ``COUNT_KEYS``) stay out of the model call too and are summed, training and evaluation apart, over
  every batch that reaches the model, whichever process (or DataLoader worker) collated it; the
  sums cross a resume through the checkpoints (:mod:`magicseg_hf.training.resume`) and
  :meth:`run_data_counts` gives the run's totals over processes;
- ``focal_loss``, ``dice_loss`` and ``counterfactual_loss`` are logged beside ``loss`` (averaged
  over the steps since the last log and over processes), so they reach the progress bar,
  ``trainer_state.json`` and every ``--report_to`` integration;
- a non-finite loss stops training with a clear error (checkpoints already saved are kept);
- the collator learns the epoch before each epoch starts (its negatives and augmentations are
  drawn from (seed, row id, epoch));
- ``--hub_token`` is never written: the Trainer pickles its TrainingArguments into
  ``training_args.bin`` (model folder, every checkpoint, every push from a checkpoint); there the
  token is ``None`` (:func:`hide_hub_token`), while in memory it still authenticates pushes;
- evaluation reduces logits to predictions per batch (in :meth:`prediction_step`, with fixed
  negatives from the evaluation collator) and reports mIoU over ``background + vocabulary``
  with the project's metric, streamed batch by batch (``batch_eval_metrics``).

Optimizer and schedule come from ``TrainingArguments``, with two named options for the released
recipe (docs/fidelity.md):

- ``decay_norms_and_biases=True`` puts weight decay on every trainable tensor, norms and biases
  included, as the release does (mmcv's ``DefaultOptimizerConstructor`` matches its ``custom_keys``
  longest first, so ``backbone``/``head`` win over ``norm``/``ln`` and every tensor keeps
  ``decay_mult`` 1). ``False`` is the Trainer's default, which keeps norms and biases out of decay.
  Frozen weights have ``requires_grad=False`` and are in no group either way.
- ``lr_scheduler_type="polynomial"`` with ``"warmup_times_poly": true`` in ``lr_scheduler_kwargs``
  runs the release's mmcv schedule (:mod:`magicseg_hf.training.schedule`); without the key, the
  Trainer's own polynomial schedule.

Gradient clipping is ``--max_grad_norm`` (0 turns it off; the release clips nothing).

Gradient accumulation: the model returns a per-batch mean loss (focal and dice divided by the
micro-batch's mask count, the counterfactual term averaged over its pairs) and takes no
``num_items_in_batch``, so :attr:`loss_is_scaled_for_ga` is ``False`` and the Trainer divides each
micro-batch's loss by the number of accumulation steps: N micro-batches of b rows give the update
of one batch of N x b rows when the micro-batches hold equal numbers of masks (otherwise each
micro-batch is normalised by its own mask count, averaged over processes as the release's criterion
does; the release itself does not accumulate).
The logged ``loss`` is then the mean over micro-batches of ``focal_loss_weight x focal_loss +
dice_loss_weight x dice_loss + counterfactual_loss_weight x counterfactual_loss``, the logged parts.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from magicseg_hf.errors import MagicSegError
from magicseg_hf.labels import IGNORE_LABEL, NONE_LABEL, UNKNOWN
from magicseg_hf.modeling.inference_clip_open_seg import DEFAULT_THRESHOLD, apply_threshold
from magicseg_hf.training.collator import COUNT_KEYS
from magicseg_hf.training.resume import ResumableRecordsMixin
from magicseg_hf.training.schedule import (
    get_release_schedule,
    release_schedule_kwargs,
    wants_release_schedule,
)

logger = logging.getLogger(__name__)

LOSS_COMPONENTS = ("focal_loss", "dice_loss", "counterfactual_loss")
#: Batch keys the model never sees: the rows' vocabulary ids and the collator's data counts.
NOT_MODEL_INPUTS = frozenset({"class_ids", *COUNT_KEYS})
#: Probability under which a pixel is predicted as background during evaluation in training (the model's
#: trained threshold, the inference path's default).
DEFAULT_EVAL_THRESHOLD = DEFAULT_THRESHOLD


class NonFiniteLossError(MagicSegError):
    """Training produced a NaN or infinite loss."""


def predictions_to_vocabulary(logits: torch.Tensor, class_ids: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per-pixel vocabulary ids from per-row class logits.

    Args:
        logits: (B, K, H, W) mask logits of each row's K classes.
        class_ids: (B, K) vocabulary index of each of those classes.
        threshold: a pixel whose best class probability (sigmoid) is below it is background.

    Returns:
        (B, H, W) int64: 0 background, ``v + 1`` vocabulary class ``v``.
    """
    best, position = logits.sigmoid().max(dim=1)  # (B, H, W) each
    ids = class_ids.gather(1, position.flatten(1)).view_as(position) + 1
    kept = apply_threshold(position, best, threshold)  # the inference path's threshold rule: -1 below it
    return torch.where(kept >= 0, ids, torch.zeros_like(ids))


def labels_to_vocabulary(labels: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
    """Model labels (positions, none, ignore) -> vocabulary ids (0 background, v + 1, 255 ignore).

    Args:
        labels: (B, H, W) int64 positions 0..K-1, ``NONE_LABEL`` or ``IGNORE_LABEL``.
        class_ids: (B, K) vocabulary index of each position.
    """
    position = labels.clamp(0, class_ids.shape[1] - 1)
    ids = class_ids.gather(1, position.flatten(1)).view_as(labels) + 1
    ids = torch.where(labels == NONE_LABEL, torch.zeros_like(ids), ids)
    return torch.where(labels == IGNORE_LABEL, torch.full_like(ids, UNKNOWN), ids)


class StreamingMeanIoU:
    """``compute_metrics`` for ``batch_eval_metrics=True``: accumulates per batch, reports at the end."""

    def __init__(self, num_labels: int) -> None:
        from magicseg_hf.evaluation.metric import MeanIoUAccumulator

        self.num_labels = num_labels
        self._factory = lambda: MeanIoUAccumulator(num_labels=num_labels, ignore_index=UNKNOWN)
        self.accumulator = self._factory()

    def __call__(self, eval_prediction: Any, compute_result: bool = True) -> dict[str, float]:
        predictions, references = eval_prediction.predictions, eval_prediction.label_ids
        self.accumulator.update(_as_numpy(predictions), _as_numpy(references))
        if not compute_result:
            return {}
        result = self.accumulator.compute()
        self.accumulator = self._factory()
        return {
            key: float(result[key])
            for key in ("mean_iou", "mean_accuracy", "overall_accuracy")
            if result.get(key) is not None
        }


def _as_numpy(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        value = value[0]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return value


class _EpochToCollator(TrainerCallback):
    """Tell the training collator which epoch is starting (before its DataLoader iterator exists)."""

    def __init__(self, trainer: MagicSegTrainer) -> None:
        self.trainer = trainer

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        collator = self.trainer.data_collator
        if hasattr(collator, "set_epoch"):
            # state.epoch is the float progress (e.g. 1.5 when resuming mid-epoch 1): its floor is
            # the epoch about to run.
            collator.set_epoch(int(math.floor(state.epoch or 0.0)))


class _UnwrittenToken(str):
    """A token that is an ordinary ``str`` in memory (it authenticates requests) but is never
    written: pickled (``torch.save`` of TrainingArguments), it becomes ``None``; copies are itself;
    its repr hides it."""

    __slots__ = ()

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, tuple[()]]:
        return (type(None), ())  # unpickles as NoneType() is None, without this package

    def __copy__(self) -> _UnwrittenToken:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _UnwrittenToken:
        return self

    def __repr__(self) -> str:
        return "'<hub token>'"


def hide_hub_token(arguments: Any) -> Any:
    """Make ``arguments.hub_token`` (TrainingArguments) pickle as ``None``, in place; returns
    ``arguments``. The token keeps working for pushes; ``to_dict``/``to_json_string`` already
    write a placeholder for it."""
    token = getattr(arguments, "hub_token", None)
    if isinstance(token, str) and not isinstance(token, _UnwrittenToken):
        arguments.hub_token = _UnwrittenToken(token)
    return arguments


class MagicSegTrainer(ResumableRecordsMixin, Trainer):
    """The Trainer of ``CLIPForOpenSegmentation`` on MagicSeg pairs.

    Args (beyond ``transformers.Trainer``'s):
        eval_data_collator: the collator of evaluation batches (no augmentation, fixed negatives);
            defaults to ``data_collator``.
        num_vocabulary_classes: vocabulary size, for the evaluation metric (``background + V`` labels).
        eval_threshold: background threshold of evaluation predictions.
        decay_norms_and_biases: weight decay on every trainable tensor (the release) instead of the
            Trainer's default, which exempts norms and biases.
    """

    #: The model's loss is a per-batch mean: the Trainer divides it by the accumulation steps.
    loss_is_scaled_for_ga = False
    #: Data counts summed per split (training, evaluation) from the batches' ``COUNT_KEYS``.
    data_count_names = tuple(f"{split}/{key}" for split in ("train", "eval") for key in COUNT_KEYS)

    def __init__(
        self,
        *args: Any,
        eval_data_collator: Any = None,
        num_vocabulary_classes: int | None = None,
        eval_threshold: float = DEFAULT_EVAL_THRESHOLD,
        decay_norms_and_biases: bool = False,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("compute_metrics") is None and num_vocabulary_classes is not None:
            kwargs["compute_metrics"] = StreamingMeanIoU(num_vocabulary_classes + 1)
        super().__init__(*args, **kwargs)
        hide_hub_token(self.args)  # before anything is saved: training_args.bin never holds the token
        self.eval_data_collator = eval_data_collator
        self.eval_threshold = eval_threshold
        self.decay_norms_and_biases = decay_norms_and_biases
        self._component_sums: dict[str, torch.Tensor] = {}
        self._component_steps = 0
        self.add_callback(_EpochToCollator(self))

    # ---- optimizer and schedule ----------------------------------------------------------------
    def get_decay_parameter_names(self, model: Any) -> list[str]:
        """Every parameter name with ``decay_norms_and_biases`` (the release), else the Trainer's rule."""
        if self.decay_norms_and_biases:
            return [name for name, _ in model.named_parameters()]
        return super().get_decay_parameter_names(model)

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        """The release's warm-up-times-poly schedule when ``lr_scheduler_kwargs`` ask for it, else the Trainer's."""
        if self.lr_scheduler is None and wants_release_schedule(
            self.args.lr_scheduler_type, self.args.lr_scheduler_kwargs
        ):
            self.lr_scheduler = get_release_schedule(
                optimizer if optimizer is not None else self.optimizer,
                num_warmup_steps=self.args.get_warmup_steps(num_training_steps),
                num_training_steps=num_training_steps,
                **release_schedule_kwargs(self.args.lr_scheduler_kwargs),
            )
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)

    # ---- training ------------------------------------------------------------------------------
    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        # Every batch reaches the model here (training_step and prediction_step alike): the data counts
        # are taken off it, and counted, on this one path.
        model_inputs = {key: value for key, value in inputs.items() if key not in NOT_MODEL_INPUTS}
        self.add_data_counts("train" if model.training else "eval",
                             {key: inputs[key] for key in COUNT_KEYS if key in inputs})
        outputs = model(**model_inputs)
        loss = outputs["loss"]
        if model.training:
            self._check_finite(loss)
            for name in LOSS_COMPONENTS:
                value = outputs.get(name)
                if value is not None:
                    total = self._component_sums.get(name)
                    value = value.detach().float()
                    self._component_sums[name] = value if total is None else total + value
            self._component_steps += 1
        return (loss, outputs) if return_outputs else loss

    def _check_finite(self, loss: torch.Tensor) -> None:
        bad = (~torch.isfinite(loss.detach())).float().reshape(1)
        if self.accelerator.num_processes > 1:  # every rank stops together, none waits forever
            bad = self.accelerator.reduce(bad, reduction="sum")
        if bad.item() > 0:
            step = self.state.global_step
            raise NonFiniteLossError(
                f"the loss became non-finite at step {step} (got {loss.item()}); training stopped — "
                f"{self._resume_advice()}"
            )

    def _resume_advice(self) -> str:
        """What a stopped run can do next: resume from its newest complete checkpoint, or start over."""
        from magicseg_hf.training.checks import newest_complete_checkpoint

        newest = newest_complete_checkpoint(self.args.output_dir)
        clip = self.args.max_grad_norm
        remedy = ("lower --learning_rate or clip gradients with --max_grad_norm (e.g. 1.0; this run clipped none)"
                  if not clip or clip <= 0 else
                  f"lower --learning_rate or --max_grad_norm (this run clipped at {clip})")
        if newest is None:
            return f"no checkpoint was saved in {self.args.output_dir} yet: {remedy} and start again with --overwrite"
        return (f"the newest complete checkpoint, {newest}, is intact: {remedy} and resume with "
                f"--resume_from_checkpoint {newest}")

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._component_steps:
            for name, total in self._component_sums.items():
                mean = total / self._component_steps
                if self.accelerator.num_processes > 1:
                    mean = self.accelerator.reduce(mean.reshape(1), reduction="mean")
                logs[name] = round(float(mean.item()), 4)
            self._component_sums, self._component_steps = {}, 0
        super().log(logs, start_time)

    # ---- evaluation ----------------------------------------------------------------------------
    def get_eval_dataloader(self, eval_dataset: Any = None) -> Any:
        if self.eval_data_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

    def prediction_step(
        self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool, ignore_keys: list[str] | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """(loss, predictions, references), the last two as (B, H, W) vocabulary ids (0 = background)."""
        inputs = self._prepare_inputs(inputs)
        class_ids = inputs["class_ids"]
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
        loss = loss.detach().mean() if loss is not None else None
        if prediction_loss_only:
            return loss, None, None
        predictions = predictions_to_vocabulary(outputs["logits"].float(), class_ids, self.eval_threshold)
        references = labels_to_vocabulary(inputs["labels"], class_ids)
        return loss, predictions, references
