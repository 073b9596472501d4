"""End-to-end generation on the tiny preset (random weights: these prove plumbing, not quality).

Covers: the dataset folder and its schema through ``datasets.load_dataset``; determinism (same
arguments -> same rows, whether run straight, killed with SIGKILL and resumed, or split over two
processes); the counterfactual modes; bad input (one line, exit 2, nothing lost).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import read_rows, sigkill_after_first_shard, subprocess_env
from PIL import Image

from magicseg_hf.cli import main
from magicseg_hf.generation.names import mentions
from magicseg_hf.schema import DATASET_FEATURES, DROP_REASONS
from magicseg_hf.seeding import derive_seed

REPO = Path(__file__).resolve().parents[1]
TINY = ["--preset", "tiny"]


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory) -> Path:
    """8 pairs in shards of 4 attempts, batches of 2: the reference every other run must equal."""
    out = tmp_path_factory.mktemp("straight") / "out"
    code = main(["generate", "--classes", "cat", "dog", "traffic light", "--num-pairs", "8", "--output-dir", str(out),
                 "--shard-size", "4", "--batch-size", "2", "--seed", "3", *TINY])
    assert code == 0
    return out


def test_folder_layout_and_schema(straight_run: Path):
    import datasets

    out = straight_run
    for name in ("README.md", "vocabulary.txt", "generation.json", "preview.png"):
        assert (out / name).is_file(), name
    assert not (out / ".work").exists()
    assert (out / "vocabulary.txt").read_text().splitlines() == ["cat", "dog", "traffic light"]
    ds = datasets.load_dataset(str(out), split="train")
    assert ds.features == DATASET_FEATURES
    assert len(ds) == 8
    assert len(set(ds["id"])) == 8
    generation = json.loads((out / "generation.json").read_text())
    assert generation["summary"]["num_rows"] == 8
    assert set(generation["summary"]["dropped"]) == set(DROP_REASONS)
    assert generation["config"]["preset"] == "tiny"
    assert generation["models"]["diffusion_model"]["id"] == "tiny:stable-diffusion"
    for row in ds:
        classes = row["classes"]
        assert 1 <= len(classes) <= 2 and set(classes) <= {"cat", "dog", "traffic light"}
        assert row["image"].size == row["counterfactual_image"].size == row["label"].size == (128, 128)
        label = np.asarray(row["label"])
        assert label.max() >= 1 and set(np.unique(label)) <= set(range(len(classes) + 1))
        assert row["seed"] == row["counterfactual_seed"]
        assert all(mentions(row["prompt"], c) for c in classes)
        assert not any(mentions(row["counterfactual_prompt"], c) for c in classes)
        assert len(row["boxes"]) == len(row["box_labels"]) == len(row["box_scores"]) >= 1
        assert all(0 <= b < len(classes) for b in row["box_labels"])
        assert 0.0 <= row["counterfactual_score"] <= 1.0
    # prompt mode: the pair shares its noise but not its picture
    first = ds[0]
    assert np.asarray(first["image"]).tobytes() != np.asarray(first["counterfactual_image"]).tobytes()


def test_same_arguments_same_rows_and_resume_of_complete_run(straight_run: Path, tmp_path: Path, capsys):
    out = tmp_path / "again"
    code = main(["generate", "--classes", "cat", "dog", "traffic light", "--num-pairs", "8", "--output-dir", str(out),
                 "--shard-size", "4", "--batch-size", "2", "--seed", "3", *TINY])
    assert code == 0
    assert read_rows(out) == read_rows(straight_run)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code = main(["generate", "--classes", "cat", "dog", "traffic light", "--num-pairs", "8", "--output-dir", str(out),
                 "--shard-size", "4", "--batch-size", "2", "--seed", "3", "--resume", *TINY])
    assert code == 0
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_another_seed_gives_other_rows(straight_run: Path, tmp_path: Path):
    out = tmp_path / "seed4"
    assert main(["generate", "--classes", "cat", "dog", "traffic light", "--num-pairs", "2", "--output-dir", str(out),
                 "--shard-size", "4", "--batch-size", "2", "--seed", "4", *TINY]) == 0
    assert [r["image"] for r in read_rows(out)] != [r["image"] for r in read_rows(straight_run)[:2]]


def test_sigkill_then_resume_gives_the_same_rows(straight_run: Path, tmp_path: Path):
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "magicseg_hf", "generate", "--classes", "cat", "dog", "traffic light",
            "--num-pairs", "8", "--output-dir", str(out), "--shard-size", "4", "--batch-size", "2", "--seed", "3", *TINY]
    sigkill_after_first_shard(args, out)
    done_before = (out / ".work" / "shard-00000.json").read_bytes()

    # without --resume the folder is refused, and nothing in it is touched
    refused = subprocess.run(args, env=subprocess_env(), capture_output=True, text=True)
    assert refused.returncode == 2
    assert "not empty" in refused.stderr and "Traceback" not in refused.stderr
    assert (out / ".work" / "shard-00000.json").read_bytes() == done_before

    resumed = subprocess.run([*args, "--resume"], env=subprocess_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert read_rows(out) == read_rows(straight_run)


def test_two_processes_write_the_same_rows(straight_run: Path, tmp_path: Path):
    out = tmp_path / "two"
    env = subprocess_env()
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29500 + os.getpid() % 1000), CUDA_VISIBLE_DEVICES="")
    # `accelerate launch --cpu --num_processes 2` silently runs one process; these flags start two (gloo).
    args = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", env["MASTER_PORT"], "-m", "magicseg_hf", "generate",
            "--classes", "cat", "dog", "traffic light", "--num-pairs", "8", "--output-dir", str(out),
            "--shard-size", "4", "--batch-size", "2", "--seed", "3", *TINY]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    generation = json.loads((out / "generation.json").read_text())
    assert generation["summary"]["num_processes"] == 2
    assert read_rows(out) == read_rows(straight_run)


@pytest.mark.parametrize("mode", ["inpaint", "paper"])
def test_counterfactual_modes(mode: str, tmp_path: Path):
    out = tmp_path / mode
    assert main(["generate", "--classes", "cat", "dog", "--num-pairs", "2", "--output-dir", str(out),
                 "--counterfactual", mode, "--batch-size", "2", *TINY]) == 0
    rows = read_rows(out)
    assert len(rows) == 2
    for row in rows:
        image = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])))
        counterfactual = np.asarray(Image.open(io.BytesIO(row["counterfactual_image"]["bytes"])))
        label = np.asarray(Image.open(io.BytesIO(row["label"]["bytes"])))
        if mode == "inpaint":
            # the repainted region covers the label (pixel alignment itself: tests/test_images.py)
            assert label.any()
            assert not np.array_equal(image, counterfactual)
            assert row["counterfactual_seed"] == row["seed"]
        else:
            assert row["counterfactual_seed"] != row["seed"]
            assert "nothing" in row["counterfactual_prompt"]


def test_shortfall_is_reported_not_hidden(tmp_path: Path, capsys):
    out = tmp_path / "short"
    # a counterfactual threshold of 0: every annotated attempt scores above it (sigmoid scores are > 0)
    code = main(["generate", "--classes", "cat", "--num-pairs", "2", "--max-attempts", "3", "--output-dir", str(out),
                 "--counterfactual-threshold", "0", *TINY])
    assert code == 0
    summary = json.loads((out / "generation.json").read_text())["summary"]
    assert summary["num_rows"] == 0 and summary["attempts"] == 3 and summary["shortfall"] == 2
    assert sum(summary["dropped"].values()) == 3 and summary["dropped"]["counterfactual"] >= 1
    assert not list((out / "data").glob("*.parquet"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-pairs", "2"], "no classes"),
        (["--vocabulary", "klingon", "--num-pairs", "2"], "unknown vocabulary"),
        (["--classes", "cat", "--num-pairs", "0"], "--num-pairs"),
        (["--classes", "cat", "--num-pairs", "-3"], "--num-pairs"),
        (["--classes", "cat", "cat", "--num-pairs", "2"], "more than once"),
        (["--classes", "cat", "--num-pairs", "2", "--diffusion-model", "/no/such/folder"], "no such folder"),
        (["--classes", "cat", "--num-pairs", "2", "--diffusion-model", "someone/not-cached-model"], "HF_HUB_OFFLINE"),
        (["--classes", "cat", "--num-pairs", "2", "--segmenter", "segment-anything", "--sam-checkpoint", "/no/sam.pth"],
         "no such file"),
        (["--classes", "cat", "--num-pairs", "2", "--height", "100"], "multiple of 8"),
        (["--classes", "cat", "--num-pairs", "2", "--prompt-backend", "openai"], "needs --openai-base-url"),
        (["--classes", "cat", "--num-pairs", "2", "--prompt-backend", "transformers", "--prompt-model", "/no/llm"],
         "prompt model '/no/llm': no such folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path, capsys):
    out = tmp_path / "bad"
    start = time.perf_counter()
    code, err = run_cli(["generate", "--output-dir", str(out), *args, *TINY], capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert time.perf_counter() - start < 30
    assert not out.exists()  # refused before anything was written


def test_segment_anything_needs_a_checkpoint_outside_tiny(tmp_path: Path, capsys):
    out = tmp_path / "paper-sam"
    code, err = run_cli(["generate", "--classes", "cat", "--num-pairs", "1", "--output-dir", str(out),
                         "--preset", "paper", "--segmenter", "segment-anything"], capsys)
    assert code == 2 and "needs --sam-checkpoint" in err and not out.exists()


def test_non_empty_folder_is_refused_untouched(tmp_path: Path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code, err = run_cli(["generate", "--classes", "cat", "--num-pairs", "1", "--output-dir", str(out), *TINY], capsys)
    assert code == 2 and "not empty" in err
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    code, err = run_cli(["generate", "--classes", "cat", "--num-pairs", "1", "--output-dir", str(out), "--resume",
                         *TINY], capsys)
    assert code == 2 and "generation.json" in err
    assert (out / "precious.txt").read_text() == "keep me"


def test_resume_with_other_settings_is_refused(straight_run: Path, tmp_path: Path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(straight_run, out)
    code, err = run_cli(["generate", "--classes", "cat", "dog", "traffic light", "--num-pairs", "8",
                         "--output-dir", str(out), "--shard-size", "4", "--batch-size", "2", "--seed", "99",
                         "--resume", *TINY], capsys)
    assert code == 2 and "seed" in err


def test_vocabulary_lines_kept_and_bare_names_in_text(tmp_path: Path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("bow (weapon)\nbus (vehicle)\n")
    out = tmp_path / "lvis-like"
    assert main(["generate", "--vocabulary", str(vocab), "--num-pairs", "3", "--output-dir", str(out), *TINY]) == 0
    for row in read_rows(out):
        assert set(row["classes"]) <= {"bow (weapon)", "bus (vehicle)"}
        assert "(" not in row["prompt"]
        assert not any(mentions(row["counterfactual_prompt"], c) for c in row["classes"])


def test_generate_help_lists_every_config_field():
    from magicseg_hf.cli import build_parser
    from magicseg_hf.generation.config import generation_fields

    sub = build_parser()._subparsers._group_actions[0].choices["generate"]
    flags = {opt for action in sub._actions for opt in action.option_strings}
    for field in generation_fields():
        assert "--" + field.name.replace("_", "-") in flags


def test_unreachable_hub_fails_at_once(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # offline mode is read at call time
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    out = tmp_path / "unreachable"
    start = time.perf_counter()
    code, err = run_cli(["generate", "--classes", "cat", "--num-pairs", "1", "--output-dir", str(out),
                         "--diffusion-model", "someone/not-cached-model", *TINY], capsys)
    assert code == 2 and "unreachable" in err and "Traceback" not in err
    assert time.perf_counter() - start < 10
    assert not out.exists()


def test_local_model_folders_take_the_real_loading_path(straight_run: Path, tmp_path: Path):
    """Saved to folders and loaded through from_pretrained (the path real checkpoints take), the tiny
    twins give exactly the rows of the `tiny:` ids: only where the weights come from differs."""
    from magicseg_hf.loading import load_detector, load_diffusion_pipeline, load_segmenter

    folders = {name: tmp_path / name for name in ("sd", "detector", "sam")}
    load_diffusion_pipeline("tiny:stable-diffusion").save_pretrained(folders["sd"])
    for (model, processor), folder in (
        (load_detector("grounding-dino", "tiny:grounding-dino"), folders["detector"]),
        (load_segmenter("transformers", "tiny:sam"), folders["sam"]),
    ):
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    assert (folders["sd"] / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    out = tmp_path / "from-folders"
    assert main(["generate", "--classes", "cat", "dog", "traffic light", "--num-pairs", "8", "--output-dir", str(out),
                 "--shard-size", "4", "--batch-size", "2", "--seed", "3", *TINY,
                 "--diffusion-model", str(folders["sd"]), "--detector-model", str(folders["detector"]),
                 "--segmenter-model", str(folders["sam"])]) == 0
    generation = json.loads((out / "generation.json").read_text())
    assert generation["models"]["diffusion_model"]["id"] == str(folders["sd"])
    # Same weights, same code path: the text, seeds and classes are identical; pixels may differ by
    # float rounding only (loaded weights can take other CPU kernels: ~1e-6 in the VAE output).
    loaded, built = read_rows(out), read_rows(straight_run)
    float_columns = ("image", "counterfactual_image", "label", "boxes", "box_scores", "counterfactual_score",
                     "class_scores")

    def exact_part(row: dict) -> dict:
        return {k: v for k, v in row.items() if k not in float_columns}

    assert [exact_part(r) for r in loaded] == [exact_part(r) for r in built]
    for a, b in zip(loaded, built):
        for column in ("image", "counterfactual_image", "label"):
            x = np.asarray(Image.open(io.BytesIO(a[column]["bytes"])), dtype=np.int16)
            y = np.asarray(Image.open(io.BytesIO(b[column]["bytes"])), dtype=np.int16)
            if column == "label":
                assert (x == y).mean() > 0.99
            else:
                assert np.abs(x - y).max() <= 1 and (x == y).mean() > 0.999
        assert np.allclose(a["box_scores"], b["box_scores"], atol=1e-3)
        assert np.allclose(a["class_scores"], b["class_scores"], atol=1e-3, equal_nan=True)


@pytest.mark.parametrize(
    ("args", "detector", "segmenter"),
    [
        (["--detector", "owlv2"], "tiny:owlv2", {"id": "tiny:sam", "revision": None}),
        (["--segmenter", "segment-anything"], "tiny:grounding-dino",
         {"id": "tiny:segment-anything", "revision": "tiny"}),
    ],
)
def test_generation_json_names_the_models_loaded(args: list[str], detector: str, segmenter: dict, tmp_path: Path):
    out = tmp_path / "models"
    assert main(["generate", "--classes", "cat", "dog", "--num-pairs", "2", "--output-dir", str(out), *TINY, *args]) == 0
    models = json.loads((out / "generation.json").read_text())["models"]
    assert models["detector_model"]["id"] == detector
    assert {key: models["segmenter_model"][key] for key in segmenter} == segmenter
    assert models["segmenter_model"]["license"].startswith("Apache-2.0")
    assert len(read_rows(out)) == 2


def test_transformers_prompt_backend_writes_the_rows_prompts(tmp_path: Path, monkeypatch):
    """The product's own LLM path: generate() builds the transformers backend on the tiny causal LM;
    its text generation is replaced by a stand-in that names the classes it is asked for."""
    from magicseg_hf.generation.prompts import TransformersPromptBackend

    asked: list[tuple[tuple[str, ...], int]] = []

    def stand_in(self, names: list[str], seed: int) -> str:
        asked.append((tuple(names), seed))
        subject = " and a ".join(names)
        # the continuation of an instruction that ends with "1." (the tiny tokenizer has no chat template)
        return f" a photo of a {subject} in room {seed % 97}, soft light\n2. a {subject} at night\n3. a sketch"

    monkeypatch.setattr(TransformersPromptBackend, "generate_text", stand_in)
    out = tmp_path / "llm"
    assert main(["generate", "--classes", "cat", "traffic light", "--num-pairs", "3", "--output-dir", str(out),
                 "--batch-size", "2", "--seed", "5", "--prompt-backend", "transformers", *TINY]) == 0

    rows = read_rows(out)
    cached = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and len(cached) == len(asked) >= 3  # one request per attempt, each cached
    for record, (names, seed) in zip(cached, asked):
        assert seed == derive_seed("magicseg", 5, record["attempt"], "prompt")
        assert list(names) == record["classes"]
        assert record["prompt"] == f"a photo of a {' and a '.join(names)} in room {seed % 97}, soft light"
    by_attempt = {record["attempt"]: record for record in cached}
    for row in rows:
        record = by_attempt[int(row["id"].rsplit("-a", 1)[1])]
        assert row["prompt"] == record["prompt"] and row["classes"] == record["classes"]
        assert not any(mentions(row["counterfactual_prompt"], c) for c in row["classes"])
    generation = json.loads((out / "generation.json").read_text())
    assert generation["config"]["prompt_backend"] == "transformers"
    assert generation["models"]["prompt_model"]["id"] == "tiny:causal-lm" and generation["models"]["prompt_model"]["revision"] is None
