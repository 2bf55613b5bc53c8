"""The AReaL admission rule and the StalenessGate that applies it (in-process, on asyncio)."""

import asyncio

import pytest

from actors.admission import StalenessGate, admits


def test_rule_by_hand():
    # B = 4, eta = 1, version 0: limit (1 + 0 + 1) * 4 = 8 groups accepted or running
    assert admits(accepted=5, running=2, version=0, max_staleness=1, batch_size=4)  # 5 + 2 + 1 = 8
    assert not admits(accepted=5, running=3, version=0, max_staleness=1, batch_size=4)  # 9 > 8
    # one learner version later the limit is 12
    assert admits(accepted=5, running=6, version=1, max_staleness=1, batch_size=4)  # 12 <= 12
    # eta = 0 is fully synchronous: one batch per version
    assert not admits(accepted=4, running=0, version=0, max_staleness=0, batch_size=4)


def test_generating_cap_by_hand():
    # B = 2, eta = 1: the staleness rule alone admits a 4th running group; a cap of 2 does not
    assert admits(accepted=0, running=3, version=0, max_staleness=1, batch_size=2)
    assert not admits(accepted=0, running=2, version=0, max_staleness=1, batch_size=2, max_running=2)
    # with one batch done (accepted 2) the next batch may start while the learner trains on it
    assert admits(accepted=2, running=1, version=0, max_staleness=1, batch_size=2, max_running=2)
    # the cap never admits what the staleness rule refuses
    assert not admits(accepted=4, running=0, version=0, max_staleness=1, batch_size=2, max_running=2)


def test_gate_with_a_cap_starts_the_next_batch_when_one_finishes():
    async def scenario():
        gate = StalenessGate(batch_size=2, max_staleness=1, max_running=2)  # staleness limit 4
        await gate.acquire("w", "a")
        await gate.acquire("w", "b")
        third = asyncio.create_task(gate.acquire("w", "c"))
        await asyncio.sleep(0)
        assert not third.done()  # the staleness rule would admit it; the cap does not
        await gate.release("w", "a", accepted=True)
        assert await asyncio.wait_for(third, 5) == 0  # no learner step needed
        assert gate.state()["running"] == 2

    asyncio.run(scenario())


def test_gate_blocks_until_the_learner_moves():
    async def scenario():
        gate = StalenessGate(batch_size=2, max_staleness=0)  # limit 2 at version 0
        await gate.acquire("w", "a")
        await gate.acquire("w", "b")
        third = asyncio.create_task(gate.acquire("w", "c"))
        await asyncio.sleep(0)  # let it reach the wait
        assert not third.done() and gate.state()["running"] == 2
        await gate.release("w", "a", accepted=True)
        await asyncio.sleep(0)
        assert not third.done()  # accepted + running = 1 + 1, one more would be 3 > 2
        await gate.set_version(1)  # limit 4
        assert await asyncio.wait_for(third, 5) == 1
        assert gate.state() == {"accepted": 1, "running": 2, "version": 1, "limit": 4, "waits": 1}

    asyncio.run(scenario())


def test_leases_are_idempotent_and_forgotten_per_worker():
    async def scenario():
        gate = StalenessGate(batch_size=10, max_staleness=0, accepted=3)
        await gate.acquire("w0", "a")
        await gate.acquire("w0", "a")  # a retried call holds one lease, not two
        await gate.acquire("w1", "b")
        assert gate.state()["running"] == 2
        assert await gate.forget("w0") == 1
        await gate.release("w0", "a", accepted=True)  # a lease it no longer holds changes nothing
        assert gate.state()["running"] == 1 and gate.state()["accepted"] == 3
        await gate.release("w1", "b", accepted=False)
        assert gate.state()["running"] == 0 and gate.state()["accepted"] == 3

    asyncio.run(scenario())


