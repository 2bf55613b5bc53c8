"""What a process does with its `Placement` when it starts: size torch's thread pool, lower its CPU
priority. Ray's side of a placement (replicas, CPUs, GPUs, resources) is read where each part is
started (`jobs/launcher.py`, `jobs/run.py`, `serve/deployment.py`)."""

from __future__ import annotations

import os

from esc.config_placement import Placement


def apply(placement: Placement, default_threads: int | None = None) -> None:
    """Set torch threads to `placement.torch_threads` (else `default_threads`, if given) and raise the
    niceness of the process's threads by `placement.nice` (needs no privilege; Ray starts workers at 15,
    capped at 19)."""
    threads = placement.torch_threads or default_threads
    if threads:
        import torch

        torch.set_num_threads(threads)
    if placement.nice:
        lower_priority(placement.nice)


def lower_priority(by: int) -> None:
    """Raise the niceness of every thread of this process by `by`, up to 19. Linux keeps a niceness per
    thread and `os.nice` changes only the caller's: a Ray actor's init runs on a thread of its own, so
    the event loop and the model thread it starts later (threads inherit their starter's niceness) kept
    Ray's 15. Elsewhere (no /proc/self/task) `os.nice`, which applies to the whole process there."""
    tasks = "/proc/self/task"
    if not os.path.isdir(tasks):
        os.nice(by)
        return
    for tid in map(int, os.listdir(tasks)):
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
        except ProcessLookupError:  # the thread ended meanwhile
            continue
