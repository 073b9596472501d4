"""``benchmarks/device_suite.py --dry-run``: every section runs on the CPU at the tiny size, so the GPU suite
cannot rot between the rare runs on a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "benchmarks" / "device_suite.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

#: Generous budgets: CI machines are shared; the default dry-run budgets (175 s in all) are for an idle one.
TEST_BUDGETS = ("device=120", "generation=300", "annotation=200", "training=200", "evaluation=120", "chain=200")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, str]:
    out = tmp_path_factory.mktemp("device-suite")
    command = [sys.executable, str(SUITE), "--dry-run", "--out", str(out)]
    for budget in TEST_BUDGETS:
        command += ["--budget", budget]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=1500, env=env, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    last = json.loads(done.stdout.strip().splitlines()[-1])
    report = json.loads((out / "device_suite.json").read_text())
    markdown = (out / "device_suite.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["device_suite.json", "device_suite.md"], "nothing else in OUT"
    return last, report, markdown


def test_every_section_measures(dry_run: tuple[dict, dict, str]) -> None:
    _, report, _ = dry_run
    assert list(report["sections"]) == ["device", "generation", "annotation", "training", "evaluation", "chain"]
    for name, section in report["sections"].items():
        for item in section["measurements"]:
            rows = [row for row in item["rows"] if "error" not in row]
            assert rows, f"{name}/{item['name']}: {item['error']} {item['rows']}"
            assert item["error"] is None, f"{name}/{item['name']}: {item['error']}"


def test_last_line_holds_every_figure(dry_run: tuple[dict, dict, str]) -> None:
    last, _, markdown = dry_run
    assert last["dry_run"] is True
    for key in (
        "device_name", "sd15-float32-eager_b2_pairs_per_s", "sd15-float32-compiled_b1_compile_s", "sdxl_s_per_step",
        "sd3_s_per_step", "flux_s_per_step", "annotation_grounding-dino-t+sam-vit-h-float32_b1_images_per_s",
        "annotation_mm-grounding-dino-l+sam2.1-l-float32_b1_images_per_s", "training_b2-eager-counterfactual_samples_per_s",
        "training_b2-compiled-plain_samples_per_s", "counterfactual_step_ratio", "evaluation_tiny_images_per_s",
        "chain_sd15_2_steps_pairs_per_s", "chain_sd15_5_steps_pairs_per_s", "annotation_over_diffusion",
    ):
        assert last.get(key) is not None, key
    assert set(last["goals"]) == {
        "unet_fraction_of_bf16_matmul", "sd15_20_steps_pairs_per_s", "annotation_over_diffusion", "counterfactual_step_ratio"
    }
    assert "## goals" in markdown and "**flux-float32**" in markdown


def test_a_failing_worker_is_one_row_and_the_run_goes_on(tmp_path: Path) -> None:
    """An out-of-memory (or any failure) ends that measurement only; a budget stops a worker, keeping its rows."""
    from _measure import run_worker

    script = (
        "import sys, time\n"
        "print('ROW {\"measurement\": \"a\", \"x\": 1}', flush=True)\n"
        "if sys.argv[1] == 'oom':\n"
        "    raise RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB')\n"
        "time.sleep(30)\n"
    )
    oom = run_worker([sys.executable, "-c", script, "oom"], timeout=60)
    assert oom.rows == [{"measurement": "a", "x": 1}] and oom.error == "out of memory"
    slow = run_worker([sys.executable, "-c", script, "slow"], timeout=2)
    assert slow.timed_out and slow.rows == [{"measurement": "a", "x": 1}] and slow.seconds < 20


def test_the_summary_holds_figures_against_the_goals() -> None:
    from device_suite import summarize

    def section(*items: tuple[str, list[dict]]) -> dict:
        return {"measurements": [{"name": name, "rows": rows} for name, rows in items]}

    report = {"dry_run": False, "sections": {
        "device": section(("device", [{"name": "NVIDIA H200", "memory_gib": 139.8, "bf16_matmul_tflops": 790.0}])),
        "generation": section(("sd15-bfloat16-eager", [
            {"batch": 8, "steps": 20, "pairs_per_s": 6.0, "denoiser_tflops": 350.0, "compile_s": None}])),
        "annotation": section(("grounding-dino-t+sam-vit-h-bfloat16", [
            {"detector": "grounding-dino-t+sam-vit-h", "batch": 8, "images_per_s": 60.0, "pairs_per_s": 40.0}])),
        "training": section(
            ("b4-eager-counterfactual", [{"samples_per_s": 10.0, "peak_memory_gib": 9.0, "s_per_step": 0.4}]),
            ("b4-eager-plain", [{"samples_per_s": 20.0, "peak_memory_gib": 6.0, "s_per_step": 0.2}]),
        ),
    }}
    summary = summarize(report)
    figures, goals = summary["figures"], summary["goals"]
    assert figures["unet_fraction_of_bf16_matmul"] == pytest.approx(350 / 790, abs=1e-3)
    assert goals["unet_fraction_of_bf16_matmul"]["verdict"] == "met"
    assert goals["sd15_20_steps_pairs_per_s"]["verdict"] == "met"
    assert figures["annotation_over_diffusion"] == pytest.approx(40 / 6, abs=0.01)
    assert goals["annotation_over_diffusion"]["verdict"] == "NOT met"
    assert figures["counterfactual_step_ratio"] == 2.0 and goals["counterfactual_step_ratio"]["verdict"] == "met"
