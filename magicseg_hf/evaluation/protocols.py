"""Evaluation protocols as data: how large images are, how windows slide, how background is decided.

Numbers are comparable across papers only when the harness is stated. Three harnesses from the
literature are named here; each value can be overridden, and :meth:`Protocol.to_dict` writes every
value (and what was overridden) into a results file.

===========  ==========  ======  ======  ============================================================
name         short side  window  stride  background
===========  ==========  ======  ======  ============================================================
``zegclip``  512         512     426     a class: "background" is a text query; argmax decides
                                         (the paper's code, ZegCLIP's test configuration)
``groupvit`` 448         448     224     score threshold 0.5 on the best class's sigmoid score
                                         (text-supervised methods: GroupViT, TCL, ClearCLIP's size)
``sclip``    336         224     112     probability threshold 0.1 (training-free CLIP methods:
                                         SCLIP, NACLIP)
===========  ==========  ======  ======  ============================================================

Images are resized as mmsegmentation's ``Resize(scale=(max_long_side, short_side), keep_ratio=True)``
does (short side to ``short_side`` unless the long side would pass ``max_long_side``), then
predicted window by window as its ``slide`` inference does. With ``background="threshold"`` the
benchmark's background line is not queried: pixels whose best class score is below ``threshold``
are background. A benchmark without background (context59) takes the plain argmax under every
protocol.

Example::

    from magicseg_hf.evaluation.protocols import get_protocol

    protocol = get_protocol("sclip").with_overrides(stride=224)
    protocol.resized_size(375, 500)   # (336, 448)
    protocol.num_windows(336, 448)    # 2 rows x 2 columns = 4
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from magicseg_hf.errors import InputError

#: How background is decided: ``class`` (a "background" text query wins the argmax) or
#: ``threshold`` (no class scores above the threshold).
BACKGROUND_MODES = ("class", "threshold")
#: The values a user may override (also ``background`` and ``max_long_side``).
OVERRIDABLE = ("short_side", "window", "stride", "threshold", "background", "max_long_side")


@dataclass(frozen=True)
class Protocol:
    """One evaluation harness; every field is written into the results file.

    Attributes:
        name: the protocol's name (kept when values are overridden; see :meth:`to_dict`).
        short_side: the image's short side after resizing, in pixels.
        window: side of the square sliding window, in pixels.
        stride: step between windows, in pixels (at most ``window``: windows may overlap, never gap).
        background: ``class`` or ``threshold`` (see :data:`BACKGROUND_MODES`).
        threshold: lowest best-class score (sigmoid probability) a pixel needs to take a class; below
            it the pixel is background. Required for ``background="threshold"``, optional otherwise.
        max_long_side: the long side never passes this after resizing (mmseg's 2048).
        reference: where the values come from.
    """

    name: str
    short_side: int
    window: int
    stride: int
    background: str
    threshold: float | None = None
    max_long_side: int = 2048
    reference: str = ""

    def __post_init__(self) -> None:
        for field in ("short_side", "window", "stride", "max_long_side"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{field} must be a positive integer (got {value!r})")
        if self.stride > self.window:
            raise InputError(
                f"stride must not exceed window, or pixels between windows go unpredicted "
                f"(got stride {self.stride} and window {self.window})"
            )
        if self.max_long_side < self.short_side:
            raise InputError(
                f"max_long_side must be at least short_side (got {self.max_long_side} and {self.short_side})"
            )
        if self.background not in BACKGROUND_MODES:
            raise InputError(
                f"background must be one of {', '.join(BACKGROUND_MODES)} (got {self.background!r})"
            )
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise InputError(f"threshold must lie in [0, 1] (got {self.threshold})")
        if self.background == "threshold" and self.threshold is None:
            raise InputError("background by threshold needs a threshold (got none)")

    def with_overrides(self, **overrides: Any) -> Protocol:
        """A copy with the given values replaced; ``None`` values are skipped (an unset CLI flag).

        Raises:
            InputError: for a name not in :data:`OVERRIDABLE` or an invalid value.
        """
        unknown = sorted(set(overrides) - set(OVERRIDABLE))
        if unknown:
            raise InputError(f"cannot override {', '.join(unknown)} (overridable: {', '.join(OVERRIDABLE)})")
        changes = {key: value for key, value in overrides.items() if value is not None}
        return dataclasses.replace(self, **changes) if changes else self

    def overrides(self) -> dict[str, Any]:
        """The values that differ from the named protocol's own (empty for an unnamed one)."""
        base = PROTOCOLS.get(self.name)
        if base is None:
            return {}
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != getattr(base, field.name)
        }

    def to_dict(self) -> dict[str, Any]:
        """Every value, plus ``overrides`` (what differs from the named protocol), as plain JSON values."""
        return {**dataclasses.asdict(self), "overrides": self.overrides()}

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of an image after the protocol's resize (mmseg's keep-ratio rescale)."""
        scale = min(self.max_long_side / max(height, width), self.short_side / min(height, width))
        return int(height * scale + 0.5), int(width * scale + 0.5)

    def window_grid(self, height: int, width: int) -> tuple[int, int]:
        """(rows, columns) of sliding windows over a (height, width) image (mmseg's ``slide`` grid).

        A side no longer than ``window`` takes one window; a longer one takes enough ``stride`` steps
        for the last window to reach its end.
        """

        def steps(side: int) -> int:
            return max(math.ceil((side - self.window) / self.stride), 0) + 1

        return steps(height), steps(width)

    def num_windows(self, height: int, width: int) -> int:
        """Number of sliding windows over a (height, width) image (already resized)."""
        rows, columns = self.window_grid(height, width)
        return rows * columns


#: The named protocols.
PROTOCOLS: dict[str, Protocol] = {
    protocol.name: protocol
    for protocol in (
        Protocol(
            name="zegclip",
            short_side=512,
            window=512,
            stride=426,
            background="class",
            reference="ZegCLIP's test configuration (the MagicSeg paper's code)",
        ),
        Protocol(
            name="groupvit",
            short_side=448,
            window=448,
            stride=224,
            background="threshold",
            threshold=0.5,
            reference="text-supervised segmentation (GroupViT, TCL): short side 448, slide 448/224",
        ),
        Protocol(
            name="sclip",
            short_side=336,
            window=224,
            stride=112,
            background="threshold",
            threshold=0.1,
            reference="training-free CLIP segmentation (SCLIP, NACLIP): short side 336, slide 224/112",
        ),
    )
}


def get_protocol(name: str) -> Protocol:
    """The named protocol (one of :data:`PROTOCOLS`).

    Raises:
        InputError: for an unknown name.
    """
    if name not in PROTOCOLS:
        raise InputError(f"unknown protocol {name!r} (expected one of {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name]
