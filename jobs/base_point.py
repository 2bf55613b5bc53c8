"""`rlff train --stage heldout`: the version-0 held-out point of `rlff run`, ahead of the run.

The point is the starting policy (the cold-start SFT counselor) answering the run's held-out contexts
with the run's seeds, scored by the run's reward model (`jobs.heldout`). It depends on nothing the run
makes, so `make run` computes it here, in process, as soon as the counselor's SFT is done, and saves it
where the run looks for it (`jobs.heldout_cache`, runs/<name>/heldout_base): the run then records it at
once instead of spending minutes of decoding before its first update.

`--beside PID`: the process that trains beside this one (in `make run`, the reward model and then the
seeker's SFT, on the other half of the cores). This stage decodes on its own threads while that process
runs and on every core once it has exited, and scores only after it has exited, with the reward model
it left (which must then be current: `jobs.train_rm.is_trained`). Nothing to do when the saved point
is current.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from esc.backends import BackendPool
from esc.config import RunConfig
from esc.learning import point_estimates
from jobs import UsageError
from jobs.heldout import Scorer, heldout_contexts, samples_per_context
from jobs.heldout_cache import BaseCache
from jobs.report import base_replies
from jobs.train_rm import is_trained
from jobs.train_sft import cold_start


def when_gone(pid: int, then: Callable[[], None]) -> threading.Thread:
    """Call `then` in a daemon thread once process `pid` has exited (at once if there is none). Waits
    on a pidfd, so it works for a process that is not this one's child, without polling."""

    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
        except OSError:  # no such process (or none this process may watch): nothing to wait for
            then()
            return
        try:
            select.select([fd], [], [])  # readable once the process has exited
        finally:
            os.close(fd)
        then()

    thread = threading.Thread(target=watch, name=f"when-{pid}-exits", daemon=True)
    thread.start()
    return thread


def run_base_point(config: RunConfig, beside: int | None = None) -> int:
    config = cold_start(config.absolute(), roles=("counselor",))
    contexts = heldout_contexts(config)
    rm_dir = config.run_dir() / "reward_model"
    ids = [c.id for c in contexts]
    saved, trained = BaseCache(config, rm_dir), is_trained(config, rm_dir)
    if trained and saved.load(ids) is not None:
        print(f"held-out point v0 in {saved.folder} is up to date; not generating it")
        return 0
    if beside is None and not trained:
        require_reward_model(config, rm_dir)  # before minutes of decoding
    started = time.perf_counter()
    replies = asyncio.run(_generate(config, contexts, beside))
    generated = time.perf_counter() - started
    require_reward_model(config, rm_dir)
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # alone now: score on every core
    rows = Scorer(config, rm_dir).rows(contexts, replies)
    cache = BaseCache(config, rm_dir)  # the reward model's fingerprint as it is now
    cache.save(rows)
    estimates = point_estimates(rows, seed=config.seed)
    reward, formatted = estimates["reward"], estimates["format_rate"]
    print(
        f"held-out point v0: {len(rows)} contexts x {samples_per_context(config)} samples in"
        f" {time.perf_counter() - started:.0f} s (generation {generated:.0f} s); reward {reward.value:.3f}"
        f" [{reward.lo:.3f}, {reward.hi:.3f}], format {formatted.value:.3f}; saved to {cache.folder}",
        flush=True,
    )
    return 0


def require_reward_model(config: RunConfig, rm_dir: Path) -> None:
    if not is_trained(config, rm_dir):
        raise UsageError(
            f"no reward model for these settings in {rm_dir}; train it with `rlff train --stage rm`"
            " (same --config) before the held-out point"
        )


async def _generate(config: RunConfig, contexts: list, beside: int | None) -> list:
    """The replies, decoded on this process's threads while `beside` runs and on every core after; returns
    once both the replies are done and `beside` has exited."""
    pool = BackendPool(seed=config.seed)
    backend = pool.get(config.counselor)
    alone = threading.Event()

    def widen() -> None:
        try:
            if hasattr(backend, "set_threads"):
                with contextlib.suppress(RuntimeError):  # the backend already closed: nothing to widen
                    backend.set_threads(len(os.sched_getaffinity(0)))
        finally:
            alone.set()

    if beside is None:
        widen()
    else:
        when_gone(beside, widen)
    try:
        replies = await base_replies(config, contexts, pool)
    finally:
        await pool.close()
    if not alone.is_set():
        print(f"held-out point v0: generated; waiting for process {beside} to finish", flush=True)
        await asyncio.to_thread(alone.wait)
    return replies
