"""Training plumbing on the tiny preset (random weights: these prove plumbing, not quality).

Category random sampling, shared augmentation, label remapping, the Trainer's logs, checkpoints,
resume, two processes, and bad input. Whether training *learns* is tests/test_training_learns.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import train_in_two_processes, write_dataset_folder
from PIL import Image
from safetensors.torch import load_file

from magicseg_hf.cli import main
from magicseg_hf.labels import IGNORE_LABEL, NONE_LABEL
from magicseg_hf.loading import build_open_seg
from magicseg_hf.training.collator import MagicSegCollator
from magicseg_hf.training.transforms import AugmentationSettings

VOCABULARY = ["cat", "dog", "bird", "car", "tree", "boat", "lamp"]


@pytest.fixture(scope="module")
def tiny():
    model, processor = build_open_seg("tiny")
    return model, processor, model.encode_classes(VOCABULARY).detach()


def _row(row_id: str, classes: list[str], size: int = 96, seed: int = 0) -> dict:
    """A picture with one coloured square per class (label i on it) and its counterfactual."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    image, label = background.copy(), np.zeros((size, size), np.uint8)
    for i, _ in enumerate(classes, start=1):
        x, y = 10 + 30 * (i - 1), 20
        image[y:y + 24, x:x + 24] = (255, 0, 0) if i == 1 else (0, 0, 255)
        label[y:y + 24, x:x + 24] = i
    return {"id": row_id, "classes": classes, "image": Image.fromarray(image),
            "counterfactual_image": Image.fromarray(background), "label": Image.fromarray(label)}


def test_each_row_gets_its_classes_then_distinct_negatives(tiny):
    model, processor, embeds = tiny
    collator = MagicSegCollator(processor, VOCABULARY, embeds, num_classes=4, seed=1)
    batch = collator([_row("r1", ["dog"]), _row("r2", ["car", "cat"])])
    ids = batch["class_ids"].tolist()
    assert ids[0][0] == VOCABULARY.index("dog") and ids[1][:2] == [VOCABULARY.index("car"), 0]
    for row in ids:
        assert len(row) == 4 and len(set(row)) == 4  # K classes, no repeats
    # The class embeddings are the vocabulary's, gathered per row: no text encoder involved.
    assert torch.equal(batch["class_embeds"][1, 0], embeds[VOCABULARY.index("car")])


def test_negatives_depend_on_seed_row_and_epoch_only(tiny):
    _, processor, embeds = tiny
    collator = MagicSegCollator(processor, VOCABULARY, embeds, num_classes=5, seed=7)
    alone = collator([_row("r2", ["car"])])["class_ids"][0]
    among = collator([_row("r1", ["dog"]), _row("r2", ["car"]), _row("r3", ["cat"])])["class_ids"][1]
    assert torch.equal(alone, among)  # batch composition (hence the worker) does not matter
    draws = set()
    for epoch in range(6):
        collator.set_epoch(epoch)
        draws.add(tuple(collator([_row("r2", ["car"])])["class_ids"][0].tolist()))
    assert len(draws) > 1  # redrawn every epoch
    collator.set_epoch(3)
    again = collator([_row("r2", ["car"])])["class_ids"][0]
    collator.set_epoch(3)
    assert torch.equal(again, collator([_row("r2", ["car"])])["class_ids"][0])  # a resumed epoch draws the same
    other_seed = MagicSegCollator(processor, VOCABULARY, embeds, num_classes=5, seed=8)
    other_seed.set_epoch(3)
    assert not all(
        torch.equal(collator.__call__([_row(f"x{i}", ["car"])])["class_ids"][0],
                    other_seed([_row(f"x{i}", ["car"])])["class_ids"][0]) for i in range(8)
    )


def test_fixed_negatives_ignore_the_epoch(tiny):
    _, processor, embeds = tiny
    collator = MagicSegCollator(processor, VOCABULARY, embeds, num_classes=5, fixed_negatives=True, augment=False)
    first = collator([_row("r1", ["dog"])])["class_ids"]
    collator.set_epoch(9)
    assert torch.equal(first, collator([_row("r1", ["dog"])])["class_ids"])


