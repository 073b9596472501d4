"""Gradient accumulation: ``--gradient_accumulation_steps 2`` at batch b is the update of batch 2b.

``CLIPForOpenSegmentation`` returns a per-batch mean loss (focal and dice normalised by the batch's
mask count, the counterfactual term averaged over its pairs). The Trainer must therefore divide each
micro-batch's loss by the number of accumulation steps; it skips that when it believes the model
normalises by ``num_items_in_batch`` itself (a forward with ``**kwargs``), which made the gradients and
the logged ``loss`` N times too large.

Every row here has exactly one class, so each micro-batch holds the same number of masks and the
mean of the micro-batch losses equals the loss of the whole batch.
"""

from __future__ import annotations

import pytest
import torch
from procedural import procedural_rows
from transformers import TrainerCallback, TrainingArguments

from magicseg_hf.loading import build_open_seg
from magicseg_hf.training.collator import MagicSegCollator
from magicseg_hf.training.trainer import LOSS_COMPONENTS, MagicSegTrainer

DETERMINISTIC = {"prompt_dropout": 0.0, "decoder_dropout": 0.0, "drop_path_rate": 0.0}
BATCH = 2


def _one_class_rows(count: int) -> list[dict]:
    rows = [row for row in procedural_rows(4 * count, seed=3) if len(row["classes"]) == 1]
    assert len(rows) >= count
    return rows[:count]


class _Gradients(TrainerCallback):
    """Keeps the accumulated gradients just before the first optimizer step."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.gradients = model, None

    def on_pre_optimizer_step(self, args, state, control, **kwargs) -> None:
        if self.gradients is None:
            self.gradients = {name: p.grad.detach().clone() for name, p in self.model.named_parameters()
                              if p.grad is not None}


def _run(tmp_path, batch: int, accumulation: int) -> tuple[dict, dict, list[dict]]:
    model, processor = build_open_seg("tiny", seed=0, **DETERMINISTIC)
    vocabulary = sorted({name for row in _one_class_rows(2 * BATCH) for name in row["classes"]} | {"x", "y"})
    embeds = model.encode_classes(vocabulary).detach()
    collator = MagicSegCollator(processor, vocabulary, embeds, num_classes=3, augment=False, seed=0)
    args = TrainingArguments(
        output_dir=str(tmp_path / f"b{batch}-ga{accumulation}"), use_cpu=True, report_to=[], seed=0,
        per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation, max_steps=1,
        learning_rate=0.5, optim="sgd", weight_decay=0.0, max_grad_norm=0.0, lr_scheduler_type="constant",
        logging_steps=1, save_strategy="no", remove_unused_columns=False, label_names=["labels"],
    )
    # Exactly 2 x BATCH rows: whatever order the sampler draws, the first optimizer step sees them all.
    trainer = MagicSegTrainer(model=model, args=args, train_dataset=_one_class_rows(2 * BATCH),
                              data_collator=collator)
    spy = _Gradients(model)
    trainer.add_callback(spy)
    trainer.train()
    parameters = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    return spy.gradients, parameters, trainer.state.log_history


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ga")
    return {"whole": _run(root, 2 * BATCH, 1), "accumulated": _run(root, BATCH, 2)}


def test_accumulated_update_equals_the_whole_batch_update(runs):
    whole_grads, whole_params, _ = runs["whole"]
    grads, params, _ = runs["accumulated"]
    assert whole_grads.keys() == grads.keys() and "visual_prompts" in grads
    for name in whole_grads:  # float32 sums in another order: equal to ~1e-6 of the largest entry
        scale = float(whole_grads[name].abs().max())
        assert torch.allclose(grads[name], whole_grads[name], rtol=1e-4, atol=1e-5 * scale + 1e-8), name
    for name in whole_params:
        scale = float(whole_params[name].abs().max())
        assert torch.allclose(params[name], whole_params[name], rtol=1e-4, atol=1e-5 * scale + 1e-8), name


def test_logged_loss_is_the_weighted_sum_of_its_logged_parts(runs):
    model, _ = build_open_seg("tiny")
    weights = {"focal_loss": model.config.focal_loss_weight, "dice_loss": model.config.dice_loss_weight,
               "counterfactual_loss": model.config.counterfactual_loss_weight}
    for key in runs:
        logs = next(entry for entry in runs[key][2] if "loss" in entry)
        total = sum(weights[name] * logs[name] for name in LOSS_COMPONENTS)
        # Each part is rounded to 4 decimals in the log; the focal part is then weighted x100.
        assert logs["loss"] == pytest.approx(total, abs=0.01, rel=1e-3), key
    whole = next(entry for entry in runs["whole"][2] if "loss" in entry)
    accumulated = next(entry for entry in runs["accumulated"][2] if "loss" in entry)
    assert accumulated["loss"] == pytest.approx(whole["loss"], rel=1e-3)


def test_forward_refuses_unknown_arguments_and_the_trainer_scales_for_accumulation(tmp_path):
    model, _ = build_open_seg("tiny", **DETERMINISTIC)
    with pytest.raises(TypeError):
        model(pixel_values=torch.zeros(1, 3, 64, 64), class_embeds=torch.randn(2, model.config.projection_dim),
              pixel_valeus=torch.zeros(1, 3, 64, 64))
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    trainer = MagicSegTrainer(model=model, args=args)
    assert trainer.model_accepts_loss_kwargs is False and trainer.loss_is_scaled_for_ga is False
