"""A model folder that cannot be what it says is refused in one line before any weight is read: a config.json
that no longer fits the weights, a folder holding only pickle weights (unless the user opts in)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from magicseg_hf.cli import main
from magicseg_hf.errors import ModelLoadError
from magicseg_hf.loading import ALLOW_PICKLE_VARIABLE, build_open_seg, load_open_seg


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    model, processor = build_open_seg("tiny", vocabulary=["cat", "dog"])
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_a_config_that_does_not_fit_the_weights_is_one_line(saved: Path, tmp_path: Path, capsys):
    config = json.loads((saved / "config.json").read_text())
    config["decoder_hidden_size"], config["decoder_num_heads"] = 64, 4
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"weights do not fit its config.json .*was config.json edited\?"):
        load_open_seg(str(saved))
    image = tmp_path / "p.png"
    from PIL import Image

    Image.new("RGB", (20, 20)).save(image)
    capsys.readouterr()
    assert main(["predict", "--model", str(saved), "--image", str(image)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "weights do not fit its config.json" in err and "LOAD REPORT" not in err


def test_pickle_only_weights_are_refused_unless_allowed(saved: Path, monkeypatch):
    state = load_file(saved / "model.safetensors")
    (saved / "model.safetensors").unlink()
    torch.save(state, saved / "pytorch_model.bin")
    monkeypatch.delenv(ALLOW_PICKLE_VARIABLE, raising=False)
    with pytest.raises(ModelLoadError, match=r"holds only pickle weights \(pytorch_model.bin\): refused"):
        load_open_seg(str(saved))
    model, _ = load_open_seg(str(saved), allow_pickle=True)  # opted in: tensors only (weights_only)
    assert model.config.vocabulary == ["cat", "dog"]
    monkeypatch.setenv(ALLOW_PICKLE_VARIABLE, "1")
    assert load_open_seg(str(saved))[0].config.vocabulary == ["cat", "dog"]