def test_pair_shares_every_augmentation_parameter(tiny):
    _, processor, embeds = tiny
    collator = MagicSegCollator(processor, VOCABULARY, embeds, num_classes=3, seed=3)
    row = _row("r1", ["dog"])
    row["counterfactual_image"] = row["image"]  # identical inputs must stay identical after augmentation
    for epoch in range(5):
        collator.set_epoch(epoch)
        batch = collator([row])
        assert torch.equal(batch["pixel_values"], batch["counterfactual_pixel_values"])


def test_labels_follow_the_geometry_and_are_remapped(tiny):
    _, processor, embeds = tiny
    # Colour jitter off here so that "red" stays red: the geometry is what this test follows.
    collator = MagicSegCollator(processor, VOCABULARY, embeds, num_classes=3, seed=5,
                                settings=AugmentationSettings(photometric=False, crop_padding="ignore"))
    mean = torch.tensor(processor.image_processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_processor.image_std).view(3, 1, 1)
    seen_padding = False
    for epoch in range(12):
        collator.set_epoch(epoch)
        batch = collator([_row("r1", ["dog"])])
        labels, pixels = batch["labels"][0], batch["pixel_values"][0] * std + mean  # (S, S), (3, S, S) in [0, 1]
        values = set(labels.unique().tolist())
        assert values <= {0, NONE_LABEL, IGNORE_LABEL}
        red = (pixels[0] > 0.9) & (pixels[1] < 0.1) & (pixels[2] < 0.1)
        square = labels == 0  # position 0 is the row's own class
        if square.sum() > 20:  # the class stays under its pixels whatever the crop, scale and flip
            assert red[square].float().mean() > 0.6
        seen_padding |= IGNORE_LABEL in values
    assert seen_padding  # scale 0.5 x crop: padding appears and is ignored


def test_unknown_and_out_of_range_label_values_are_ignored(tiny, caplog):
    _, processor, embeds = tiny
    collator = MagicSegCollator(processor, VOCABULARY, embeds, num_classes=3, augment=False)
    row = _row("r1", ["dog"])
    label = np.array(row["label"])
    label[:10] = 255  # unknown
    label[-10:] = 7  # names no class of the row
    row["label"] = Image.fromarray(label)
    with caplog.at_level("WARNING"):
        labels = collator([row])["labels"][0]
    assert collator.bad_label_pixels == 10 * 96
    assert labels[:5].eq(IGNORE_LABEL).all() and labels[-5:].eq(IGNORE_LABEL).all()
    assert "outside its 1 classes" in caplog.text


def test_num_classes_must_stay_below_none_label(tiny):
    _, processor, embeds = tiny
    with pytest.raises(ValueError, match="num_classes must lie in 1..254"):
        MagicSegCollator(processor, VOCABULARY, embeds, num_classes=255)


# ---- the command ---------------------------------------------------------------------------------
TRAIN = ["--preset", "tiny", "--num-classes", "4", "--validation-size", "4", "--logging_steps", "2",
         "--save_steps", "3", "--max_steps", "6", "--per_device_train_batch_size", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data") / "ds"
    write_dataset_folder(folder, num_rows=12, vocabulary=VOCABULARY[:4], size=(64, 64))
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory, dataset) -> Path:
    out = tmp_path_factory.mktemp("runs") / "model"
    assert main(["train", "--dataset", str(dataset), "--output-dir", str(out), *TRAIN]) == 0
    return out


