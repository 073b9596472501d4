"""Evaluation protocols as data: the harness values of four reference codebases, each cited.

Numbers are comparable across papers only when the harness is the same. A protocol here is the set
of values that belong to a *harness*, not to a method — how images are resized, whether and how
windows slide, which class-name file is queried (background words included), how synonyms
combine, how background is decided, whether small classes are dropped and whether PAMR refines —
as that reference codebase sets them, per benchmark. :data:`PROTOCOLS` holds ``zegclip``,
``groupvit``, ``sclip``, ``naclip`` and ``clearclip``; every value carries the file and line it was read from
(:attr:`ProtocolSpec.citations`), and :meth:`Protocol.to_dict` writes values, citations and
overrides into every results file.

**Scores.** The training-free harnesses (SCLIP, NACLIP, GroupViT) threshold a *softmax over the
queries* of CLIP cosines times a logit scale; ``CLIPForOpenSegmentation`` gives each class an
independent *sigmoid*. A softmax threshold has no meaning for independent sigmoids, so each
protocol keeps the harness's own values in :attr:`Protocol.harness` (for training-free CLIP models,
the baselines' harness) and says in :attr:`Protocol.model_rule_note` what our trained model uses
instead and why: the harness's background texts where it queries some, and otherwise the
threshold the model was trained to separate at (sigmoid 0.5). Nothing is reinterpreted silently.

Example::

    from magicseg_hf.evaluation.protocols import get_protocol

    protocol = get_protocol("sclip").for_benchmark("voc21").with_overrides(stride=224)
    protocol.resized_size(375, 500)   # (336, 448)
    protocol.num_windows(336, 448)    # 2 rows x 2 columns = 4
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magicseg_hf.errors import InputError

#: How our trained model decides background, by rule name (``magicseg_hf.modeling.DECISION_RULES``).
RULES = ("threshold", "background-class", "argmax")
#: Slide windows, or one forward of the whole resized image.
MODES = ("slide", "whole")
#: How a class line's synonyms combine.
SYNONYM_RULES = ("max", "mean")
#: Post-refinements.
REFINEMENTS = ("pamr",)
#: The sigmoid probability CLIPForOpenSegmentation is trained to separate at: `modeling`'s DEFAULT_THRESHOLD,
#: repeated here because this module must not import torch (a test keeps the two equal).
MODEL_THRESHOLD = 0.5
#: The values a user may override.
OVERRIDABLE = (
    "short_side", "max_long_side", "window", "stride", "mode", "rule", "threshold", "area_threshold",
    "synonyms", "class_names", "refine",
)  # fmt: skip
#: Every method ``magicseg evaluate --method`` knows; ``magicseg`` is the trained CLIPForOpenSegmentation, the
#: others the training-free CLIP segmenters of :mod:`magicseg_hf.evaluation.methods` (kept here: no torch).
METHODS = ("magicseg", "maskclip", "sclip", "clearclip", "naclip")
#: The training-free ones (run on a plain CLIPModel).
TRAINING_FREE_METHODS = ("maskclip", "sclip", "clearclip", "naclip")
#: Each method's published harness, its protocol by default.
DEFAULT_PROTOCOLS = {
    "magicseg": "zegclip", "maskclip": "clearclip", "sclip": "sclip", "clearclip": "clearclip", "naclip": "naclip",
}  # fmt: skip
#: A training-free method's own logit scale, used under a protocol whose harness has none (zegclip, groupvit):
#: SCLIP@b56bd30:clip_segmentor.py:20, NACLIP@0cac3a6:naclip.py:22, ClearCLIP@ad68a40:clearclip_segmentor.py:23.
METHOD_LOGIT_SCALES = {"maskclip": 50.0, "sclip": 40.0, "clearclip": 50.0, "naclip": 40.0}


def check_method(method: str) -> str:
    """``method`` if known, else InputError listing the known ones."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r} (expected one of {', '.join(METHODS)})")
    return method


#: Package folder of the class-name files: ``classes/<benchmark>.txt`` (the benchmark's own names) and
#: ``classes/<harness>/<benchmark>.txt`` (a harness's queries, background words included).
CLASSES_DIR = Path(__file__).with_name("classes")
#: ``class_names`` value for the benchmark's own class file.
OWN_CLASS_NAMES = "benchmark"


