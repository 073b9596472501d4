"""Preset tables, model loading and the tiny twins' offline tokenizers."""

from __future__ import annotations

import pytest
import torch

from magicseg_hf import hub_access, loading, presets, twins
from magicseg_hf.errors import ModelLoadError


def test_preset_tables_name_tiny_twins_only_in_the_tiny_preset() -> None:
    assert set(presets.PAPER_MODELS) == set(presets.TINY_MODELS) == set(presets.QUALITY_MODELS)
    assert all(presets.is_tiny(model_id) for model_id, _ in presets.TINY_MODELS.values())
    for table in (presets.PAPER_MODELS, presets.QUALITY_MODELS):
        assert not any(presets.is_tiny(model_id) for model_id, _ in table.values())
    assert presets.TINY_DETECTORS == {
        "grounding-dino": "tiny:grounding-dino", "mm-grounding-dino": "tiny:mm-grounding-dino", "owlv2": "tiny:owlv2"
    }
    assert presets.TINY_SEGMENTERS == {
        "transformers": "tiny:sam", "sam2": "tiny:sam2", "segment-anything": "tiny:segment-anything"
    }
    # every detector and segmenter kind has a checkpoint in every preset
    for preset in presets.PRESETS:
        for kind in presets.DETECTOR_ROLES:
            assert presets.detector_model_for(preset, kind)[0]
        for kind in presets.SEGMENTER_ROLES:
            assert presets.segmenter_model_for(preset, kind)[0]
    defaults = presets.generation_defaults("tiny")
    assert defaults["detector"] == "grounding-dino" and defaults["diffusion_model"] == "tiny:stable-diffusion"
    assert presets.generation_defaults("paper")["diffusion_model"] == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    quality = presets.generation_defaults("quality")
    assert (quality["detector"], quality["segmenter"]) == ("mm-grounding-dino", "sam2")
    presets.models_for("tiny")["diffusion_model"] = ("changed", None)  # a copy: the table is unchanged
    assert presets.TINY_MODELS["diffusion_model"] == ("tiny:stable-diffusion", None)
    with pytest.raises(ModelLoadError, match="unknown preset 'huge'; known presets: paper, quality, tiny"):
        presets.models_for("huge")
    with pytest.raises(ModelLoadError, match="unknown preset 'huge'; known presets: paper, tiny"):
        loading.build_open_seg("huge")


def test_build_open_seg_keeps_its_presets_import_path() -> None:
    from magicseg_hf.presets import build_open_seg

    assert build_open_seg is loading.build_open_seg
    with pytest.raises(AttributeError, match="load_detector"):
        presets.load_detector  # noqa: B018  (loaders live in magicseg_hf.loading only)


def test_offline_mode_and_reachability_are_read_when_checking(monkeypatch) -> None:
    model_id = "someone/not-cached-model"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE=1"):
        loading.check_model_available(model_id)
    # Turned off after import: the Hub is asked for, and an unreachable one is named as such.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hub_access, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelLoadError, match="unreachable"):
        loading.check_model_available(model_id, what="prompt model")
    monkeypatch.setattr(hub_access, "hub_reachable", lambda timeout=3.0: True)
    loading.check_model_available(model_id)  # reachable: left to from_pretrained
    loading.check_model_available("tiny:anything")


def test_tiny_ids_are_checked_against_the_preset() -> None:
    with pytest.raises(ModelLoadError, match="unknown tiny diffusion model 'tiny:sdxl-turbo'"):
        loading.load_diffusion_pipeline("tiny:sdxl-turbo")
    with pytest.raises(ModelLoadError, match="'tiny:stable-diffusion' is a text-to-image twin"):
        loading.load_diffusion_pipeline("tiny:stable-diffusion", inpainting=True)
    with pytest.raises(ModelLoadError, match="unknown tiny prompt model"):
        loading.load_causal_lm("tiny:llama")
    with pytest.raises(ModelLoadError, match="unknown tiny SAM model"):
        loading.load_segmenter("transformers", "tiny:segment-anything")


def test_owlv2_tokenizer_is_the_clip_vocabulary_shifted_by_one() -> None:
    clip, owlv2 = twins.tiny_clip_tokenizer(), twins.tiny_owlv2_tokenizer()
    text = "a traffic light"
    clip_ids, owlv2_ids = clip(text)["input_ids"], owlv2(text)["input_ids"]
    assert owlv2_ids == [i + 1 for i in clip_ids]
    assert owlv2_ids[0] > 0  # OWLv2 masks a query whose first id is 0
    assert len(owlv2) == len(clip) + 1 and owlv2.convert_ids_to_tokens(0) == "<|padding|>"
    assert clip.pad_token == owlv2.pad_token == "<|endoftext|>"
    assert (clip.model_max_length, owlv2.model_max_length) == (77, 16)
    # A word outside the shipped vocabularies is spelled out from the byte alphabet, never dropped.
    assert clip.decode(clip("qzxv")["input_ids"], skip_special_tokens=True) == "qzxv"


def test_bert_tokenizer_keeps_the_ids_grounding_dino_hard_codes() -> None:
    tokenizer = twins.tiny_bert_tokenizer()
    ids = tokenizer.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?"])
    assert ids == [0, 100, 101, 102, 103, 1012, 1029]
    encoded = tokenizer("cat . traffic light .")["input_ids"]
    assert encoded[0] == 101 and encoded[-1] == 102 and encoded.count(1012) == 2
    assert tokenizer.unk_token_id not in tokenizer("xylophonez")["input_ids"]


