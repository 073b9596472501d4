"""``--preset paper`` is the released training recipe (ckxhp/magicseg, ``train_code/ZegCLIP-main``).

One test per item of docs/fidelity.md's "training recipe" table: drop path 0, no gradient clipping,
weight decay on every trainable tensor, mmcv's warm-up-times-poly schedule, crop padding labelled
background with the image padded with the mean colour, ``RandomCrop(cat_max_ratio=0.75)`` with up
to 10 retries, and mmseg's ``PhotoMetricDistortion`` drawn once per pair. The release's numbers
(lr 2e-4 = 2e-5 x lr_mult 10, warm-up 1500 steps from ratio 1e-6, poly power 0.9 to 1e-6 over 20k
iterations) are written out here from its config, not read from our code.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from magicseg_hf.labels import UNKNOWN
from magicseg_hf.loading import build_open_seg
from magicseg_hf.modeling import CLIPOpenSegConfig
from magicseg_hf.presets import training_defaults
from magicseg_hf.training import transforms
from magicseg_hf.training.transforms import AugmentationSettings, PairTransform

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


# ---- drop path ----------------------------------------------------------------------------------
def test_paper_model_has_no_drop_path_and_identical_pairs_give_a_loss_of_one():
    """The release builds DropPath but never calls it (utils.py ResidualAttentionBlock.forward)."""
    assert CLIPOpenSegConfig().drop_path_rate == 0.0
    model, processor = build_open_seg("tiny", drop_path_rate=CLIPOpenSegConfig().drop_path_rate,
                                      prompt_dropout=0.0, decoder_dropout=0.0)
    model.train()
    pixels = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = model(pixel_values=pixels, counterfactual_pixel_values=pixels.clone(),
                class_embeds=torch.randn(3, model.config.projection_dim))
    assert out.counterfactual_loss.item() == pytest.approx(1.0, abs=1e-5)


# ---- optimiser ----------------------------------------------------------------------------------
def test_paper_preset_does_not_clip_gradients():
    """The release's optimizer_config is dict(): no grad_clip (schedule_20k.py)."""
    assert training_defaults("paper")["max_grad_norm"] == 0.0


def _trainer(tmp_path, preset: str, **trainer_kwargs):
    from transformers import TrainingArguments

    from magicseg_hf.training.trainer import MagicSegTrainer

    defaults = training_defaults(preset)
    defaults["eval_strategy"] = "no"  # no evaluation set here
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], **defaults)
    model, _ = build_open_seg("tiny")
    return MagicSegTrainer(model=model, args=args, **trainer_kwargs), model


def test_paper_weight_decay_reaches_every_trainable_tensor(tmp_path):
    """mmcv matches custom_keys longest first: 'backbone'/'head' win over 'norm'/'ln', so norms and biases decay."""
    from magicseg_hf.presets import training_recipe

    recipe = training_recipe("paper")
    assert recipe["decay_norms_and_biases"] is True
    trainer, model = _trainer(tmp_path, "paper", decay_norms_and_biases=True)
    optimizer = trainer.create_optimizer()
    decay = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert any("norm" in name for name in trainable) and any(name.endswith("bias") for name in trainable)
    assert {name: decay.get(id(p)) for name, p in trainable.items()} == {name: 0.01 for name in trainable}


def test_the_transformers_exclusion_stays_a_named_option(tmp_path):
    trainer, model = _trainer(tmp_path, "paper", decay_norms_and_biases=False)
    optimizer = trainer.create_optimizer()
    decay = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    assert decay[id(model.prompt_norm.weight)] == 0.0 and decay[id(model.prompt_proj.weight)] == 0.01


