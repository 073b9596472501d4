"""Zero-shot evaluation: the mean IoU metric, the benchmark readers, the protocols and PAMR refinement.

- :mod:`~magicseg_hf.evaluation.metric`: :func:`compute_mean_iou` and :class:`MeanIoUAccumulator`
  (dataset-level intersection and union; also an `evaluate` module folder, ``mean_iou/``);
- :mod:`~magicseg_hf.evaluation.benchmarks`: :func:`load_benchmark` for ``voc21``, ``voc20``, ``context60``,
  ``context59``, ``coco-object`` (mmsegmentation's layouts) and this project's dataset folders;
- :mod:`~magicseg_hf.evaluation.protocols`: :class:`Protocol`, the named harnesses per benchmark
  (``zegclip``, ``groupvit``, ``sclip``, ``naclip``; every value cited) and :func:`get_protocol`;
- :mod:`~magicseg_hf.evaluation.inference`: the benchmark's question (queries, rule) for the model's one
  inference path, and its answer in label ids;
- :mod:`~magicseg_hf.evaluation.refine`: :func:`pamr`.

The names are exported lazily: ``import magicseg_hf.evaluation`` imports neither torch nor `evaluate`;
each submodule is imported when one of its names is first used.
"""

from __future__ import annotations

from magicseg_hf.lazy import lazy_exports

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "compute_mean_iou": "magicseg_hf.evaluation.metric",
    "MeanIoUAccumulator": "magicseg_hf.evaluation.metric",
    "MEAN_IOU_MODULE_DIR": "magicseg_hf.evaluation.metric",
    "Benchmark": "magicseg_hf.evaluation.benchmarks",
    "BenchmarkSample": "magicseg_hf.evaluation.benchmarks",
    "BENCHMARK_NAMES": "magicseg_hf.evaluation.benchmarks",
    "COCO_OBJECT_SOURCES": "magicseg_hf.evaluation.benchmarks",
    "load_benchmark": "magicseg_hf.evaluation.benchmarks",
    "read_class_file": "magicseg_hf.evaluation.benchmarks",
    "Protocol": "magicseg_hf.evaluation.protocols",
    "PROTOCOLS": "magicseg_hf.evaluation.protocols",
    "get_protocol": "magicseg_hf.evaluation.protocols",
    "pamr": "magicseg_hf.evaluation.refine",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
