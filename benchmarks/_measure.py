"""Helpers shared by the benchmarks: building models in the measured dtype on the device, timing with
device synchronisation, peak memory, and running measurements in subprocesses that stream their rows.

A worker prints each finished row as one line ``ROW <json>`` on stdout (:func:`emit_row`), so the parent
(:func:`run_worker`) keeps every row that finished even when the worker later runs out of memory, crashes
or runs past its time budget and is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
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


def run_worker(command: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> WorkerResult:
    """Run ``command`` (a worker) for at most ``timeout`` seconds; return the rows it emitted.

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
            stdout, _ = process.communicate(timeout=max(1.0, timeout))
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
