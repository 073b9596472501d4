"""Zero-shot evaluation: the mean IoU metric, the benchmark readers, the protocols and PAMR refinement.

- :mod:`~magicseg_hf.evaluation.metric`: :func:`compute_mean_iou` and :class:`MeanIoUAccumulator`
  (dataset-level intersection and union; also an `evaluate` module folder, ``mean_iou/``);
- :mod:`~magicseg_hf.evaluation.benchmarks`: :func:`load_benchmark` for ``voc21``, ``context60``,
  ``context59``, ``coco-object`` (mmsegmentation's layouts) and this project's dataset folders;
- :mod:`~magicseg_hf.evaluation.protocols`: :class:`Protocol`, the named harnesses
  (``zegclip``, ``groupvit``, ``sclip``) and :func:`get_protocol`;
- :mod:`~magicseg_hf.evaluation.refine`: :func:`pamr`.

The names are exported lazily: ``import magicseg_hf.evaluation`` imports neither torch nor `evaluate`;
each submodule is imported when one of its names is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "compute_mean_iou": "metric",
    "MeanIoUAccumulator": "metric",
    "MEAN_IOU_MODULE_DIR": "metric",
    "Benchmark": "benchmarks",
    "BenchmarkSample": "benchmarks",
    "BENCHMARK_NAMES": "benchmarks",
    "COCO_OBJECT_SOURCES": "benchmarks",
    "load_benchmark": "benchmarks",
    "read_class_file": "benchmarks",
    "Protocol": "protocols",
    "PROTOCOLS": "protocols",
    "get_protocol": "protocols",
    "pamr": "refine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
