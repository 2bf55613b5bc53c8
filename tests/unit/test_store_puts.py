"""CoalescedPuts: concurrent puts share store calls, each caller gets its own statuses."""

import asyncio

import pytest

from actors.store_puts import CoalescedPuts


class SlowStore:
    """A store stand-in whose `put_many` answers when the test releases it: records each call's rows;
    answers 'duplicate' for an id it has seen, 'stored' otherwise."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.seen: set[str] = set()
        self.release = asyncio.Event()
        self.fail_next: Exception | None = None

    async def put_many(self, records):
        self.calls.append([r["id"] for r in records])
        await self.release.wait()
        if any("bad" in r for r in records):  # as the store refuses a record msgpack cannot encode
            raise ValueError("record bad is malformed")
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        statuses = []
        for r in records:
            statuses.append("duplicate" if r["id"] in self.seen else "stored")
            self.seen.add(r["id"])
        return statuses


def recs(*ids):
    return [{"id": i} for i in ids]


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_lone_put_is_sent_at_once():
    async def main():
        store = SlowStore()
        puts = CoalescedPuts(store.put_many)
        task = asyncio.create_task(puts.put(recs("a", "b")))
        await settle()
        assert store.calls == [["a", "b"]]  # sent before any other put arrived, without a timer
        store.release.set()
        return await task, puts.calls

    assert asyncio.run(main()) == (["stored", "stored"], 1)


def test_puts_arriving_during_a_call_share_the_next_one_and_get_their_own_statuses():
    async def main():
        store = SlowStore()
        puts = CoalescedPuts(store.put_many)
        first = asyncio.create_task(puts.put(recs("a")))
        await settle()
        later = [asyncio.create_task(puts.put(recs(*ids))) for ids in (["b", "c"], ["a"], ["d"])]
        await settle()
        assert store.calls == [["a"]]  # the later three wait for the call in flight
        store.release.set()
        answers = [await first] + [await t for t in later]
        return store.calls, answers, puts.calls

    calls, answers, count = asyncio.run(main())
    assert calls == [["a"], ["b", "c", "a", "d"]]  # arrival order, one call for the three
    assert answers == [["stored"], ["stored", "stored"], ["duplicate"], ["stored"]]
    assert count == 2


def test_an_error_reaches_every_caller_of_that_call_and_later_puts_still_work():
    async def main():
        store = SlowStore()
        puts = CoalescedPuts(store.put_many)
        store.fail_next = ConnectionError("store actor died")
        tasks = [asyncio.create_task(puts.put(recs(i))) for i in ("a", "b")]
        await settle()
        store.release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        after = await puts.put(recs("c"))
        return results, after

    results, after = asyncio.run(main())
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    assert after == ["stored"]


def test_a_malformed_record_fails_its_own_caller_only_and_the_others_are_stored():
    async def main():
        store = SlowStore()
        puts = CoalescedPuts(store.put_many)
        first = asyncio.create_task(puts.put(recs("a")))
        await settle()
        later = [
            asyncio.create_task(puts.put(r)) for r in (recs("b"), [{"id": "x", "bad": 1}], recs("c", "d"))
        ]
        await settle()
        store.release.set()
        await settle()
        late = asyncio.create_task(puts.put(recs("e")))  # after the refusal: not held to one by one
        results = await asyncio.gather(first, *later, late, return_exceptions=True)
        return results, store.calls, await puts.put(recs("f"))

    results, calls, after = asyncio.run(main())
    assert results[:2] == [["stored"], ["stored"]] and results[3:] == [["stored", "stored"], ["stored"]]
    assert isinstance(results[2], ValueError)
    # the shared call, refused, then one call per caller, in arrival order
    assert calls == [["a"], ["b", "x", "c", "d"], ["b"], ["x"], ["c", "d"], ["e"], ["f"]]
    assert after == ["stored"]


def test_a_cancelled_caller_does_not_disturb_the_others():
    async def main():
        store = SlowStore()
        puts = CoalescedPuts(store.put_many)
        first = asyncio.create_task(puts.put(recs("a")))
        await settle()
        gone = asyncio.create_task(puts.put(recs("b")))
        kept = asyncio.create_task(puts.put(recs("c")))
        await settle()
        gone.cancel()
        store.release.set()
        return await first, await kept, store.calls

    first, kept, calls = asyncio.run(main())
    assert (first, kept) == (["stored"], ["stored"])
    assert calls == [["a"], ["b", "c"]]  # the cancelled caller's records were already queued


def test_a_store_that_answers_the_wrong_number_of_statuses_is_an_error():
    async def short(records):
        return ["stored"]

    async def main():
        return await CoalescedPuts(short).put(recs("a", "b"))

    with pytest.raises(RuntimeError, match="1 statuses for 2 rows"):
        asyncio.run(main())