def test_a_dead_process_s_waiting_acquire_is_refused_once_its_worker_restarted():
    """What stalled a two-node run: the old process's acquires waited in the gate when its node died;
    the retried work in the new process asked for the same groups; the next version admitted the old
    calls first, and their leases (no one left to release them) kept the new calls waiting forever."""

    async def scenario():
        gate = StalenessGate(batch_size=2, max_staleness=1, accepted=8, version=2)  # limit 8: full
        assert await gate.forget("w", "old") == 0
        old = [asyncio.create_task(gate.acquire("w", g, "old")) for g in ("g9", "g10")]
        await asyncio.sleep(0)  # both reach the gate and wait
        assert gate.state()["waits"] == 2 and not any(t.done() for t in old)
        await gate.forget("w", "new")  # the restarted process, before its first work
        new = [asyncio.create_task(gate.acquire("w", g, "new")) for g in ("g9", "g10")]
        await asyncio.sleep(0)
        await gate.set_version(3)  # limit 10: room for two
        assert [await asyncio.wait_for(t, 5) for t in old] == [-1, -1]
        assert [await asyncio.wait_for(t, 5) for t in new] == [3, 3]
        assert gate.state()["running"] == 2
        for g in ("g9", "g10"):
            await gate.release("w", g, accepted=True)
        assert gate.state()["running"] == 0 and gate.state()["accepted"] == 10
        assert await gate.acquire("w", "g11", "old") == -1  # a late call of the old process, too

    asyncio.run(scenario())


def test_version_never_goes_back_and_bad_arguments_are_refused():
    async def scenario():
        gate = StalenessGate(batch_size=1, max_staleness=0, version=3)
        await gate.set_version(2)
        assert gate.state()["version"] == 3

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="batch_size must be positive"):
        StalenessGate(batch_size=0, max_staleness=1)


def test_stop_wakes_waiters_and_refuses_new_work():
    async def scenario():
        gate = StalenessGate(batch_size=1, max_staleness=0)
        await gate.acquire("w", "a")
        waiting = asyncio.create_task(gate.acquire("w", "b"))
        await asyncio.sleep(0)
        assert not waiting.done()
        await gate.stop()
        assert await asyncio.wait_for(waiting, 5) == -1
        assert await gate.acquire("w", "c") == -1 and gate.state()["running"] == 1 and gate.stopped()

    asyncio.run(scenario())


def test_rebase_counts_one_batch_per_earlier_version():
    async def scenario():
        gate = StalenessGate(batch_size=4, max_staleness=1, accepted=40)  # e.g. an offline collection
        await gate.rebase(version=3, unconsumed=2)  # accepted = 3 * 4 + 2 = 14, limit (1 + 3 + 1) * 4 = 20
        assert gate.state()["accepted"] == 14 and gate.state()["limit"] == 20

    asyncio.run(scenario())


def test_groups_dropped_as_stale_stop_counting_and_waiting_workers_start():
    async def scenario():
        # a run started on an offline collection of 18 groups: B = 2, eta = 1
        gate = StalenessGate(batch_size=2, max_staleness=1)
        await gate.rebase(version=0, unconsumed=18)
        await gate.set_version(2)  # the learner took 2 groups at versions 0 and 1; 14 are now stale
        waiting = asyncio.create_task(gate.acquire("w", "a"))
        await asyncio.sleep(0)
        assert not waiting.done()  # 18 + 0 + 1 > (1 + 2 + 1) * 2: refused while the learner waits
        await gate.retire(14)  # the store dropped them
        assert await asyncio.wait_for(waiting, 5) == 2
        assert gate.state()["accepted"] == 4  # the 4 consumed: one batch a version, as the rule counts
        await gate.retire(100)
        assert gate.state()["accepted"] == 0  # never below nothing

    asyncio.run(scenario())


def test_a_held_learner_waits_until_released_or_the_run_stops():
    async def scenario():
        gate = StalenessGate(batch_size=1, max_staleness=0)
        assert await gate.learner_may_start(0.01)  # not held: at once
        await gate.hold_learner(True)
        assert not await gate.learner_may_start(0.01)  # held: False after the timeout
        waiting = asyncio.create_task(gate.learner_may_start(30))
        await asyncio.sleep(0)
        assert not waiting.done()
        await gate.hold_learner(False)
        assert await asyncio.wait_for(waiting, 5)
        await gate.hold_learner(True)
        waiting = asyncio.create_task(gate.learner_may_start(30))
        await asyncio.sleep(0)
        await gate.stop()  # a run stopped while the first points run: the learner starts, and sees it
        assert await asyncio.wait_for(waiting, 5) and gate.state()["running"] == 0

    asyncio.run(scenario())
