"""The built wheel (not only the editable tree) carries the package data and the mapped packages."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_has_package_data_and_mapped_packages(tmp_path: Path):
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(REPO)],
        check=True, capture_output=True, env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    (wheel,) = wheel_dir.glob("magicseg_hf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for vocabulary in ("lvis.txt", "voc20.txt", "context59.txt", "coco80.txt"):
        assert f"magicseg_hf/vocabularies/{vocabulary}" in names
    assert "magicseg_hf/modeling/modeling_clip_open_seg.py" in names
    assert "magicseg_hf/dataset_builders/magicseg/__init__.py" in names
    assert not any(name.startswith(("modeling/", "dataset_builders/", "tests/")) for name in names)

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import magicseg_hf, magicseg_hf.modeling;"
        "from magicseg_hf.generation.vocabulary import load_vocabulary;"
        "assert magicseg_hf.__file__.startswith(sys.argv[1]), magicseg_hf.__file__;"
        "assert magicseg_hf.modeling.__file__.startswith(sys.argv[1]), magicseg_hf.modeling.__file__;"
        "print(len(load_vocabulary('lvis')), len(load_vocabulary('voc')), len(load_vocabulary('context')),"
        " len(load_vocabulary('coco')))"
    )
    result = subprocess.run([sys.executable, "-c", probe, str(target)], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1203", "20", "59", "80"]
