"""CLIPForOpenSegmentation: shapes, losses, save/load (local and remote code), caching, LoRA.

Offline and tiny: 2 layers, 64 px images, patch 8 (an 8 x 8 grid), the paper's 15 templates.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.ops import sigmoid_focal_loss as tv_sigmoid_focal_loss

import magicseg_hf  # noqa: F401  (registers the Auto classes)
from magicseg_hf.loading import build_open_seg
from magicseg_hf.modeling import (
    DEFAULT_TEMPLATES,
    CLIPForOpenSegmentation,
    CLIPOpenSegConfig,
    CLIPOpenSegOutput,
    format_class_prompts,
)
from magicseg_hf.twins import tiny_clip_config

NAMES = ["cat", "dog", "bow (weapon)"]
NO_DROPOUT = {"prompt_dropout": 0.0, "decoder_dropout": 0.0, "drop_path_rate": 0.0}


@pytest.fixture
def tiny() -> tuple[CLIPForOpenSegmentation, object]:
    # The paper's 15-template ensemble (the tiny preset itself uses one template).
    model, processor = build_open_seg("tiny", templates=DEFAULT_TEMPLATES, **NO_DROPOUT)
    return model, processor


def _images(count: int = 2, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)) for _ in range(count)]


def _trainable(model: torch.nn.Module) -> set[str]:
    return {name for name, parameter in model.named_parameters() if parameter.requires_grad}


def _expected_trainable(model: torch.nn.Module) -> set[str]:
    names = {name for name, _ in model.named_parameters()}
    trainable_prefixes = ("visual_prompts", "prompt_proj.", "prompt_norm.", "decoder.")
    return {n for n in names if n.startswith(trainable_prefixes) or "lora_" in n}


# ---- shapes -----------------------------------------------------------------------------------------------
def test_shared_classes_shapes(tiny):
    model, processor = tiny
    enc = processor(images=_images(2), text=NAMES, return_tensors="pt")
    assert enc["pixel_values"].shape == (2, 3, 64, 64)
    assert enc["input_ids"].shape[:2] == (3, len(model.config.templates)) == (3, 15)
    out = model(**enc)
    assert isinstance(out, CLIPOpenSegOutput)
    assert out.logits.shape == (2, 3, 64, 64)
    dim = model.config.projection_dim
    assert out.image_embeds.shape == (2, dim)
    assert out.patch_embeds.shape == (2, 64, dim)  # 8 x 8 grid, prompt tokens removed
    assert out.class_embeds.shape == (2, 3, dim)
    assert out.loss is None and out.focal_loss is None and out.counterfactual_loss is None
    assert torch.allclose(out.image_embeds.norm(dim=-1), torch.ones(2))
    assert torch.allclose(out.patch_embeds.norm(dim=-1), torch.ones(2, 64))


def test_per_image_classes_shapes(tiny):
    model, processor = tiny
    per_image = [["cat", "dog", "tree", "car"], ["sky", "road", "cat", "person"]]
    enc = processor(images=_images(2), text=per_image, return_tensors="pt")
    assert enc["input_ids"].shape[:3] == (2, 4, 15)
    out = model(**enc)
    assert out.logits.shape == (2, 4, 64, 64)
    # Same embeddings through the cached, per-name path.
    embeds = torch.stack([model.encode_classes(names) for names in per_image])
    assert torch.allclose(out.class_embeds, embeds, atol=1e-5)
    by_embeds = model(pixel_values=enc["pixel_values"], class_embeds=embeds)
    assert by_embeds.logits.shape == (2, 4, 64, 64)
    assert torch.allclose(by_embeds.logits, out.logits, atol=1e-5)


def test_shared_and_per_image_embeds_agree(tiny):
    model, processor = tiny
    pixel_values = processor(images=_images(2), return_tensors="pt")["pixel_values"]
    shared = model.encode_classes(NAMES)  # (C, D)
    a = model(pixel_values=pixel_values, class_embeds=shared).logits
    b = model(pixel_values=pixel_values, class_embeds=shared.unsqueeze(0).expand(2, -1, -1)).logits
    assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="class_embeds must have shape"):
        model(pixel_values=pixel_values, class_embeds=shared.unsqueeze(0).expand(3, -1, -1))
    with pytest.raises(ValueError, match="no classes: pass input_ids"):
        model(pixel_values=pixel_values)


def test_processor_text_matches_encode_classes(tiny):
    """One text path: processor(text=...) -> model averages templates == model.encode_classes."""
    model, processor = tiny
    enc = processor(text=NAMES, return_tensors="pt")
    from_processor = model.get_text_embeddings(enc["input_ids"], enc["attention_mask"])
    assert torch.allclose(from_processor, model.encode_classes(NAMES), atol=1e-6)
    # A single template is a different (and not averaged) embedding.
    single = model.encode_classes(NAMES, templates=["a photo of a {}."])
    assert not torch.allclose(single, from_processor, atol=1e-3)
    assert format_class_prompts(["cat"], ["a {}.", "the {}"]) == ["a cat.", "the cat"]


# ---- losses -----------------------------------------------------------------------------------------------
def _labels(model: CLIPForOpenSegmentation) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (2, 64, 64), generator=generator)  # classes 0, 1 of 3 (class 2 absent)
    labels[0, :16] = model.config.none_label  # "none of these": negative for every class
    labels[1, :, :8] = model.config.ignore_label  # excluded from every loss
    labels[1, 40:] = 0  # image 1 still has class 1 somewhere
    return labels


def test_focal_loss_matches_torchvision(tiny):
    model, processor = tiny
    enc = processor(images=_images(2), text=NAMES, return_tensors="pt")
    labels = _labels(model)
    out = model(**enc, labels=labels)

    logits = out.logits.detach()
    targets = torch.stack([(labels == c).float() for c in range(3)], dim=1)  # (B, C, H, W)
    valid = (labels != model.config.ignore_label).float()  # (B, H, W)
    per_pixel = tv_sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0, reduction="none")
    num_masks = 0
    expected = 0.0
    for b in range(2):
        present = {int(v) for v in labels[b].unique() if 0 <= v < 3}
        num_masks += len(present)
        for c in range(3):  # every class, present or not: absent classes are pure negatives
            expected += (per_pixel[b, c] * valid[b]).sum() / valid[b].sum()
    assert num_masks == 4
    assert torch.allclose(out.focal_loss, torch.as_tensor(expected) / num_masks, rtol=1e-5)


def test_dice_loss_matches_hand_written(tiny):
    model, processor = tiny
    enc = processor(images=_images(2), text=NAMES, return_tensors="pt")
    labels = _labels(model)
    out = model(**enc, labels=labels)
    probs = out.logits.detach().sigmoid()
    total, num_masks = 0.0, 0
    for b in range(2):
        keep = labels[b] != model.config.ignore_label
        for c in range(3):
            target = (labels[b] == c) & keep
            if not target.any():
                continue  # dice only over ground-truth (image, class) pairs
            num_masks += 1
            p = probs[b, c][keep]
            t = target[keep].float()
            total += 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    assert torch.allclose(out.dice_loss, torch.as_tensor(total) / num_masks, rtol=1e-5)
    assert torch.allclose(out.loss, 100 * out.focal_loss + out.dice_loss, rtol=1e-6)


def test_ignored_pixels_get_no_gradient(tiny):
    model, processor = tiny
    enc = processor(images=_images(2), text=NAMES, return_tensors="pt")
    labels = _labels(model)
    logits = model(**enc).logits.detach().requires_grad_(True)
    focal, dice = model.segmentation_losses(logits, labels)
    (focal + dice).backward()
    ignored = labels == model.config.ignore_label
    assert logits.grad[1][:, ignored[1]].abs().max() == 0
    assert logits.grad[1][:, ~ignored[1]].abs().max() > 0
    # none_label pixels are negatives: they do get a gradient.
    assert logits.grad[0][:, labels[0] == model.config.none_label].abs().max() > 0


def test_no_ground_truth_class_normalises_by_one(tiny):
    model, processor = tiny
    enc = processor(images=_images(1), text=NAMES, return_tensors="pt")
    labels = torch.full((1, 64, 64), model.config.none_label)
    out = model(**enc, labels=labels)
    per_pixel = tv_sigmoid_focal_loss(out.logits.detach(), torch.zeros_like(out.logits), reduction="none")
    assert torch.allclose(
        out.focal_loss, per_pixel.mean(dim=(2, 3)).sum(), rtol=1e-5
    )  # num_masks clamped to 1
    assert out.dice_loss.item() == 0.0


def test_invalid_label_values_raise(tiny):
    model, processor = tiny
    enc = processor(images=_images(1), text=NAMES, return_tensors="pt")
    labels = torch.zeros((1, 64, 64), dtype=torch.long)
    labels[0, 0, 0] = 7  # only 3 classes
    with pytest.raises(ValueError, match=r"\[7\]"):
        model(**enc, labels=labels)


def test_counterfactual_loss_and_gradient(tiny):
    model, processor = tiny
    model.train()
    images = _images(2)
    enc = processor(images=images, text=NAMES, return_tensors="pt")
    same = model(**enc, counterfactual_pixel_values=enc["pixel_values"].clone())
    assert torch.allclose(same.counterfactual_loss, torch.tensor(1.0), atol=1e-5)
    assert torch.allclose(same.loss, same.counterfactual_loss)

    other = processor(images=_images(2, seed=1), return_tensors="pt")["pixel_values"]
    out = model(**enc, counterfactual_pixel_values=other)
    cosine = F.cosine_similarity(out.image_embeds, out.counterfactual_image_embeds, dim=-1)
    assert torch.allclose(out.counterfactual_loss, cosine.clamp(min=0).mean(), atol=1e-6)
    model.zero_grad()
    out.counterfactual_loss.backward()
    assert model.visual_prompts.grad is not None and model.visual_prompts.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("clip."))
    assert model.decoder.query_proj.weight.grad is None  # the contrast only reaches the prompts


def test_clip_is_frozen_only_prompts_and_decoder_train(tiny):
    model, _ = tiny
    assert _trainable(model) == _expected_trainable(model)
    assert not any(name.startswith("clip.") for name in _trainable(model))


# ---- text cache -------------------------------------------------------------------------------------------
def test_encode_classes_caches_text_encoder_calls(tiny):
    model, _ = tiny
    # Every run of the text encoder, with the token ids it was given.
    seen: list[torch.Tensor] = []
    handle = model.clip.text_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("input_ids", args[0] if args else None)),
        with_kwargs=True,
    )
    try:
        first = model.encode_classes(["cat", "dog"])
        assert len(seen) == 1 and seen[0].shape[0] == 2 * 15  # 2 names x 15 templates, one batch
        again = model.encode_classes(["dog", "cat", "dog"])
        assert len(seen) == 1  # nothing new to encode
        assert torch.equal(again[0], first[1]) and torch.equal(again[1], first[0]) and torch.equal(again[2], first[1])
        mixed = model.encode_classes(["cat", "tree"])
        assert len(seen) == 2 and seen[1].shape[0] == 15  # only "tree"
        single = model.encode_classes(["cat"], templates=["a photo of a {}."])  # other templates: a new entry
        assert len(seen) == 3 and seen[2].shape[0] == 1
        assert not torch.allclose(single[0], first[0], atol=1e-3), "an entry is kept per template set"
        # The cache returns what the encoder gives: after clearing it, the same names encode to the same values.
        model.clear_class_cache()
        fresh = model.encode_classes(["tree", "cat"])
        assert len(seen) == 4 and seen[3].shape[0] == 2 * 15
        torch.testing.assert_close(fresh[0], mixed[1], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(fresh[1], first[0], atol=1e-6, rtol=1e-5)
    finally:
        handle.remove()
    with pytest.raises(ValueError, match="at least one"):
        model.encode_classes([])


# ---- save / load ------------------------------------------------------------------------------------------
def test_save_load_round_trip_through_auto_classes(tiny, tmp_path):
    from transformers import AutoConfig, AutoModel, AutoModelForSemanticSegmentation, AutoProcessor

    model, processor = tiny
    model.set_vocabulary(["cat", "dog"])
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    enc = processor(images=_images(2), text=NAMES, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        expected = model(**enc).logits
        expected_vocab = model(pixel_values=enc["pixel_values"]).logits

    assert isinstance(AutoConfig.from_pretrained(tmp_path), CLIPOpenSegConfig)
    for auto_class in (AutoModel, AutoModelForSemanticSegmentation):
        loaded = auto_class.from_pretrained(tmp_path).eval()
        assert type(loaded) is CLIPForOpenSegmentation
        assert _trainable(loaded) == _expected_trainable(loaded)  # CLIP re-frozen after loading
        loaded_processor = AutoProcessor.from_pretrained(tmp_path)
        loaded_enc = loaded_processor(images=_images(2), text=NAMES, return_tensors="pt")
        assert torch.equal(loaded_enc["input_ids"], enc["input_ids"])
        assert torch.equal(loaded_enc["pixel_values"], enc["pixel_values"])
        with torch.no_grad():
            assert torch.equal(loaded(**loaded_enc).logits, expected)
            assert torch.equal(loaded(pixel_values=enc["pixel_values"]).logits, expected_vocab)
        assert loaded.config.id2label == {0: "cat", 1: "dog"}
        # The tokenizer comes from the folder: encode_classes works on a loaded model.
        assert torch.allclose(loaded.encode_classes(["cat"]), model.encode_classes(["cat"]), atol=1e-6)


def test_remote_code_round_trip_without_magicseg_hf(tiny, tmp_path):
    """The saved folder loads with trust_remote_code=True in a Python where magicseg_hf cannot be imported."""
    import json
    import subprocess
    import sys
    import sysconfig

    model, processor = tiny
    model.set_vocabulary(["cat", "dog"])
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert set(config["auto_map"]) >= {"AutoConfig", "AutoModel", "AutoModelForSemanticSegmentation"}
    assert (folder / "modeling_clip_open_seg.py").exists() and (
        folder / "processing_clip_open_seg.py"
    ).exists()
    enc = processor(images=_images(2), text=NAMES, return_tensors="pt")
    torch.save(dict(enc), tmp_path / "inputs.pt")
    model.eval()
    with torch.no_grad():
        expected = model(**enc).logits

    script = tmp_path / "remote.py"
    script.write_text(
        "import importlib.util, sys\n"
        "sys.path.append(sys.argv[1])\n"
        "assert importlib.util.find_spec('magicseg_hf') is None, 'magicseg_hf is importable'\n"
        "try:\n"
        "    import magicseg_hf  # noqa\n"
        "    raise SystemExit('magicseg_hf imported')\n"
        "except ModuleNotFoundError:\n"
        "    pass\n"
        "import torch\n"
        "from transformers import AutoModel, AutoModelForSemanticSegmentation, AutoProcessor\n"
        "folder = sys.argv[2]\n"
        "processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)\n"
        "enc = processor(images=torch.load(sys.argv[3])['pixel_values'], text=['cat', 'dog', 'bow (weapon)'])\n"
        "results = {'processor': type(processor).__module__}\n"
        "for auto_class in (AutoModel, AutoModelForSemanticSegmentation):\n"
        "    model = auto_class.from_pretrained(folder, trust_remote_code=True).eval()\n"
        "    assert 'magicseg_hf' not in type(model).__module__, type(model).__module__\n"
        "    results['module'] = type(model).__module__\n"
        "    results['trainable_clip'] = [n for n, p in model.named_parameters() if p.requires_grad and n.startswith('clip.')]\n"
        "    inputs = torch.load(sys.argv[3])\n"
        "    with torch.no_grad():\n"
        "        results[auto_class.__name__] = model(**inputs).logits\n"
        "        results['vocab'] = model(pixel_values=inputs['pixel_values']).logits\n"
        "results['input_ids'] = enc['input_ids']\n"
        "assert 'magicseg_hf' not in sys.modules\n"
        "torch.save(results, sys.argv[4])\n"
    )
    site_packages = sysconfig.get_paths()["purelib"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")  # HF_HUB_OFFLINE=1 comes with os.environ (conftest)
    # -I: no user site, no PYTHON* variables, no script dir; -S: no site-packages .pth files, so the editable
    # install's finder (which maps magicseg_hf to the repository) is never installed.
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(script),
            site_packages,
            str(folder),
            str(tmp_path / "inputs.pt"),
            str(tmp_path / "out.pt"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = torch.load(tmp_path / "out.pt")
    assert remote["module"].startswith("transformers_modules")
    assert remote["trainable_clip"] == []
    assert torch.equal(remote["AutoModel"], expected)
    assert torch.equal(remote["AutoModelForSemanticSegmentation"], expected)
    assert torch.equal(remote["input_ids"], enc["input_ids"])
    with torch.no_grad():
        assert torch.equal(remote["vocab"], model(pixel_values=enc["pixel_values"]).logits)


# ---- LoRA and activation checkpointing --------------------------------------------------------------------
def test_lora_round_trip(tmp_path):
    from transformers import AutoModel

    model, processor = build_open_seg("tiny", use_lora=True, **NO_DROPOUT)
    lora = {n for n in _trainable(model) if "lora_" in n}
    assert lora and all(".vision_model." in n for n in lora)
    assert _trainable(model) == _expected_trainable(model)
    with torch.no_grad():  # LoRA B starts at zero; make the adapter matter
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    pixel_values = processor(images=_images(1), return_tensors="pt")["pixel_values"]
    embeds = model.encode_classes(NAMES)
    model.eval()
    with torch.no_grad():
        expected = model(pixel_values=pixel_values, class_embeds=embeds).logits

    model.save_pretrained(tmp_path / "full")
    processor.save_pretrained(tmp_path / "full")
    loaded = AutoModel.from_pretrained(tmp_path / "full").eval()
    assert loaded.config.use_lora and _trainable(loaded) == _expected_trainable(loaded)
    with torch.no_grad():
        assert torch.equal(loaded(pixel_values=pixel_values, class_embeds=embeds).logits, expected)

    model.save_lora_adapter(tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(os.listdir(tmp_path / "adapter"))
    base, _ = build_open_seg("tiny", **NO_DROPOUT)
    base.load_state_dict({k: v for k, v in model.state_dict().items() if "lora_" not in k}, strict=False)
    base.decoder.load_state_dict(model.decoder.state_dict())
    base.eval()
    with torch.no_grad():
        without = base(pixel_values=pixel_values, class_embeds=embeds).logits
    base.load_lora_adapter(tmp_path / "adapter")
    with torch.no_grad():
        with_adapter = base(pixel_values=pixel_values, class_embeds=embeds).logits
    assert not torch.allclose(without, expected, atol=1e-4)
    assert torch.allclose(with_adapter, expected, atol=1e-5)


def test_activation_checkpointing_inside_prompt_loop(tiny):
    model, processor = tiny
    model.train()
    enc = processor(images=_images(2), text=NAMES, return_tensors="pt")
    labels = _labels(model)
    calls = []
    hooks = [
        layer.layer_norm1.register_forward_pre_hook(lambda *args: calls.append(1))  # each layer's first op
        for layer in model.clip.vision_model.encoder.layers
    ]

    def grads() -> dict[str, torch.Tensor]:
        model.zero_grad()
        calls.clear()
        model(**enc, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    assert len(calls) == 2  # 2 layers, once each
    model.activation_checkpointing_enable()
    assert model.gradient_checkpointing
    checkpointed = grads()
    assert len(calls) == 4  # recomputed in the backward pass (pre-hooks: the recompute stops early)
    for layer in model.clip.vision_model.encoder.layers:
        assert not layer.gradient_checkpointing  # only our loop checkpoints
    assert plain.keys() == checkpointed.keys() and "visual_prompts" in plain
    for name in plain:
        assert torch.allclose(plain[name], checkpointed[name], atol=1e-6), name
    model.activation_checkpointing_disable()
    for hook in hooks:
        hook.remove()


# ---- config -----------------------------------------------------------------------------------------------
def test_config_validation_and_defaults():
    config = CLIPOpenSegConfig(clip_config=tiny_clip_config().to_dict(), image_size=64)
    assert len(config.templates) == 15 and config.num_prompt_tokens == 10 and config.decoder_num_layers == 3
    assert (config.focal_loss_weight, config.dice_loss_weight, config.counterfactual_loss_weight) == (
        100,
        1,
        1,
    )
    assert (config.none_label, config.ignore_label) == (255, -100)
    assert config.num_prompted_layers == 2
    with pytest.raises(ValueError, match="divisible"):
        CLIPOpenSegConfig(
            clip_config=tiny_clip_config().to_dict(), decoder_hidden_size=30, decoder_num_heads=4
        )
    with pytest.raises(ValueError, match="placeholder"):
        CLIPOpenSegConfig(clip_config=tiny_clip_config().to_dict(), templates=["no placeholder"])
