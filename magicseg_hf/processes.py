"""The end of a multi-process run (``accelerate launch``, ``torchrun``).

A process group left to the interpreter's exit can abort the process that finishes first
("terminate called without an active exception", exit -6) while another still writes its files,
and the launcher then kills the others. :func:`finish_process_group` lets every process wait for
the rest and tear the group down cleanly. Torch is imported when called, so the CLI verbs that use
it stay cheap to import.
"""

from __future__ import annotations


def finish_process_group() -> None:
    """Wait for every process of the run, then destroy the default process group (a no-op in a
    single-process run). Call it on every process after its last write, on the success path only:
    a process that failed never reaches the barrier, so the others would wait for it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