@dataclass(frozen=True)
class Protocol:
    """One harness's values for one benchmark (or its defaults, ``benchmark=None``); every field is
    written into the results file.

    Attributes:
        name: the protocol's name (kept when values are overridden; see :meth:`overrides`).
        benchmark: the benchmark these values are for, or None for the protocol's defaults.
        short_side, max_long_side: mmseg's keep-ratio ``Resize(scale=(max_long_side, short_side))``.
        window, stride: sliding window side and step (px); ignored with ``mode="whole"``.
        mode: ``slide`` or ``whole``.
        rule: how CLIPForOpenSegmentation decides a pixel: ``background-class``, ``threshold`` or
            ``argmax`` (a benchmark without background always takes ``argmax``).
        threshold: the sigmoid probability our model's best class needs (None: none).
        area_threshold: classes holding at most this share of the labelled pixels are dropped and
            their pixels decided again (SCLIP's ``area_thd``), or None.
        synonyms: ``max`` (one query per synonym, the best speaks for the class) or ``mean``
            (embeddings averaged).
        class_names: whose class-name file is queried: a harness name (``classes/<name>/``) or
            ``benchmark`` (the benchmark's own names).
        refine: None or ``pamr``.
        harness: the harness's own values that are defined on another score than ours (its score,
            background rule and thresholds), kept for training-free CLIP models.
        model_rule_note: what our trained model uses instead of those, and why.
        reference: the codebase and config the values come from.
        citations: per value, ``repo@commit:path:line``.
    """

    name: str
    short_side: int
    window: int
    stride: int
    rule: str
    benchmark: str | None = None
    max_long_side: int | None = 2048
    mode: str = "slide"
    threshold: float | None = None
    area_threshold: float | None = None
    synonyms: str = "max"
    class_names: str = OWN_CLASS_NAMES
    refine: str | None = None
    harness: dict[str, Any] = field(default_factory=dict, compare=False)
    model_rule_note: str = ""
    reference: str = ""
    citations: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("short_side", "window", "stride", "max_long_side"):
            value = getattr(self, name)
            if name == "max_long_side" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer (got {value!r})")
        if self.stride > self.window:
            raise InputError(
                f"stride must not exceed window, or pixels between windows go unpredicted "
                f"(got stride {self.stride} and window {self.window})"
            )
        if self.max_long_side is not None and self.max_long_side < self.short_side:
            raise InputError(
                f"max_long_side must be at least short_side (got {self.max_long_side} and {self.short_side})"
            )
        if self.mode == "slide" and self.window > self.short_side:
            raise InputError(
                f"window {self.window} is larger than the resized image's short side {self.short_side}; "
                "use a window of at most the short side"
            )
        choices = {"mode": MODES, "rule": RULES, "synonyms": SYNONYM_RULES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)} (got {getattr(self, name)!r})")
        if self.refine is not None and self.refine not in REFINEMENTS:
            raise InputError(f"refine must be one of {', '.join(REFINEMENTS)} or none (got {self.refine!r})")
        for name in ("threshold", "area_threshold"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise InputError(f"{name} must lie in [0, 1] (got {value})")
        if self.rule == "threshold" and self.threshold is None:
            raise InputError("the threshold rule needs a threshold (got none)")
        if self.rule == "argmax" and self.threshold is not None:
            raise InputError(f"the argmax rule takes no threshold (got {self.threshold})")
        if self.class_names != OWN_CLASS_NAMES and not (CLASSES_DIR / self.class_names).is_dir():
            known = sorted(path.name for path in CLASSES_DIR.iterdir() if path.is_dir())
            raise InputError(
                f"class_names must be {OWN_CLASS_NAMES} or one of {', '.join(known)} (got {self.class_names!r})"
            )

    # ---- values ------------------------------------------------------------------------------
    def for_benchmark(self, benchmark: str) -> Protocol:
        """This protocol's values for ``benchmark`` (a named benchmark, or any other name for its defaults)."""
        spec = SPECS.get(self.name)
        if spec is None or self.benchmark is not None:
            return dataclasses.replace(self, benchmark=benchmark)
        return spec.resolve(benchmark)

    def with_overrides(self, **overrides: Any) -> Protocol:
        """A copy with the given values replaced; ``None`` values are skipped (an unset CLI flag).

        ``refine="none"`` turns a protocol's refinement off, ``max_long_side="none"`` its long-side cap; a new ``rule`` without a ``threshold``
        takes 0.5 for ``threshold`` and none for ``argmax``.

        Raises:
            InputError: for a name not in :data:`OVERRIDABLE` or an invalid value.
        """
        unknown = sorted(set(overrides) - set(OVERRIDABLE))
        if unknown:
            raise InputError(f"cannot override {', '.join(unknown)} (overridable: {', '.join(OVERRIDABLE)})")
        changes = {key: value for key, value in overrides.items() if value is not None}
        if changes.get("refine") == "none":
            changes["refine"] = None
        if isinstance(changes.get("max_long_side"), str):
            text = changes["max_long_side"].strip().lower()
            if text != "none" and not text.isdigit():
                raise InputError(f"max_long_side must be a positive integer or none (got {changes['max_long_side']!r})")
            changes["max_long_side"] = None if text == "none" else int(text)
        if "rule" in changes and "threshold" not in changes:
            changes["threshold"] = {"threshold": MODEL_THRESHOLD, "argmax": None}.get(changes["rule"], self.threshold)
        return dataclasses.replace(self, **changes) if changes else self

    def overrides(self) -> dict[str, Any]:
        """The values that differ from the named protocol's own for this benchmark."""
        spec = SPECS.get(self.name)
        if spec is None:
            return {}
        base = spec.resolve(self.benchmark) if self.benchmark is not None else spec.defaults()
        return {
            name: getattr(self, name) for name in OVERRIDABLE if getattr(self, name) != getattr(base, name)
        }

    def to_dict(self) -> dict[str, Any]:
        """Every value, the citations and ``overrides``, as plain JSON values."""
        return {**dataclasses.asdict(self), "overrides": self.overrides()}

    # ---- geometry ----------------------------------------------------------------------------
    def geometry(self) -> Any:
        """The model's :class:`~magicseg_hf.modeling.InferenceGeometry` for these values."""
        from magicseg_hf.modeling.inference_clip_open_seg import InferenceGeometry

        return InferenceGeometry(self.short_side, self.max_long_side, self.window, self.stride, self.mode)

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after the protocol's resize (mmseg's keep-ratio rescale, at least 1 px)."""
        from magicseg_hf.modeling.inference_clip_open_seg import keep_ratio_size

        return keep_ratio_size(height, width, self.short_side, self.max_long_side)

    def window_grid(self, height: int, width: int) -> tuple[int, int]:
        """(rows, columns) of windows over a (height, width) resized image (mmseg's ``slide`` grid)."""
        if self.mode == "whole":
            return 1, 1

        def steps(side: int) -> int:
            return max(math.ceil((side - self.window) / self.stride), 0) + 1

        return steps(height), steps(width)

    def num_windows(self, height: int, width: int) -> int:
        """Number of windows over a (height, width) resized image."""
        rows, columns = self.window_grid(height, width)
        return rows * columns

    # ---- the question ------------------------------------------------------------------------
    def class_lines(self, benchmark: Any) -> tuple[tuple[str, ...], ...]:
        """The class lines queried for ``benchmark``: the harness's file where it has one for this
        benchmark (same number of lines, label-id order), else the benchmark's own names."""
        from magicseg_hf.evaluation.benchmarks import read_class_file

        if self.class_names == OWN_CLASS_NAMES:
            return tuple(benchmark.class_synonyms)
        path = CLASSES_DIR / self.class_names / f"{Path(str(benchmark.name)).name.replace('-', '_')}.txt"
        if not path.is_file():
            return tuple(benchmark.class_synonyms)
        lines = read_class_file(path)
        if len(lines) != benchmark.num_labels:
            raise InputError(
                f"class file {path} has {len(lines)} classes but {benchmark.name} has {benchmark.num_labels}"
            )
        return lines

    def training_free_score(self, benchmark: Any, method: str, threshold: float | None = None) -> dict[str, Any]:
        """How a training-free ``method`` decides under this harness: ``rule`` (``background-class`` where the
        benchmark has background, else ``argmax``; a ``rule`` override of this protocol where it has
        background), ``threshold`` (the harness's ``prob_thd`` on the softmax, None where 0 or without
        background; ``threshold`` overrides it; an overridden rule takes this protocol's threshold),
        ``area_threshold`` and ``logit_scale`` (the harness's, else the method's own)."""
        prob_thd = float(self.harness.get("prob_thd", 0.0)) if threshold is None else float(threshold)
        if not benchmark.has_background:
            rule, prob_thd = "argmax", 0.0
        elif "rule" in self.overrides():  # --decision given: the run's record names it, so it must decide
            rule = self.rule
            prob_thd = float(threshold if threshold is not None else self.threshold or 0.0)
        else:
            rule = "background-class"
        return {
            "rule": rule,
            "threshold": prob_thd or None,
            "area_threshold": self.area_threshold,
            "logit_scale": float(self.harness.get("logit_scale", METHOD_LOGIT_SCALES[method])),
        }

    def decision(self, benchmark: Any) -> Any:
        """The model's :class:`~magicseg_hf.modeling.Decision` for ``benchmark`` (argmax without background)."""
        from magicseg_hf.modeling.inference_clip_open_seg import Decision

        if not benchmark.has_background:
            return Decision("argmax", None, self.area_threshold)
        return Decision(self.rule, self.threshold, self.area_threshold)


@dataclass(frozen=True)
class ProtocolSpec:
    """A named protocol: its defaults, per-benchmark values and the citation of each value."""

    name: str
    reference: str
    values: dict[str, Any]
    per_benchmark: dict[str, dict[str, Any]] = field(default_factory=dict)
    citations: dict[str, dict[str, str]] = field(default_factory=dict)

    def defaults(self) -> Protocol:
        return Protocol(name=self.name, reference=self.reference, citations=dict(self.citations.get("*", {})),
                        **self.values)

    def resolve(self, benchmark: str) -> Protocol:
        values = {**self.values, **self.per_benchmark.get(benchmark, {})}
        citations = {**self.citations.get("*", {}), **self.citations.get(benchmark, {})}
        harness = {**self.values.get("harness", {}), **self.per_benchmark.get(benchmark, {}).get("harness", {})}
        values["harness"] = harness
        return Protocol(name=self.name, benchmark=benchmark, reference=self.reference, citations=citations, **values)


# ----------------------------------------------------------------------------------------------
# The named protocols (values and citations)
# ----------------------------------------------------------------------------------------------
# Citations name the reference at the commit read: ``repo@commit:path:line``.
_SCLIP = "wangf3014/SCLIP@b56bd30"
_NACLIP = "sinahmr/NACLIP@0cac3a6"
_GROUPVIT = "NVlabs/GroupViT@13b7861"
_ZEGCLIP = "ZiqinZhou66/ZegCLIP@9ba4bb5"
_MAGICSEG = "ckxhp/magicseg@6d850ad"
_CLEARCLIP = "mc-lan/ClearCLIP@ad68a40"
#: SCLIP's and NACLIP's background line on VOC21 and COCO-Object (their class files' first line).
_STUFF_WORDS_NOTE = "background queried as 26 stuff words (sky, wall, tree, ...), best word wins"

_SOFTMAX_NOTE = (
    "The harness thresholds a softmax over all queries of CLIP cosines x logit_scale (prob_thd); a softmax "
    "share has no meaning for CLIPForOpenSegmentation's independent per-class sigmoids, so the model queries "
    "the harness's background texts where it has some (rule background-class) and leaves a pixel to "
    "background where its best class's sigmoid is below 0.5, the probability each class is trained (focal "
    "loss) to separate at. Geometry, class names, synonym rule, area threshold and PAMR are the harness's."
)

SPEC_VALUES: tuple[ProtocolSpec, ...] = (
    ProtocolSpec(
        name="zegclip",
        reference="ZegCLIP's test configuration, inherited unchanged by the MagicSeg release (its only evaluated "
        "benchmark with these values is VOC20; no release holds a VOC21, Context or COCO-Object config)",
        values=dict(
            short_side=512, max_long_side=None, window=512, stride=426, mode="slide", rule="background-class",
            threshold=None, synonyms="max", class_names=OWN_CLASS_NAMES,
            harness={
                "score": "per-class sigmoid, probabilities averaged over windows (this model's own score)",
                "templates": "a photo of a {} (one template, no period)",
                "seen_class_offset": "-0.1 on seen classes (uniform, so no effect, when all classes are seen)",
            },
            model_rule_note=(
                "ZegCLIP's score is this model's (per-class sigmoid), so its values carry over as they are. "
                "ZegCLIP evaluates VOC without background; for benchmarks with background no reference config "
                "exists and 'background' is queried as one more class (rule background-class): our choice, "
                "not a reference value."
            ),
        ),
        per_benchmark={
            "voc20": dict(class_names="zegclip"),
        },
        citations={
            "*": {
                "short_side": f"{_ZEGCLIP}:configs/_base_/datasets/voc12_20_512x512.py:23,27 (min_size=512)",
                "max_long_side": "mmsegmentation==0.24.0:mmseg/datasets/pipelines/transforms.py:250-268 "
                "(min_size rewrites the scale: the 2048 cap never applies)",
                "window": f"{_ZEGCLIP}:configs/voc12/vpt_seg_zero_vit-b_512x512_20k_12_10.py:64",
                "stride": f"{_ZEGCLIP}:configs/voc12/vpt_seg_zero_vit-b_512x512_20k_12_10.py:64",
                "mode": f"{_ZEGCLIP}:configs/voc12/vpt_seg_zero_vit-b_512x512_20k_12_10.py:64",
                "score_averaging": f"{_ZEGCLIP}:models/segmentor/zegclip.py:196-221,231-264; "
                "models/decode_heads/decode_seg.py:285-305",
                "final_resize": f"{_ZEGCLIP}:models/segmentor/zegclip.py:265-271",
                "magicseg": f"{_MAGICSEG}:train_code/ZegCLIP-main/configs/magicseg/"
                "vpt_seg_fully_vit-b_512x512_20k_12_10.py:64; configs/_base_/datasets/magicseg_512x512.py:24,28",
                "rule": "no reference config (our choice: background queried as a class)",
            },
            "voc20": {"class_names": f"{_ZEGCLIP}:configs/_base_/datasets/text_embedding/get_embedding.ipynb "
                      "cells 0-2 (voc12_single.npy)", "rule": "background ignored: "
                      f"{_ZEGCLIP}:configs/_base_/datasets/dataloader/voc12.py:39-45"},
        },
    ),
    ProtocolSpec(
        name="groupvit",
        reference="GroupViT's segmentation evaluation (mmseg 0.18 configs); VOC21, Context60, COCO-Object",
        values=dict(
            short_side=448, max_long_side=2048, window=448, stride=224, mode="slide", rule="threshold",
            threshold=MODEL_THRESHOLD, synonyms="max", class_names="groupvit",
            harness={
                "score": "softmax over classes of group-token x text similarity x learned logit scale (<= 100), "
                "restricted to the image's top-5 classes; each pixel takes its group's scores",
                "background": "not queried: background where the best class score is below bg_thresh "
                "(capped per window by the window's highest score)",
                "templates": "a photo of a {}.",
            },
            model_rule_note=(
                "GroupViT's bg_thresh applies to a softmax over classes; this model's classes have independent "
                "sigmoids, so background is where the best class's sigmoid is below 0.5, the probability each "
                "class is trained to separate at (rule threshold)."
            ),
        ),
        per_benchmark={
            "voc21": dict(harness={"bg_thresh": 0.95}),
            "context60": dict(harness={"bg_thresh": 0.35}),
            "coco-object": dict(harness={"bg_thresh": 0.95}),
            "voc20": dict(class_names=OWN_CLASS_NAMES, harness={"note": "not evaluated by GroupViT"}),
            "context59": dict(class_names=OWN_CLASS_NAMES, harness={"note": "not evaluated by GroupViT"}),
        },
        citations={
            "*": {
                "short_side": f"{_GROUPVIT}:segmentation/configs/_base_/datasets/pascal_voc12.py:20,24",
                "max_long_side": f"{_GROUPVIT}:segmentation/configs/_base_/datasets/pascal_voc12.py:20",
                "window": f"{_GROUPVIT}:segmentation/configs/_base_/datasets/pascal_voc12.py:40",
                "stride": f"{_GROUPVIT}:segmentation/configs/_base_/datasets/pascal_voc12.py:40",
                "mode": f"{_GROUPVIT}:segmentation/configs/_base_/datasets/pascal_voc12.py:40",
                "score": f"{_GROUPVIT}:segmentation/evaluation/group_vit_seg.py:201-241",
                "bg_rule": f"{_GROUPVIT}:segmentation/evaluation/group_vit_seg.py:131,239-244",
                "templates": f"{_GROUPVIT}:configs/default.yml:91; datasets/imagenet_template.py:115-117",
            },
            "voc21": {
                "class_names": f"{_GROUPVIT}:segmentation/datasets/pascal_voc.py:18-19",
                "bg_thresh": f"{_GROUPVIT}:segmentation/configs/_base_/datasets/pascal_voc12.py:40",
            },
            "context60": {
                "class_names": f"{_GROUPVIT}:segmentation/datasets/pascal_context.py:18-23",
                "bg_thresh": f"{_GROUPVIT}:segmentation/configs/_base_/datasets/pascal_context.py:40",
                "short_side": f"{_GROUPVIT}:segmentation/configs/_base_/datasets/pascal_context.py:20,24",
            },
            "coco-object": {
                "class_names": f"{_GROUPVIT}:segmentation/datasets/coco_object.py:21-29",
                "bg_thresh": f"{_GROUPVIT}:segmentation/configs/_base_/datasets/coco.py:41",
                "short_side": f"{_GROUPVIT}:segmentation/configs/_base_/datasets/coco.py:21,25",
            },
        },
    ),
    ProtocolSpec(
        name="sclip",
        reference="SCLIP's evaluation (mmseg 1.1.1 configs/cfg_*.py, clip_segmentor.py)",
        values=dict(
            short_side=336, max_long_side=2048, window=224, stride=112, mode="slide", rule="background-class",
            threshold=MODEL_THRESHOLD, synonyms="max", class_names="sclip",
            harness={
                "score": "softmax over all queries of patch-text cosine x logit_scale, cosines averaged over "
                "windows, a class's probability = the max over its synonyms",
                "templates": "the 80 OpenAI ImageNet templates",
                "logit_scale": 40, "prob_thd": 0.0,
            },
            model_rule_note=_SOFTMAX_NOTE,
        ),
        per_benchmark={
            "voc21": dict(area_threshold=0.1, harness={"logit_scale": 65, "prob_thd": 0.1,
                                                       "background": _STUFF_WORDS_NOTE}),
            "context60": dict(harness={"logit_scale": 50, "prob_thd": 0.1, "background": "queried as 'background'"}),
            "coco-object": dict(harness={"logit_scale": 50, "prob_thd": 0.1, "background": _STUFF_WORDS_NOTE}),
        },
        citations={
            "*": {
                "short_side": f"{_SCLIP}:configs/cfg_voc21.py:17",
                "max_long_side": f"{_SCLIP}:configs/cfg_voc21.py:17",
                "window": f"{_SCLIP}:clip_segmentor.py:21,141-142",
                "stride": f"{_SCLIP}:clip_segmentor.py:21,141-142",
                "mode": f"{_SCLIP}:clip_segmentor.py:141-142",
                "synonyms": f"{_SCLIP}:clip_segmentor.py:154-159",
                "class_file_parsing": f"{_SCLIP}:clip_segmentor.py:201-212 (split on ', ')",
                "score": f"{_SCLIP}:clip_segmentor.py:63-66,109-119,151-152",
                "refine": f"{_SCLIP}:clip_segmentor.py:20 (pamr_steps=0: off)",
                "logit_scale": f"{_SCLIP}:clip_segmentor.py:20",
                "prob_thd": f"{_SCLIP}:clip_segmentor.py:20,169-170",
            },
            "voc21": {"class_names": f"{_SCLIP}:configs/cfg_voc21.py:5 (configs/cls_voc21.txt)",
                      "logit_scale": f"{_SCLIP}:configs/cfg_voc21.py:6", "prob_thd": f"{_SCLIP}:configs/cfg_voc21.py:7",
                      "area_threshold": f"{_SCLIP}:configs/cfg_voc21.py:8; clip_segmentor.py:162-167"},
            "voc20": {"class_names": f"{_SCLIP}:configs/cfg_voc20.py:5 (configs/cls_voc20.txt)",
                      "short_side": f"{_SCLIP}:configs/cfg_voc20.py:14"},
            "context60": {"class_names": f"{_SCLIP}:configs/cfg_context60.py:5 (configs/cls_context60.txt)",
                          "logit_scale": f"{_SCLIP}:configs/cfg_context60.py:6",
                          "prob_thd": f"{_SCLIP}:configs/cfg_context60.py:7",
                          "short_side": f"{_SCLIP}:configs/cfg_context60.py:16"},
            "context59": {"class_names": f"{_SCLIP}:configs/cfg_context59.py:5 (configs/cls_context59.txt)",
                          "short_side": f"{_SCLIP}:configs/cfg_context59.py:14"},
            "coco-object": {"class_names": f"{_SCLIP}:configs/cfg_coco_object.py:5 (configs/cls_coco_object.txt)",
                            "logit_scale": f"{_SCLIP}:configs/cfg_coco_object.py:6",
                            "prob_thd": f"{_SCLIP}:configs/cfg_coco_object.py:7",
                            "short_side": f"{_SCLIP}:configs/cfg_coco_object.py:16"},
        },
    ),
    ProtocolSpec(
        name="naclip",
        reference="NACLIP's evaluation, reported setting (test_all.sh ... on: PAMR on; SCLIP's harness otherwise)",
        values=dict(
            short_side=336, max_long_side=2048, window=224, stride=112, mode="slide", rule="background-class",
            threshold=MODEL_THRESHOLD, synonyms="max", class_names="sclip", refine="pamr",
            harness={
                "score": "softmax over all queries of patch-text cosine x logit_scale (40), cosines averaged "
                "over windows, PAMR on the cosines at the image size, a class's probability = max over synonyms",
                "templates": "the 80 OpenAI ImageNet templates",
                "logit_scale": 40, "prob_thd": 0.0,
            },
            model_rule_note=_SOFTMAX_NOTE + " PAMR refines this model's probabilities at the image size (NACLIP "
            "refines cosines, before its softmax).",
        ),
        per_benchmark={
            "voc21": dict(mode="whole", harness={"prob_thd": 0.1, "background": _STUFF_WORDS_NOTE}),
            "voc20": dict(mode="whole"),
            "context60": dict(harness={"prob_thd": 0.1, "background": "queried as 'background'"}),
            "coco-object": dict(harness={"prob_thd": 0.1, "background": _STUFF_WORDS_NOTE}),
        },
        citations={
            "*": {
                "short_side": f"{_NACLIP}:configs/cfg_voc21.py:16",
                "max_long_side": f"{_NACLIP}:configs/cfg_voc21.py:16",
                "window": f"{_NACLIP}:naclip.py:22,121-124",
                "stride": f"{_NACLIP}:naclip.py:22,121-124",
                "mode": f"{_NACLIP}:naclip.py:121-124",
                "synonyms": f"{_NACLIP}:naclip.py:144-149",
                "class_names": f"{_NACLIP}:configs/cls_*.txt (byte-identical to SCLIP's)",
                "refine": f"{_NACLIP}:naclip.py:21,50,126-135; eval.py:54-57; test_all.sh:15; README.md:52-55",
                "logit_scale": f"{_NACLIP}:naclip.py:22",
                "prob_thd": f"{_NACLIP}:naclip.py:22,151-152",
            },
            "voc21": {"mode": f"{_NACLIP}:configs/cfg_voc21.py:7 (slide_crop=0: whole image)",
                      "prob_thd": f"{_NACLIP}:configs/cfg_voc21.py:6"},
            "voc20": {"mode": f"{_NACLIP}:configs/cfg_voc20.py:6 (slide_crop=0: whole image)"},
            "context60": {"prob_thd": f"{_NACLIP}:configs/cfg_context60.py:6",
                          "short_side": f"{_NACLIP}:configs/cfg_context60.py:15"},
            "coco-object": {"prob_thd": f"{_NACLIP}:configs/cfg_coco_object.py:6",
                            "short_side": f"{_NACLIP}:configs/cfg_coco_object.py:15"},
        },
    ),
    ProtocolSpec(
        name="clearclip",
        reference="ClearCLIP's evaluation (mmseg 1.x configs/cfg_*.py, clearclip_segmentor.py); MaskCLIP as this "
        "harness runs it (model_type MaskCLIP)",
        values=dict(
            short_side=448, max_long_side=2048, window=448, stride=224, mode="slide", rule="background-class",
            threshold=MODEL_THRESHOLD, synonyms="max", class_names="clearclip",
            harness={
                "score": "softmax over all queries of patch-text cosine x logit_scale (50), cosines averaged over "
                "windows, a class's probability = the max over its synonyms",
                "templates": "the 80 OpenAI ImageNet templates",
                "logit_scale": 50, "prob_thd": 0.0,
                "precision": "float16 (model and input); float32 here unless --dtype says otherwise",
            },
            model_rule_note=_SOFTMAX_NOTE,
        ),
        per_benchmark={
            "voc21": dict(harness={"prob_thd": 0.5, "background": "queried as 'background'"}),
            "context60": dict(harness={"prob_thd": 0.15, "background": "queried as 'background'"}),
            "coco-object": dict(harness={"prob_thd": 0.4, "background": "queried as 'background'"}),
        },
        citations={
            "*": {
                "short_side": f"{_CLEARCLIP}:configs/cfg_voc21.py:15",
                "max_long_side": f"{_CLEARCLIP}:configs/cfg_voc21.py:15",
                "window": f"{_CLEARCLIP}:clearclip_segmentor.py:23",
                "stride": f"{_CLEARCLIP}:clearclip_segmentor.py:23",
                "mode": f"{_CLEARCLIP}:clearclip_segmentor.py:23,211-214",
                "synonyms": f"{_CLEARCLIP}:clearclip_segmentor.py:222-227",
                "class_names": f"{_CLEARCLIP}:configs/cls_*.txt",
                "score": f"{_CLEARCLIP}:clearclip_segmentor.py:113-131,216-220",
                "logit_scale": f"{_CLEARCLIP}:clearclip_segmentor.py:23",
                "prob_thd": f"{_CLEARCLIP}:clearclip_segmentor.py:23,229-230",
                "attention": f"{_CLEARCLIP}:open_clip/transformer.py:500-531,589-625",
            },
            "voc21": {"prob_thd": f"{_CLEARCLIP}:configs/cfg_voc21.py:6"},
            "context60": {"prob_thd": f"{_CLEARCLIP}:configs/cfg_context60.py:6"},
            "coco-object": {"prob_thd": f"{_CLEARCLIP}:configs/cfg_coco_object.py:6"},
        },
    ),
)

#: The named protocols' specifications.
SPECS: dict[str, ProtocolSpec] = {spec.name: spec for spec in SPEC_VALUES}
#: The named protocols' defaults (per-benchmark values: :meth:`Protocol.for_benchmark`).
PROTOCOLS: dict[str, Protocol] = {spec.name: spec.defaults() for spec in SPEC_VALUES}


def get_protocol(name: str, benchmark: str | None = None) -> Protocol:
    """The named protocol (one of :data:`PROTOCOLS`), resolved for ``benchmark`` when given.

    Raises:
        InputError: for an unknown name.
    """
    if name not in SPECS:
        raise InputError(f"unknown protocol {name!r} (expected one of {', '.join(SPECS)})")
    spec = SPECS[name]
    return spec.resolve(benchmark) if benchmark is not None else spec.defaults()