def test_load_open_seg_refuses_another_model_type(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    from magicseg_hf.errors import ModelLoadError
    from magicseg_hf.loading import load_open_seg
    from magicseg_hf.twins import tiny_clip_config

    CLIPModel(tiny_clip_config()).save_pretrained(tmp_path)
    assert CLIPConfig.from_pretrained(tmp_path).model_type == "clip"
    with pytest.raises(ModelLoadError, match="is a 'clip' model, not a CLIPForOpenSegmentation"):
        load_open_seg(str(tmp_path))


# ---- detectors and segmenters: tiny ids, folders, model types ------------------------------------
# Tiny twins saved as folders once per module: "real" checkpoints for from_pretrained, offline.
_SAVED_TWINS = {
    "owlv2": twins.tiny_owlv2,
    "grounding-dino": twins.tiny_grounding_dino,
    "mm-grounding-dino": twins.tiny_mm_grounding_dino,
    "sam": twins.tiny_transformers_sam,
    "sam2": twins.tiny_sam2,
}


@pytest.fixture(scope="module")
def saved_twins(tmp_path_factory) -> dict[str, str]:
    """model_type -> a folder holding that tiny twin and its processor (save_pretrained)."""
    root = tmp_path_factory.mktemp("twins")
    folders = {}
    for name, build in _SAVED_TWINS.items():
        model, processor = build()
        folder = root / name
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        folders[name] = str(folder)
    return folders


def _one_line_error(call, match: str) -> str:
    with pytest.raises(ModelLoadError, match=match) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_new_kinds_check_their_tiny_ids() -> None:
    _one_line_error(
        lambda: loading.load_detector("mm-grounding-dino", "tiny:grounding-dino"),
        "unknown tiny mm-grounding-dino detector 'tiny:grounding-dino'; the tiny preset has 'tiny:mm-grounding-dino'",
    )
    _one_line_error(lambda: loading.load_segmenter("sam2", "tiny:sam"), "unknown tiny SAM 2 model 'tiny:sam'")
    _one_line_error(lambda: loading.load_segmenter("transformers", "tiny:sam2"), "unknown tiny SAM model")
    _one_line_error(lambda: loading.load_segmenter("sam2", None), "the sam2 segmenter backend needs")
    _one_line_error(
        lambda: loading.load_segmenter("sam3", "tiny:sam"), "known: transformers, sam2, segment-anything"
    )


@pytest.mark.parametrize(
    "role,kind,folder,hint",
    [
        # transformers would fail deep inside the constructor ...
        ("detector", "mm-grounding-dino", "owlv2", "--detector owlv2"),
        ("detector", "owlv2", "mm-grounding-dino", "--detector mm-grounding-dino"),
        # ... or, for these, load with part of the weights drawn at random and only a warning.
        ("detector", "mm-grounding-dino", "grounding-dino", "--detector grounding-dino"),
        ("detector", "grounding-dino", "mm-grounding-dino", "--detector mm-grounding-dino"),
        ("segmenter", "transformers", "grounding-dino", None),
        ("segmenter", "sam2", "sam", "--segmenter transformers"),
        ("segmenter", "transformers", "sam2", "--segmenter sam2"),
    ],
)
def test_a_folder_of_another_model_type_is_one_line(role, kind, folder, hint, saved_twins) -> None:
    load = loading.load_detector if role == "detector" else loading.load_segmenter
    message = _one_line_error(lambda: load(kind, saved_twins[folder]), f"holds a '{folder}' model, expected model_type")
    if hint:
        assert message.endswith(f"for this model use {hint}")


def test_saved_twins_load_back_identical(saved_twins) -> None:
    """A saved MM-Grounding-DINO / SAM 2 folder loads like a Hub checkpoint (from_pretrained +
    the processor) with the same weights as the twin it was saved from."""
    from transformers import GroundingDinoProcessor, Sam2Processor

    for load, name in (
        (lambda f: loading.load_detector("mm-grounding-dino", f), "mm-grounding-dino"),
        (lambda f: loading.load_segmenter("sam2", f), "sam2"),
    ):
        model, processor = load(saved_twins[name])
        twin, _ = _SAVED_TWINS[name]()
        assert type(model) is type(twin) and not model.training
        expected = twin.state_dict()
        assert model.state_dict().keys() == expected.keys()
        assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items()), name
        assert isinstance(processor, GroundingDinoProcessor if name == "mm-grounding-dino" else Sam2Processor)


def test_sam2_accepts_the_hubs_sam2_video_checkpoints(tmp_path) -> None:
    """SAM 2.1 on the Hub is saved as ``sam2_video`` (the video model, a superset): the sam2
    segmenter loads its image parts into a Sam2Model, every weight from the file."""
    from transformers import Sam2VideoConfig, Sam2VideoModel

    twin, processor = twins.tiny_sam2()
    config = twin.config
    video_config = Sam2VideoConfig(
        vision_config=config.vision_config,
        prompt_encoder_config=config.prompt_encoder_config.to_dict(),
        mask_decoder_config=config.mask_decoder_config.to_dict(),
        image_size=256,
        memory_attention_hidden_size=32,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[16, 16],
        memory_encoder_hidden_size=32,
        memory_encoder_output_channels=16,
        mask_downsampler_embed_dim=32,
        memory_fuser_embed_dim=32,
        memory_fuser_intermediate_dim=64,
    )
    with twins.seeded(1):
        video = Sam2VideoModel(video_config)
    video.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    model, _ = loading.load_segmenter("sam2", str(tmp_path))
    saved = video.state_dict()
    assert type(model).__name__ == "Sam2Model" and model.config.model_type == "sam2_video"
    assert all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())
