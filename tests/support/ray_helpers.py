"""Helpers for tests that crash actors on a real Ray instance."""

from __future__ import annotations

import time

import ray

RESTART_TIMEOUT_S = 120


def wait_for_new_process(actor, old_pid: int) -> None:
    """Block until `actor.ready()` answers from a process other than `old_pid`.

    `ray.kill(..., no_restart=False)` returns before the actor is gone, so a call made right after it
    can still reach the old process; tests that check what a restarted actor reloads wait here first.
    """
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while ray.get(actor.ready.remote(), timeout=RESTART_TIMEOUT_S) == old_pid:
        assert time.monotonic() < deadline, "the actor was not restarted"
        time.sleep(0.1)  # polling the restart Ray is doing; there is no event to wait on