def test_train_saves_a_loadable_model_with_its_logs(trained: Path):
    from transformers import AutoModel, pipeline

    state = json.loads((trained / "checkpoint-6" / "trainer_state.json").read_text())
    logged = [entry for entry in state["log_history"] if "loss" in entry]
    assert logged and all({"focal_loss", "dice_loss", "counterfactual_loss"} <= set(entry) for entry in logged)
    assert all(np.isfinite(entry["focal_loss"]) for entry in logged)
    assert (trained / "checkpoint-3" / "model.safetensors").is_file()
    assert not list(trained.rglob("pytorch_model.bin"))
    summary = json.loads((trained / "training_summary.json").read_text())
    assert summary["global_steps"] == 6 and summary["vocabulary_size"] == 4
    assert "eval_mean_iou" in summary["validation"] and 0.0 <= summary["validation"]["eval_mean_iou"] <= 1.0
    from huggingface_hub import ModelCard

    card = ModelCard.load(trained / "README.md")  # the first model card, written by the run
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "image-segmentation"
    assert "plumbing" in card.text  # the tiny preset's card says what a random model proves
    model = AutoModel.from_pretrained(trained)
    assert model.config.vocabulary == VOCABULARY[:4]
    segments = pipeline("open-vocabulary-segmentation", model=str(trained))(
        Image.new("RGB", (64, 64), "red"), decision="argmax"
    )  # plumbing: a 6-step model need not be sure of anything, so every pixel takes its best class
    assert segments and {s["label"] for s in segments} <= set(VOCABULARY[:4])


def test_training_never_runs_the_text_encoder(dataset, tmp_path):
    from magicseg_hf.training import run as train_run

    calls = []
    original = train_run._build_model

    def build(config, seed):
        model, processor = original(config, seed)
        model.encode_classes(["cat", "dog", "bird", "car"])  # the run's one encoding, done up front here
        model.clip.text_model.register_forward_hook(lambda *args: calls.append(1))
        return model, processor

    train_run._build_model = build
    try:
        out = tmp_path / "m"
        assert main(["train", "--dataset", str(dataset), "--output-dir", str(out), *TRAIN]) == 0
    finally:
        train_run._build_model = original
    assert calls == []  # class embeddings come from the cache: 0 text-encoder calls in 6 steps + eval


def test_resume_from_a_checkpoint_ends_where_a_straight_run_ends(trained: Path, dataset: Path, tmp_path: Path):
    # An interrupted run leaves checkpoint-3: resuming from it must give the straight run's weights
    # (same data order, same negatives and augmentations).
    interrupted = tmp_path / "model"
    interrupted.mkdir()
    shutil.copytree(trained / "checkpoint-3", interrupted / "checkpoint-3")
    assert main(["train", "--dataset", str(dataset), "--output-dir", str(interrupted), *TRAIN,
                 "--resume_from_checkpoint", str(interrupted / "checkpoint-3")]) == 0
    _assert_same_run(interrupted, trained)


def _records(folder: Path) -> tuple[dict, list]:
    """What a run records (its summary, its logged losses), without the wall-clock figures."""
    summary = json.loads((folder / "training_summary.json").read_text())
    for key in ("wall_time_seconds", "train_runtime_seconds"):
        summary.pop(key)
    summary["validation"] = {k: v for k, v in summary["validation"].items() if "runtime" not in k
                             and "per_second" not in k and "preparation" not in k}
    state = json.loads((folder / "checkpoint-6" / "trainer_state.json").read_text())
    logged = [{k: v for k, v in entry.items() if k != "learning_rate"} for entry in state["log_history"]
              if "loss" in entry]
    return summary, logged


def _assert_same_run(resumed_folder: Path, straight_folder: Path) -> None:
    """Bit-identical weights and the same records as the uninterrupted run."""
    straight = load_file(straight_folder / "checkpoint-6" / "model.safetensors")
    resumed = load_file(resumed_folder / "checkpoint-6" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=1e-6, msg=name)
    summary, logged = _records(resumed_folder)
    straight_summary, straight_logged = _records(straight_folder)
    # checkpoint-3 lies between the log lines of steps 2 and 4: step 4's loss averages steps 3 and 4
    assert logged == straight_logged
    assert summary["final_losses"] == straight_summary["final_losses"]
    assert summary["mean_loss"] == pytest.approx(straight_summary["mean_loss"], rel=1e-6)
    assert summary["global_steps"] == straight_summary["global_steps"] == 6
    assert summary["validation"] == straight_summary["validation"]
    assert {p.name for p in resumed_folder.glob("checkpoint-*")} <= {"checkpoint-3", "checkpoint-6"}


