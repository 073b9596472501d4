"""Helpers shared by the benchmarks: building models in the measured dtype on the device, timing with
device synchronisation, peak memory, and running measurements in subprocesses that stream their rows.

Peak memory comes in two forms: the growth over a window of code (:func:`measuring_peak_memory`:
``torch.cuda.max_memory_allocated`` on CUDA, the process's peak RSS on a CPU), and the peak RSS of a
whole process since it started (:func:`process_peak_rss_bytes`), which a fresh worker reports of itself.

A worker prints each finished row as one line ``ROW <json>`` on stdout (:func:`emit_row`), so the parent
(:func:`run_worker`) keeps every row that finished even when the worker later runs out of memory, crashes
or runs past its time budget and is killed.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

ROW_PREFIX = "ROW "

#: Text of an out-of-memory failure in a worker's stderr (torch's CUDA allocator, the CPU allocator).
OUT_OF_MEMORY_MARKERS = ("OutOfMemoryError", "CUDA out of memory", "DefaultCPUAllocator: can't allocate memory")


@contextlib.contextmanager
def building_in(device: str, dtype: Any) -> Iterator[None]:
    """Create every tensor of the block on ``device`` in ``dtype`` (torch's default device and dtype).

    Modules constructed inside draw their random weights there directly: no float32 copy is made
    first (a float32 FLUX.1 would be ~48 GB before any conversion).
    """
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def synchronize(device: str) -> None:
    """Wait for the device's queued work (a no-op on a CPU)."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak_memory(device: str) -> None:
    """Start a new peak-memory window on a CUDA device."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(device: str) -> float | None:
    """Peak allocated device memory since the last reset, in GiB (None on a CPU)."""
    import torch

    if str(device).startswith("cuda"):
        return round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return None


@dataclass
class PeakMemory:
    """Peak memory growth over one :func:`measuring_peak_memory` window (filled in when the window closes)."""

    peak_bytes: int = 0
    #: What was read: ``cuda max_memory_allocated``, ``VmHWM growth`` or ``ru_maxrss growth``.
    measure: str = ""
    #: Whether the peak counter was reset at the window's start (always on CUDA; on a CPU where Linux allows).
    reset: bool = False

    @property
    def gib(self) -> float:
        """The growth in GiB."""
        return self.peak_bytes / 2**30


def _ru_maxrss_bytes() -> int:
    """``ru_maxrss`` of this process in bytes (Linux reports KiB): its peak RSS since it started."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def process_peak_rss_bytes() -> int:
    """Peak RSS of this whole process since it started (``ru_maxrss``, never reset), in bytes.

    A fresh worker process reports it of itself: the memory a run costs, the interpreter and imports included.
    """
    return _ru_maxrss_bytes()


def _reset_peak_rss() -> bool:
    """Return freed heap to the OS (glibc ``malloc_trim``), then reset the peak RSS to the current RSS.

    Without the trim, pages freed earlier (model build) but kept by the allocator would absorb part of the
    measured allocations and hide them from the growth. False where the reset is not possible (not Linux >= 4.0).
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> tuple[int, str]:
    """The process's peak RSS in bytes and where it was read.

    ``VmHWM`` of ``/proc/self/status`` where Linux has it: the counter ``ru_maxrss`` reads, without
    ``ru_maxrss``'s maximum over the peaks recorded when a thread exits (thread pools exit after a model build,
    so ``ru_maxrss`` may keep the build's peak through the reset); else ``ru_maxrss`` (KiB on Linux).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024, "VmHWM"
    except OSError:
        pass
    return _ru_maxrss_bytes(), "ru_maxrss"


@contextlib.contextmanager
def measuring_peak_memory(device: str) -> Iterator[PeakMemory]:
    """Measure the peak memory growth of the block: the :class:`PeakMemory` yielded is filled in at its end.

    On CUDA: ``torch.cuda.max_memory_allocated`` above the memory allocated at the start (peak statistics
    reset there, the queue drained at both ends). On a CPU: the growth of the process's peak RSS across the
    block (``VmHWM``, reset to the current RSS at the start through ``/proc/self/clear_refs`` after returning
    freed heap to the OS; ``ru_maxrss`` where there is no ``/proc``). Garbage is collected first.
    """
    result = PeakMemory()
    gc.collect()
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        result.measure, result.reset = "cuda max_memory_allocated", True
        yield result
        torch.cuda.synchronize()
        result.peak_bytes = int(torch.cuda.max_memory_allocated() - before)
        return
    result.reset = _reset_peak_rss()
    before, source = _peak_rss_bytes()
    result.measure = f"{source} growth"
    yield result
    result.peak_bytes = int(_peak_rss_bytes()[0] - before)


def seconds(fn: Callable[[], Any], device: str) -> float:
    """Wall time of one call of ``fn``, the device's queue drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], Any], repeats: int, device: str) -> float:
    """Median of ``repeats`` timed calls of ``fn``."""
    return statistics.median(seconds(fn, device) for _ in range(max(1, repeats)))


def matmul_tflops(device: str, dtype: Any = None, size: int = 8192, repeats: int = 50) -> float:
    """Measured dense matmul rate (TFLOP/s) of ``device`` in ``dtype`` (bf16 by default): the achievable
    peak the other figures are held against."""
    import torch

    dtype = dtype or torch.bfloat16
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    elapsed = seconds(lambda: [a @ b for _ in range(repeats)], device)
    return 2 * size**3 * repeats / elapsed / 1e12


def is_out_of_memory(error: BaseException | str) -> bool:
    """Whether an exception (or a worker's stderr) is an out-of-memory failure."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return any(marker in text for marker in OUT_OF_MEMORY_MARKERS)


def emit_row(row: dict[str, Any]) -> None:
    """Hand one finished row to the parent process (a worker's stdout line)."""
    sys.stdout.write(ROW_PREFIX + json.dumps(row, default=str) + "\n")
    sys.stdout.flush()


@dataclass
class WorkerResult:
    """What came back from one worker process."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    returncode: int | None = None
    timed_out: bool = False
    seconds: float = 0.0
    stderr_tail: str = ""

    @property
    def error(self) -> str | None:
        """None when the worker finished cleanly, else a one-line reason (``out of memory``, ``time budget``...)."""
        if self.timed_out:
            return "stopped: time budget spent"
        if self.returncode == 0:
            return None
        if is_out_of_memory(self.stderr_tail):
            return "out of memory"
        lines = [line for line in self.stderr_tail.strip().splitlines() if line.strip()]
        return f"exit {self.returncode}: {lines[-1][:300] if lines else 'no message'}"


def run_worker(command: Sequence[str], timeout: float | None, env: dict[str, str] | None = None) -> WorkerResult:
    """Run ``command`` (a worker) for at most ``timeout`` seconds (None: no limit); return the rows it emitted.

    The worker runs in its own process group, killed whole at the deadline; its stderr goes to a
    temporary file (no pipe to fill up) whose tail is kept for the error message.
    """
    result = WorkerResult()
    start = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as stderr:
        process = subprocess.Popen(
            list(command), stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, start_new_session=True
        )
        assert process.stdout is not None
        try:
            stdout, _ = process.communicate(timeout=None if timeout is None else max(1.0, timeout))
        except subprocess.TimeoutExpired:
            result.timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            stdout, _ = process.communicate()
        result.returncode = process.returncode
        stderr.seek(0)
        result.stderr_tail = stderr.read()[-6000:]
    result.seconds = time.perf_counter() - start
    for line in (stdout or "").splitlines():
        if line.startswith(ROW_PREFIX):
            with contextlib.suppress(json.JSONDecodeError):
                result.rows.append(json.loads(line[len(ROW_PREFIX):]))
    return result
