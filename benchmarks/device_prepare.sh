#!/usr/bin/env bash
# Prepares a GPU machine for benchmarks/device_suite.py, then runs the command given after it.
#
# The GPU image has Python 3.12 with torch, transformers, accelerate, peft, safetensors, huggingface_hub,
# tokenizers, pillow, numpy, scipy, pyarrow and pandas, but not diffusers, datasets, evaluate or
# segment-anything, and nothing can be fetched there. So the pure-Python wheels those need travel with the
# working tree in benchmarks/wheels/ (git-ignored, ~7.5 MiB):
#
#   bash benchmarks/device_prepare.sh --download            # here, where PyPI answers: fills benchmarks/wheels/
#   bash benchmarks/device_prepare.sh python3 benchmarks/device_suite.py --out "$OUT"   # there
#
# There it installs the wheels with `pip install --no-index --no-deps --target "$SITE"` (SITE defaults to
# /tmp/magicseg-site, put first on PYTHONPATH), then the project itself with
# `pip install --no-deps --no-build-isolation -e .`, checks the imports, and execs the command.
set -euo pipefail

cd "$(dirname "$0")/.."
WHEELS=benchmarks/wheels
SITE=${SITE:-/tmp/magicseg-site}
PYTHON=${PYTHON:-python3}
# The packages the image lacks, pinned to what the project is tested with here (all pure Python).
PACKAGES=(
  diffusers==0.42.1
  datasets==5.2.0
  evaluate==0.4.6
  segment-anything==1.0
  dill==0.4.1
  multiprocess==0.70.19
)

if [[ "${1:-}" == "--download" ]]; then
  mkdir -p "$WHEELS"
  "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WHEELS" "${PACKAGES[@]}"
  du -sh "$WHEELS"
  exit 0
fi

shopt -s nullglob
wheels=("$WHEELS"/*.whl)
if (( ${#wheels[@]} == 0 )); then
  echo "device_prepare.sh: no wheels in $WHEELS (run 'bash benchmarks/device_prepare.sh --download' where PyPI answers)" >&2
  exit 2
fi
start=$(date +%s)
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -m pip install -q --no-deps --no-build-isolation -e .
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$PYTHON" - <<'EOF'
import importlib

versions = {}
for name in ("torch", "transformers", "diffusers", "datasets", "accelerate", "huggingface_hub", "tokenizers",
             "safetensors", "peft", "evaluate", "segment_anything", "magicseg_hf"):
    module = importlib.import_module(name)
    versions[name] = getattr(module, "__version__", "?")
import torch

versions["cuda"] = torch.version.cuda
versions["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
print("device_prepare:", ", ".join(f"{k} {v}" for k, v in versions.items()))
EOF
echo "device_prepare: ready in $(( $(date +%s) - start )) s"
if (( $# > 0 )); then
  exec "$@"
fi