# ---- schedule -----------------------------------------------------------------------------------
def release_lr(step: int, base: float = 2e-4, total: int = 20_000, warmup: int = 1500,
               power: float = 0.9, min_lr: float = 1e-6, warmup_ratio: float = 1e-6) -> float:
    """mmcv 1.4 PolyLrUpdaterHook.get_lr and LrUpdaterHook.get_warmup_lr ('linear'), by iteration."""
    regular = (base - min_lr) * (1 - step / total) ** power + min_lr
    if step >= warmup:
        return regular
    k = (1 - step / warmup) * (1 - warmup_ratio)
    return regular * (1 - k)


def test_release_schedule_matches_mmcv_at_several_steps(tmp_path):
    trainer, _ = _trainer(tmp_path, "paper", decay_norms_and_biases=True)
    trainer.create_optimizer_and_scheduler(num_training_steps=20_000)
    scheduler = trainer.lr_scheduler
    steps = [0, 1, 10, 750, 1499, 1500, 1501, 5000, 10_000, 19_999]
    seen = {}
    for step in range(max(steps) + 1):
        if step in steps:
            seen[step] = scheduler.get_last_lr()[0]
        scheduler.step()
    for step in steps:
        assert seen[step] == pytest.approx(release_lr(step), rel=1e-9, abs=1e-15), step
    assert seen[1500] == pytest.approx(1.865e-4, rel=1e-3)  # not HF polynomial's 2e-4


def test_release_schedule_function_against_the_formula():
    from magicseg_hf.training.schedule import release_lr_factor

    for step in (0, 3, 700, 1499, 1500, 12_345, 19_999, 20_000):
        factor = release_lr_factor(step, num_warmup_steps=1500, num_training_steps=20_000, power=0.9,
                                   min_lr_ratio=1e-6 / 2e-4, warmup_ratio=1e-6)
        assert factor * 2e-4 == pytest.approx(release_lr(step), rel=1e-9, abs=1e-15), step


# ---- augmentation -------------------------------------------------------------------------------
def test_presets_pick_their_augmentation():
    from magicseg_hf.training.transforms import augmentation_settings

    paper, tiny = augmentation_settings("paper"), augmentation_settings("tiny")
    assert (paper.crop_padding, paper.cat_max_ratio, paper.cat_max_tries, paper.photometric_kind) == (
        "background", 0.75, 10, "mmseg")
    assert (tiny.crop_padding, tiny.cat_max_ratio, tiny.photometric_kind) == ("ignore", 1.0, "color_jitter")
    assert AugmentationSettings() == paper  # the defaults are the release's


def _small_pair(size: int = 32) -> tuple[Image.Image, Image.Image, np.ndarray]:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    label = np.zeros((size, size), np.uint8)
    label[4:20, 4:20] = 1
    return image, image.copy(), label


def test_paper_crop_padding_is_background_and_the_mean_colour():
    """mmseg Pad(pad_val=0, seg_pad_val=255) after Normalize; 255 is the release's background."""
    settings = AugmentationSettings(scale_range=(0.5, 0.5), photometric=False)
    transform = PairTransform(32, MEAN, STD, train=True, settings=settings)
    image, counterfactual, label = _small_pair()
    pixels, cf, out = transform(image, counterfactual, label, seed=0)
    assert pixels.shape == (3, 32, 32) and out.shape == (32, 32)
    # Resized to 16 x 16, placed top-left, padded bottom/right as mmcv.impad does.
    assert torch.all(out[16:] == 0) and torch.all(out[:, 16:] == 0)
    assert torch.all(pixels[:, 16:] == 0) and torch.all(pixels[:, :, 16:] == 0)
    assert torch.equal(pixels, cf)
    assert (out[:16, :16] == 1).any()


def test_ignore_padding_stays_a_named_option():
    settings = AugmentationSettings(scale_range=(0.5, 0.5), photometric=False, crop_padding="ignore")
    pixels, _, out = PairTransform(32, MEAN, STD, settings=settings)(*_small_pair(), seed=0)
    assert torch.all(out[16:] == UNKNOWN) and torch.all(out[:, 16:] == UNKNOWN)
    black = (-torch.tensor(MEAN) / torch.tensor(STD)).view(3, 1)
    assert torch.allclose(pixels[:, 20], black.expand(3, 32), atol=1e-6)


