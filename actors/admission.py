"""StalenessGate actor: admission control that bounds how far behind the learner a rollout may finish.

The AReaL rule. With learner version `v`, batch size `B` (groups per update) and bound `eta`
(`rollout.max_staleness`), a worker may start a new candidate group only while

    accepted + running + 1 <= (eta + v + 1) * B

where `accepted` counts groups the store has taken and `running` counts groups being generated, and,
with `rollout.max_generating`, only while `running + 1 <= max_generating`. On a machine whose cores
the rollouts share, generating two batches at once delays the first: the learner waits for a batch
that finished later than it would alone. With the cap set to one batch, the next batch is generated
while the learner trains on the current one. The
learner consumes B groups per version, so at most (eta + 1) * B groups can exist that the learner has
not yet reached: a group started now is consumed by version v + eta at the latest. What the gate
cannot prevent (a slow group that finishes late) the store's staleness filter and the loss's
truncated importance weights handle.

It owns only counters. Workers `acquire` before generating and `release` when their group is stored (or
was a duplicate, or failed); the learner calls `set_version` after each publish, and `retire` for stored
groups the store dropped as too stale to train on: the rule counts every accepted group as one the
learner will consume, so each dropped group would otherwise hold a place for good (after a run started on
an offline collection, enough to refuse every new group while the learner waits for one). Leases are
keyed by (worker, group id), so a retried call does not count twice, and a restarted worker calls
`forget` for its own leases before its first work so a crash does not leak capacity. Each call names the
worker's process: once a new process of a worker has called `forget`, an `acquire` of an older process
that was still waiting here (its caller died with it) is refused when it wakes. Admitted, it would hold a
lease that nobody releases; seen on a two-node cluster, where two such leases stopped every admission. It
knows nothing of models or records; the offline `rlff collect` phase runs without it (the policy does not
move there).
"""

from __future__ import annotations

import asyncio
import os


def admits(
    accepted: int,
    running: int,
    version: int,
    max_staleness: int,
    batch_size: int,
    max_running: int | None = None,
) -> bool:
    """The AReaL admission rule, plus at most `max_running` groups generating at once: may one more
    group start now?"""
    if max_running is not None and running + 1 > max_running:
        return False
    return accepted + running + 1 <= (max_staleness + version + 1) * batch_size


class StalenessGate:
    def __init__(
        self,
        batch_size: int,
        max_staleness: int,
        accepted: int = 0,
        version: int = 0,
        max_running: int | None = None,
    ):
        """`accepted`: unconsumed groups already in the store; `version`: the learner's (see `rebase`);
        `max_running`: most groups generating at once (None: only the staleness rule)."""
        if batch_size <= 0 or max_staleness < 0 or accepted < 0 or version < 0:
            raise ValueError("batch_size must be positive; max_staleness, accepted and version non-negative")
        self.batch_size, self.max_staleness, self.max_running = batch_size, max_staleness, max_running
        self.accepted, self.version = accepted, version
        self.leases: set[tuple[str, str]] = set()
        self.processes: dict[str, str] = {}  # worker -> its current process (the last to `forget`)
        self.waits = 0  # acquire calls that had to wait
        self.stopping = False
        self.learner_held = False  # see `hold_learner`
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:  # created on the actor's event loop, at first use
            self._changed = asyncio.Condition()
        return self._changed

    async def acquire(self, worker: str, group: str, process: str = "") -> int:
        """Wait until the rule admits one more group, then hold a lease; returns the learner version
        at admission, or -1 once the run is stopping or `process` is no longer `worker`'s current one
        (no lease: start nothing). Idempotent: a lease already held returns at once."""
        if (worker, group) in self.leases:
            return self.version
        changed = self._condition()
        async with changed:
            if not self._admits():
                self.waits += 1
            await changed.wait_for(lambda: self.stopping or self._replaced(worker, process) or self._admits())
            if self.stopping or self._replaced(worker, process):
                return -1
            self.leases.add((worker, group))
        return self.version

    def _replaced(self, worker: str, process: str) -> bool:
        return self.processes.get(worker, process) != process

    async def stop(self) -> None:
        """The run is ending (Ctrl-C or the last update): refuse new work, wake every waiter."""
        changed = self._condition()
        async with changed:
            self.stopping = True
            changed.notify_all()

    def stopped(self) -> bool:
        return self.stopping

    async def hold_learner(self, held: bool) -> None:
        """Whether the learner waits before it loads its models: the driver holds it while the run's
        first held-out point and evaluation run, so that Ray Train can start its workers meanwhile."""
        changed = self._condition()
        async with changed:
            self.learner_held = held
            changed.notify_all()

    async def learner_may_start(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` while the learner is held; True once it is not (or the run stops)."""
        changed = self._condition()
        async with changed:
            try:
                await asyncio.wait_for(
                    changed.wait_for(lambda: self.stopping or not self.learner_held), timeout_s
                )
            except asyncio.TimeoutError:
                return False
        return True

    def _admits(self) -> bool:
        return admits(
            self.accepted,
            len(self.leases),
            self.version,
            self.max_staleness,
            self.batch_size,
            self.max_running,
        )

    async def release(self, worker: str, group: str, accepted: bool) -> None:
        """End a lease; `accepted` when the store took the group (a new record)."""
        changed = self._condition()
        async with changed:
            if (worker, group) in self.leases:
                self.leases.discard((worker, group))
                self.accepted += int(accepted)
            changed.notify_all()

    async def forget(self, worker: str, process: str = "") -> int:
        """Drop every lease of `worker` (it restarted) and make `process` its current one: the waiting
        `acquire` calls of its older processes are refused. Returns how many leases were dropped."""
        changed = self._condition()
        async with changed:
            self.processes[worker] = process
            mine = {lease for lease in self.leases if lease[0] == worker}
            self.leases -= mine
            changed.notify_all()
        return len(mine)

    async def set_version(self, version: int) -> None:
        """The learner published `version`; admits more work."""
        changed = self._condition()
        async with changed:
            self.version = max(self.version, version)
            changed.notify_all()

    async def retire(self, count: int) -> None:
        """`count` accepted groups will never be consumed (the store dropped them as stale): they stop
        counting against the rule."""
        changed = self._condition()
        async with changed:
            self.accepted = max(0, self.accepted - count)
            changed.notify_all()

    async def rebase(self, version: int, unconsumed: int) -> None:
        """A (resumed) learner starts at `version` with `unconsumed` fresh groups waiting in the store:
        count as if every earlier version consumed exactly one batch, so the rule stays meaningful
        whatever the store held before (offline collections, stale drops)."""
        changed = self._condition()
        async with changed:
            self.version = version
            self.accepted = version * self.batch_size + unconsumed
            changed.notify_all()

    def state(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "running": len(self.leases),
            "version": self.version,
            "limit": (self.max_staleness + self.version + 1) * self.batch_size,
            "waits": self.waits,
        }

    def ready(self) -> int:
        return os.getpid()
