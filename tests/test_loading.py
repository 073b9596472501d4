"""Preset tables, model loading and the tiny twins' offline tokenizers."""

from __future__ import annotations

import pytest

from magicseg_hf import hub_access, loading, presets, tiny
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
    with pytest.raises(ModelLoadError, match="unknown tiny diffusion model 'tiny:sdxl'"):
        loading.load_diffusion_pipeline("tiny:sdxl")
    with pytest.raises(ModelLoadError, match="the tiny preset has 'tiny:stable-diffusion-inpainting'"):
        loading.load_diffusion_pipeline("tiny:stable-diffusion", inpainting=True)
    with pytest.raises(ModelLoadError, match="unknown tiny prompt model"):
        loading.load_causal_lm("tiny:llama")
    with pytest.raises(ModelLoadError, match="unknown tiny SAM model"):
        loading.load_segmenter("transformers", "tiny:segment-anything")


def test_owlv2_tokenizer_is_the_clip_vocabulary_shifted_by_one() -> None:
    clip, owlv2 = tiny.tiny_clip_tokenizer(), tiny.tiny_owlv2_tokenizer()
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
    tokenizer = tiny.tiny_bert_tokenizer()
    ids = tokenizer.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?"])
    assert ids == [0, 100, 101, 102, 103, 1012, 1029]
    encoded = tokenizer("cat . traffic light .")["input_ids"]
    assert encoded[0] == 101 and encoded[-1] == 102 and encoded.count(1012) == 2
    assert tokenizer.unk_token_id not in tokenizer("xylophonez")["input_ids"]


def test_load_open_seg_refuses_another_model_type(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    from magicseg_hf.errors import ModelLoadError
    from magicseg_hf.loading import load_open_seg
    from magicseg_hf.tiny import tiny_clip_config

    CLIPModel(tiny_clip_config()).save_pretrained(tmp_path)
    assert CLIPConfig.from_pretrained(tmp_path).model_type == "clip"
    with pytest.raises(ModelLoadError, match="is a 'clip' model, not a CLIPForOpenSegmentation"):
        load_open_seg(str(tmp_path))