def _share_accepted(cat_max_ratio: float, seeds: int = 300) -> float:
    """Share of crops (32 x 32 of a 32 x 64 label: class 1 left of column 48, class 2 right of it)
    in which no class covers 75 % or more of the labelled pixels."""
    label = np.zeros((32, 64), np.uint8)
    label[:, :48], label[:, 48:] = 1, 2
    accepted = 0
    for seed in range(seeds):
        top, left, height, width = transforms.crop_window(
            torch.from_numpy(label), 32, cat_max_ratio=cat_max_ratio, max_tries=10,
            generator=torch.Generator().manual_seed(seed))
        window = label[top:top + height, left:left + width]
        accepted += bool(max((window == 1).mean(), (window == 2).mean()) < 0.75)
    return accepted / seeds


def test_cat_max_ratio_retries_crops_dominated_by_one_class():
    """mmseg RandomCrop: up to 10 redraws while one class covers >= cat_max_ratio of the non-ignored pixels.
    Here 8 of 33 windows pass: 24 % at random, 1 - (25/33)^10 ~ 94 % (and more) with the retries."""
    assert _share_accepted(1.0) < 0.4
    assert _share_accepted(0.75) > 0.85


def test_cat_max_ratio_counts_neither_background_nor_unknown():
    """The release's background is its ignore_index (255), so only object classes are counted."""
    label = torch.zeros(32, 32, dtype=torch.uint8)
    label[:, :30] = 1  # one class and background: never "> 1 class", so every try is redrawn
    label[:, 30:] = UNKNOWN
    assert not transforms.crop_is_balanced(label, 0.75)
    label[:, 24:30] = 2  # classes 1 and 2: 24 of 30 counted pixels = 0.8
    assert not transforms.crop_is_balanced(label, 0.75)
    label[:, 20:30] = 2  # 20 of 30 = 0.67
    assert transforms.crop_is_balanced(label, 0.75)


# ---- photometric distortion ---------------------------------------------------------------------
def test_photometric_distortion_is_mmseg_brightness_additive_and_truncated():
    image = torch.full((3, 4, 4), 100, dtype=torch.uint8)
    draw = transforms.PhotometricDraw(brightness=20.5, contrast=None, saturation=None, hue=None,
                                      contrast_first=True)
    out = transforms.photometric_distortion(image, draw)
    assert out.dtype == torch.uint8 and torch.all(out == 120)  # int(100 + 20.5): additive, truncated
    bright = torch.full((3, 2, 2), 250, dtype=torch.uint8)
    assert torch.all(transforms.photometric_distortion(bright, draw) == 255)  # clipped
    contrast = transforms.PhotometricDraw(brightness=None, contrast=1.5, saturation=None, hue=None,
                                          contrast_first=False)
    assert torch.all(transforms.photometric_distortion(image, contrast) == 150)


def test_photometric_saturation_and_hue_act_in_hsv():
    grey = torch.full((3, 2, 2), 90, dtype=torch.uint8)
    for draw in (transforms.PhotometricDraw(None, None, 1.5, None, True),
                 transforms.PhotometricDraw(None, None, None, 9, True)):
        assert torch.equal(transforms.photometric_distortion(grey, draw), grey)  # no chroma: unchanged
    red = torch.zeros((3, 1, 1), dtype=torch.uint8)
    red[0] = 200
    red[1] = 100  # hue 30 degrees (15 of OpenCV's 180 steps)
    shifted = transforms.photometric_distortion(red, transforms.PhotometricDraw(None, None, None, 15, True))
    assert shifted[:, 0, 0].tolist() == [200, 200, 0]  # +15 steps = +30 degrees: hue 60, yellow
    halved = transforms.photometric_distortion(red, transforms.PhotometricDraw(None, None, 0.5, None, True))
    assert halved[:, 0, 0].tolist() == [200, 150, 100]  # S 1 -> 0.5, V and hue kept


