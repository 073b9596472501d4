"""benchmarks/bench_counterfactual.py: its summary arithmetic, and its --dry-run end to end (1 seed x on/off/control,
5 training steps each, through `magicseg train`; ~45 s on 2 loaded CPU cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_summary_spreads_and_paired_differences():
    from bench_counterfactual import summarise

    rows = [{"seed": seed, "arm": arm, "miou_paired": base + bonus, "miou_unpaired": base,
             "context_gap": bonus, "fp_context_only": 0.1 - bonus, "pair_cosine": 0.5}
            for seed, base in ((0, 0.5), (1, 0.7)) for arm, bonus in (("on", 0.1), ("off", 0.0))]
    summary = summarise(rows)
    assert summary["on"]["miou_paired"]["mean"] == pytest.approx(0.7)
    assert summary["off"]["miou_unpaired"]["std"] == pytest.approx(0.1414, abs=1e-4)
    assert summary["on_minus_off"]["miou_paired"] == {"mean": 0.1, "std": 0.0, "min": 0.1, "max": 0.1}
    assert summary["on_minus_off"]["fp_context_only"]["mean"] == pytest.approx(-0.1)


def test_dry_run_trains_both_arms_and_reports(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_counterfactual.py"), "--dry-run",
               "--work-dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert {row["arm"] for row in summary["runs"]} == {"on", "off", "control"}
    for arm in ("on", "off"):
        assert 0.0 <= summary[arm]["miou_paired"]["mean"] <= 1.0
        assert 0.0 <= summary[arm]["fp_context_only"]["mean"] <= 1.0
    assert (tmp_path / "model-0-off" / "config.json").exists()