def test_a_kill_during_the_final_save_resumes_without_an_extra_step(trained: Path, dataset: Path, tmp_path: Path):
    # checkpoint-6 holds the last step; the model folder itself was never written
    interrupted = tmp_path / "model"
    interrupted.mkdir()
    shutil.copytree(trained / "checkpoint-6", interrupted / "checkpoint-6")
    assert main(["train", "--dataset", str(dataset), "--output-dir", str(interrupted), *TRAIN,
                 "--resume_from_checkpoint", str(interrupted)]) == 0
    assert not (interrupted / "checkpoint-7").exists()
    _assert_same_run(interrupted, trained)
    straight = load_file(trained / "model.safetensors")
    for name, value in load_file(interrupted / "model.safetensors").items():
        torch.testing.assert_close(value, straight[name], rtol=0, atol=0, msg=name)


def test_resuming_a_finished_run_with_more_steps_trains_on(trained: Path, dataset: Path, tmp_path: Path):
    # checkpoint-6 is the end of a 6-step run; asked for 8 steps, the resumed run takes steps 7 and 8.
    longer = tmp_path / "model"
    longer.mkdir()
    shutil.copytree(trained / "checkpoint-6", longer / "checkpoint-6")
    assert main(["train", "--dataset", str(dataset), "--output-dir", str(longer), *TRAIN, "--max_steps", "8",
                 "--resume_from_checkpoint", str(longer / "checkpoint-6")]) == 0
    assert json.loads((longer / "training_summary.json").read_text())["global_steps"] == 8
    six, eight = load_file(trained / "model.safetensors"), load_file(longer / "model.safetensors")
    assert any(not torch.equal(eight[name], six[name]) for name in six)  # the two steps changed the weights


def test_two_processes_split_the_rows_and_write_one_model(dataset: Path, tmp_path: Path):
    out = tmp_path / "ddp"
    result = train_in_two_processes([
        "--dataset", str(dataset), "--output-dir", str(out),
        "--preset", "tiny", "--num-classes", "4", "--validation-size", "4", "--num_train_epochs", "1",
        "--max_steps", "-1", "--per_device_train_batch_size", "2", "--logging_steps", "1",
        "--save_strategy", "no"])
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "training_summary.json").read_text())
    # 8 training rows, 2 per process and step: one epoch is 2 steps with two processes (4 with one),
    # so each process saw its own half of the rows.
    assert summary["global_steps"] == 2
    assert summary["num_processes"] == 2
    assert (out / "model.safetensors").is_file() and not list(out.glob("checkpoint-*"))


# ---- bad input -------------------------------------------------------------------------------------
def _assert_one_error_line(err: str, needle: str) -> None:
    """Progress bars may come first; the error itself is one line, with no traceback."""
    errors = [line for line in err.splitlines() if line.startswith("magicseg train: error:")]
    assert len(errors) == 1 and needle in errors[0] and "Traceback" not in err, err[-2000:]


def test_bad_input_is_one_line_and_exit_2(dataset: Path, tmp_path: Path, capsys):
    only_cat = tmp_path / "classes.txt"
    only_cat.write_text("cat\n")
    cases = [
        (["--dataset", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "a")], "--dataset"),
        (["--dataset", str(dataset), "--output-dir", str(tmp_path / "b"), "--num-classes", "300"], "--num-classes"),
        (["--dataset", str(dataset), "--output-dir", str(tmp_path / "c"), "--no_such_flag", "1"], "TrainingArguments"),
        (["--dataset", str(dataset), "--output-dir", str(tmp_path / "d"), "--vocabulary", str(only_cat)], "lacks"),
    ]
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "config.json").write_text("{}")
    cases.append((["--dataset", str(dataset), "--output-dir", str(occupied)], "--overwrite"))
    for argv, needle in cases:
        assert main(["train", *argv, "--preset", "tiny", "--max_steps", "1"]) == 2, argv
        _assert_one_error_line(capsys.readouterr().err, needle)