def test_photometric_draws_follow_mmseg_probabilities_and_ranges():
    draws = [transforms.draw_photometric(AugmentationSettings(), torch.Generator().manual_seed(seed))
             for seed in range(2000)]
    for field, low, high in (("brightness", -32, 32), ("contrast", 0.5, 1.5), ("saturation", 0.5, 1.5),
                             ("hue", -18, 17)):
        values = [getattr(d, field) for d in draws if getattr(d, field) is not None]
        assert 0.45 < len(values) / len(draws) < 0.55, field  # each operation with probability 0.5
        assert low <= min(values) and max(values) <= high, field
        assert min(values) < low + 0.1 * (high - low) and max(values) > high - 0.1 * (high - low), field
    assert all(isinstance(d.hue, int) for d in draws if d.hue is not None)
    assert 0.45 < np.mean([d.contrast_first for d in draws]) < 0.55


def test_paper_pair_gets_one_photometric_draw_for_both_images():
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    label = np.zeros((40, 48), np.uint8)
    transform = PairTransform(32, MEAN, STD, settings=AugmentationSettings())
    changed = 0
    for seed in range(8):
        pixels, cf, _ = transform(image, image.copy(), label, seed=seed)
        assert torch.equal(pixels, cf)
        plain = PairTransform(32, MEAN, STD, settings=AugmentationSettings(photometric=False))
        changed += not torch.equal(plain(image, None, label, seed=seed)[0], pixels)
    assert changed >= 4  # the distortion does act


# ---- the command wires it all -------------------------------------------------------------------
def test_magicseg_train_preset_paper_runs_the_release_recipe(tmp_path, monkeypatch):
    """`magicseg train --preset paper` (the tiny model standing in for CLIP ViT-B/16, offline)."""
    from procedural import write_procedural_dataset

    import magicseg_hf.loading as loading
    from magicseg_hf.cli import main
    from magicseg_hf.training.schedule import release_lr_factor
    from magicseg_hf.training.trainer import MagicSegTrainer
    from magicseg_hf.training.transforms import augmentation_settings

    data = write_procedural_dataset(tmp_path / "data", num_rows=8, seed=0)
    real = loading.build_open_seg
    monkeypatch.setattr(loading, "build_open_seg", lambda preset, seed=0, **kw: real("tiny", seed=seed, **kw))
    seen: dict = {}
    train = MagicSegTrainer.train

    def spy(self, *args, **kwargs):
        result = train(self, *args, **kwargs)
        seen["decay"] = {group["weight_decay"] for group in self.optimizer.param_groups if group["params"]}
        seen["max_grad_norm"] = self.args.max_grad_norm
        seen["factors"] = [self.lr_scheduler.lr_lambdas[0](step) for step in (0, 1)]
        seen["settings"] = self.data_collator.transform.settings
        return result

    monkeypatch.setattr(MagicSegTrainer, "train", spy)
    status = main(["train", "--dataset", str(data), "--preset", "paper", "--output-dir", str(tmp_path / "out"),
                   "--max_steps", "2", "--per_device_train_batch_size", "2", "--eval_strategy", "no",
                   "--save_strategy", "no", "--logging_steps", "1", "--validation-size", "0"])
    assert status == 0
    assert seen["decay"] == {0.01} and seen["max_grad_norm"] == 0.0
    expected = [release_lr_factor(step, num_warmup_steps=1500, num_training_steps=2, power=0.9,
                                  min_lr_ratio=1e-6 / 2e-4, warmup_ratio=1e-6) for step in (0, 1)]
    assert seen["factors"] == pytest.approx(expected, rel=1e-9)
    assert seen["settings"] == augmentation_settings("paper")
