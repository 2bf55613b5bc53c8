"""What a process does with its `Placement` when it starts: size torch's thread pool, lower its CPU
priority. Ray's side of a placement (replicas, CPUs, GPUs, resources) is read where each part is
started (`jobs/launcher.py`, `jobs/run.py`, `serve/deployment.py`)."""

from __future__ import annotations

import os

from esc.config_placement import Placement


def apply(placement: Placement, default_threads: int | None = None) -> None:
    """Set torch threads to `placement.torch_threads` (else `default_threads`, if given) and raise the
    process's niceness by `placement.nice` (needs no privilege; Ray starts workers at 15, capped at 19)."""
    threads = placement.torch_threads or default_threads
    if threads:
        import torch

        torch.set_num_threads(threads)
    if placement.nice:
        os.nice(placement.nice)