def test_a_dataset_without_the_columns_is_named(tmp_path: Path, capsys):
    import datasets

    folder = tmp_path / "plain"
    datasets.Dataset.from_dict({"id": ["a"], "image": [Image.new("RGB", (8, 8))]}).to_parquet(folder / "data.parquet")
    assert main(["train", "--dataset", str(folder), "--output-dir", str(tmp_path / "o"), "--preset", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "lacks the columns ['counterfactual_image', 'label', 'classes']" in err


def test_a_non_finite_loss_stops_with_a_clear_error(dataset: Path, tmp_path: Path, capsys):
    out = tmp_path / "nan"
    assert main(["train", "--dataset", str(dataset), "--output-dir", str(out), *TRAIN,
                 "--learning_rate", "1e30", "--max_grad_norm", "0"]) == 2
    err = capsys.readouterr().err
    _assert_one_error_line(err, "the loss became non-finite at step")
    # It broke before the first save (--save_steps 3): no "last checkpoint is intact" when there is none.
    assert "no checkpoint was saved" in err and "intact" not in err, err[-2000:]


def test_several_datasets_lora_and_streaming(dataset: Path, tmp_path: Path):
    other = tmp_path / "other"
    write_dataset_folder(other, num_rows=6, vocabulary=["boat", "lamp"], size=(64, 64))
    out = tmp_path / "lora"
    assert main(["train", "--dataset", str(dataset), str(other), "--output-dir", str(out), *TRAIN,
                 "--lora-rank", "2", "--max_steps", "2", "--save_strategy", "no"]) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert [s["rows"] for s in summary["datasets"]] == [12, 6]  # concatenated
    assert summary["vocabulary_size"] == 6  # the two vocabularies merged in order
    from transformers import AutoModel

    model = AutoModel.from_pretrained(out)
    assert model.config.use_lora and model.config.lora_rank == 2
    assert model.config.vocabulary == VOCABULARY[:4] + ["boat", "lamp"]

    streamed = tmp_path / "stream"
    assert main(["train", "--dataset", str(dataset), "--output-dir", str(streamed), "--preset", "tiny",
                 "--num-classes", "4", "--streaming", "--validation-size", "2", "--max_steps", "3",
                 "--per_device_train_batch_size", "2", "--save_strategy", "no"]) == 0
    assert json.loads((streamed / "training_summary.json").read_text())["global_steps"] == 3


def test_hub_token_is_written_nowhere(dataset: Path, tmp_path: Path, capsys, caplog):
    """``--hub_token`` must reach no file of the run (``training_args.bin`` in the model folder and in
    every checkpoint is a pickle of the TrainingArguments), nor stdout, stderr or the log."""
    import logging

    secret = "hf_verysecret123"
    out = tmp_path / "model"
    caplog.set_level(logging.INFO)
    assert main(["train", "--dataset", str(dataset), "--output-dir", str(out), "--preset", "tiny",
                 "--num-classes", "4", "--validation-size", "4", "--max_steps", "2", "--save_steps", "1",
                 "--per_device_train_batch_size", "2", "--hub_token", secret]) == 0
    captured = capsys.readouterr()
    files = [path for path in out.rglob("*") if path.is_file()]
    assert (out / "training_args.bin").is_file() and (out / "checkpoint-1" / "training_args.bin").is_file()
    assert (out / "checkpoint-2").is_dir() and len(files) > 10
    leaks = [str(path.relative_to(out)) for path in files if secret.encode() in path.read_bytes()]
    assert leaks == []
    assert secret not in captured.out and secret not in captured.err and secret not in caplog.text
    # The saved arguments still load, without the token (torch's safe loader refuses arbitrary pickles).
    arguments = torch.load(out / "training_args.bin", weights_only=False)
    assert arguments.hub_token is None and arguments.max_steps == 2
