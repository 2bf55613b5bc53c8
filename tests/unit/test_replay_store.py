"""The replay store (actors/replay_store.py) on a real on-disk SQLite database in tmp_path."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time

import msgpack
import pytest

from actors import store_sqlite
from actors.replay_store import ReplayStore


def rec(rid: str, version: int = 0, created_at: float = 0.0, kind: str = "group", **extra) -> dict:
    return {"id": rid, "kind": kind, "policy_version": version, "created_at": created_at, **extra}


def test_put_statuses_stored_duplicate_full(tmp_path):
    store = ReplayStore(tmp_path, capacity=2)
    assert store.put(rec("a")) == "stored"
    assert store.put(rec("a", version=9, note="changed")) == "duplicate"
    assert store.put(rec("b")) == "stored"
    assert store.put(rec("c")) == "full"
    assert store.put(rec("a")) == "duplicate"  # a duplicate stays a duplicate even when full
    assert store.get("a") == rec("a")  # the duplicate put changed nothing
    assert store.get("c") is None
    assert len(store) == 2
    assert store.ids() == {"a", "b"}


def test_put_many_one_status_per_record_in_order(tmp_path):
    store = ReplayStore(tmp_path, capacity=3)
    store.put(rec("x"))
    statuses = store.put_many([rec("a"), rec("x"), rec("b"), rec("a"), rec("c"), rec("d")])
    assert statuses == ["stored", "duplicate", "stored", "duplicate", "full", "full"]
    assert store.ids() == {"x", "a", "b"}


def test_capacity_counts_only_unconsumed_records(tmp_path):
    store = ReplayStore(tmp_path, capacity=2)
    assert store.put_many([rec("a", created_at=1), rec("b", created_at=2), rec("c", created_at=3)]) == [
        "stored",
        "stored",
        "full",
    ]
    assert [r["id"] for r in store.sample(1, current_version=0, max_staleness=0, consumer="learner")] == ["a"]
    assert store.put(rec("c", created_at=3)) == "stored"
    assert store.put(rec("d", created_at=4)) == "full"
    stats = store.stats()
    assert (stats["total"], stats["unconsumed"], stats["consumed"], stats["capacity"]) == (3, 2, 1, 2)


def test_sample_is_fifo_and_filters_staleness(tmp_path):
    store = ReplayStore(tmp_path)
    # Two records per version 0..5; created_at is not insertion order, and v5 ties on created_at.
    created = {0: (10.0, 11.0), 1: (9.0, 12.0), 2: (8.0, 13.0), 3: (7.0, 14.0), 4: (6.0, 15.0), 5: (3.0, 3.0)}
    for version, (t1, t2) in created.items():
        store.put(rec(f"v{version}-b", version, t1))
        store.put(rec(f"v{version}-a", version, t2))
    got = store.sample(10, current_version=5, max_staleness=1, consumer="learner")
    assert [r["id"] for r in got] == [
        "v5-a",
        "v5-b",
        "v4-b",
        "v4-a",
    ]  # created_at 3, 3 (id breaks tie), 6, 15
    assert {r["policy_version"] for r in got} == {4, 5}
    assert store.sample(10, current_version=5, max_staleness=1, consumer="learner") == []
    assert store.stats()["unconsumed"] == 8


def test_sample_respects_n_and_kind(tmp_path):
    store = ReplayStore(tmp_path)
    store.put_many([rec(f"g{i}", created_at=i) for i in range(5)])
    store.put_many([rec(f"t{i}", created_at=i + 0.5, kind="trajectory") for i in range(3)])
    got = store.sample(2, current_version=0, max_staleness=0, consumer="rm", kind="trajectory")
    assert [r["id"] for r in got] == ["t0", "t1"]
    got = store.sample(3, current_version=0, max_staleness=0, consumer="policy")
    assert [r["id"] for r in got] == ["g0", "g1", "g2"]
    assert store.sample(0, current_version=0, max_staleness=0, consumer="policy") == []


def test_no_record_is_sampled_twice_across_consumers(tmp_path):
    store = ReplayStore(tmp_path)
    store.put_many([rec(f"r{i}", created_at=i) for i in range(10)])
    first = store.sample(3, current_version=0, max_staleness=0, consumer="a")
    second = store.sample(3, current_version=0, max_staleness=0, consumer="b")
    rest = store.sample(10, current_version=0, max_staleness=0, consumer="a")
    assert [r["id"] for r in first] == ["r0", "r1", "r2"]
    assert [r["id"] for r in second] == ["r3", "r4", "r5"]
    assert [r["id"] for r in rest] == ["r6", "r7", "r8", "r9"]
    assert store.sample(10, current_version=0, max_staleness=0, consumer="b") == []
    assert store.ids(consumer="a") == {"r0", "r1", "r2", "r6", "r7", "r8", "r9"}
    assert store.ids(consumer="b") == {"r3", "r4", "r5"}
    assert store.ids(consumed=False) == set()


def test_drop_stale_marks_and_counts(tmp_path):
    store = ReplayStore(tmp_path, capacity=6)
    store.put_many([rec(f"v{v}", version=v, created_at=v) for v in range(6)])
    assert store.put(rec("extra", version=5)) == "full"
    assert store.drop_stale(current_version=5, max_staleness=1) == 4
    assert store.drop_stale(current_version=5, max_staleness=1) == 0
    assert store.ids(consumer="stale") == {"v0", "v1", "v2", "v3"}
    stats = store.stats()
    assert (stats["stale"], stats["unconsumed"], stats["consumed"], stats["total"]) == (4, 2, 4, 6)
    assert (stats["oldest_policy_version"], stats["newest_policy_version"]) == (4, 5)
    assert store.put(rec("extra", version=5)) == "stored"  # stale records freed capacity
    with pytest.raises(ValueError, match="consumer"):
        store.sample(1, current_version=5, max_staleness=1, consumer="stale")


def test_reopen_sees_every_record_and_mark_and_puts_continue(tmp_path):
    store = ReplayStore(tmp_path, capacity=10)
    store.put_many([rec(f"r{i}", version=i, created_at=i, payload={"n": i}) for i in range(6)])
    store.sample(2, current_version=5, max_staleness=5, consumer="learner")
    store.drop_stale(current_version=5, max_staleness=1)
    before, stats = {i: store.get(i) for i in store.ids()}, store.stats()
    store.close()
    assert not store._checkpointer.is_alive()

    again = ReplayStore(tmp_path, capacity=10)
    assert {i: again.get(i) for i in again.ids()} == before
    assert again.ids(consumer="learner") == {"r0", "r1"}
    assert again.ids(consumer="stale") == {"r2", "r3"}
    assert again.ids(consumed=False) == {"r4", "r5"}
    per_process = ("db_bytes", "put_calls", "put_commits")
    assert {k: v for k, v in again.stats().items() if k not in per_process} == {
        k: v for k, v in stats.items() if k not in per_process
    }
    assert again.put(rec("r0")) == "duplicate"
    assert again.put(rec("r6", version=6, created_at=6)) == "stored"
    assert len(again) == 7
    assert [r["id"] for r in again.sample(5, current_version=6, max_staleness=2, consumer="x")] == [
        "r4",
        "r5",
        "r6",
    ]


def _worker(path: str, name: str, count: int, start, queue) -> None:
    """Put `count` own records and `count` shared ones (the other process puts the same ids), sampling
    as it goes; report every status, every sampled id and when the work began and ended."""
    store = ReplayStore(path, capacity=1_000_000)
    statuses, sampled = {}, []
    start.wait(timeout=60)  # both processes start putting at the same moment
    began = time.time()
    for i in range(count):
        statuses[f"{name}-{i}"] = store.put(rec(f"{name}-{i}", created_at=i))
        statuses[f"shared-{i}"] = store.put(rec(f"shared-{i}", created_at=i))
        if i % 5 == 4:
            sampled += [r["id"] for r in store.sample(4, current_version=0, max_staleness=0, consumer=name)]
    ended = time.time()
    store.close()
    queue.put((name, statuses, sampled, (began, ended)))


def test_two_processes_lose_nothing_and_hand_out_nothing_twice(tmp_path):
    count = 300
    ReplayStore(tmp_path).close()  # create the database before the race
    ctx = multiprocessing.get_context("spawn")
    queue, start = ctx.Queue(), ctx.Barrier(2)
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), n, count, start, queue)) for n in ("p1", "p2")]
    for p in procs:
        p.start()
    reports = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    results = {name: (statuses, sampled) for name, statuses, sampled, _ in reports}
    (began1, ended1), (began2, ended2) = (span for *_, span in reports)
    assert max(began1, began2) < min(ended1, ended2)  # the two processes really wrote at the same time

    store = ReplayStore(tmp_path)
    sampled1, sampled2 = results["p1"][1], results["p2"][1]
    assert len(sampled1) == len(sampled2) == count // 5 * 4  # every sample found 4 records waiting
    assert not set(sampled1) & set(sampled2)
    assert len(set(sampled1)) == len(sampled1) and len(set(sampled2)) == len(sampled2)
    assert store.ids(consumer="p1") == set(sampled1) and store.ids(consumer="p2") == set(sampled2)
    expected = {f"{n}-{i}" for n in ("p1", "p2") for i in range(count)} | {
        f"shared-{i}" for i in range(count)
    }
    assert store.ids() == expected and len(store) == 3 * count
    for i in range(count):
        pair = sorted(results[n][0][f"shared-{i}"] for n in ("p1", "p2"))
        assert pair == ["duplicate", "stored"]
        assert results["p1"][0][f"p1-{i}"] == results["p2"][0][f"p2-{i}"] == "stored"
    rest = store.sample(10_000, current_version=0, max_staleness=0, consumer="drain")
    assert len(rest) == 3 * count - len(sampled1) - len(sampled2)
    assert store.stats()["unconsumed"] == 0


def test_payload_round_trips_exactly(tmp_path):
    record = rec(
        "deep",
        version=3,
        created_at=1712345678.123456,
        context=[
            {"role": "seeker", "text": "Je suis épuisée 😔 — 我很累"},
            {"role": "counselor", "text": ""},
        ],
        candidates=[{"answer": "I hear you.", "reward": -0.1 + 0.2, "logprobs": [-1e-300, -3.5, 0.0]}],
        nested={"a": {"b": [1, 2, [3, {"c": None, "d": True}]]}, "big": 2**62, "neg": -(2**40)},
        blob=b"\x00\xff",
    )
    store = ReplayStore(tmp_path)
    store.put(record)
    assert store.get("deep") == record
    assert store.sample(1, current_version=3, max_staleness=0, consumer="c") == [record]
    assert list(store.iter_records()) == [record]


def test_iter_records_in_insertion_order_with_kind_filter(tmp_path):
    store = ReplayStore(tmp_path)
    ids = ["z", "a", "m", "b", "y"]
    store.put_many(
        [rec(r, created_at=-i, kind="trajectory" if r in {"a", "b"} else "group") for i, r in enumerate(ids)]
    )
    store.sample(2, current_version=0, max_staleness=0, consumer="c")
    assert [r["id"] for r in store.iter_records(batch=2)] == ids
    assert [r["id"] for r in store.iter_records(kind="trajectory", batch=1)] == ["a", "b"]
    assert store.stats()["by_kind"] == {
        "group": {"total": 3, "unconsumed": 2},
        "trajectory": {"total": 2, "unconsumed": 1},
    }


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"kind": "group", "policy_version": 0, "created_at": 0.0}, "'id'"),
        (rec(""), "'id'"),
        ({"id": "a", "policy_version": 0, "created_at": 0.0}, "'kind'"),
        (rec("a", kind=""), "'kind'"),
        (rec("a", version="3"), "'policy_version'"),
        (rec("a", version=1.0), "'policy_version'"),
        (rec("a", version=True), "'policy_version'"),
        ({"id": "a", "kind": "group", "policy_version": 0}, "'created_at'"),
        (rec("a", unsupported=object()), "msgpack"),
    ],
)
def test_malformed_records_are_refused_with_the_field_named(tmp_path, bad, field):
    store = ReplayStore(tmp_path)
    with pytest.raises(ValueError, match=field):
        store.put(bad)
    with pytest.raises(ValueError, match=field):
        store.put_many([rec("ok"), bad])  # one bad record stores none of the batch
    assert len(store) == 0


def test_disk_holds_msgpack_payloads_in_wal_mode(tmp_path):
    record = rec("a", version=2, created_at=5.5, candidates=[{"text": "ok", "reward": 0.5}])
    store = ReplayStore(tmp_path)
    store.put(record)
    db = sqlite3.connect(tmp_path / "store.sqlite")
    row = db.execute("SELECT kind, policy_version, created_at, consumed_by, payload FROM records").fetchone()
    assert row[:4] == ("group", 2, 5.5, None)
    assert msgpack.unpackb(row[4], raw=False) == record
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    store.close()


def test_background_checkpoints_keep_the_wal_short(tmp_path, monkeypatch):
    monkeypatch.setattr(store_sqlite, "CHECKPOINT_EVERY_S", 0.02)
    store = ReplayStore(tmp_path)
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # puts never checkpoint
    for i in range(300):  # about 5 WAL frames (pages) per commit: ~1500 frames without checkpoints
        store.put(rec(f"r{i}", created_at=i, text="x" * 2000))
    time.sleep(0.5)
    store.put(rec("last", created_at=300))
    reader = sqlite3.connect(tmp_path / "store.sqlite", isolation_level=None)
    assert reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1] < 50  # restarted at frame 0
    reader.close()
    store.close()


def test_requeue_hands_back_what_a_crashed_consumer_did_not_keep(tmp_path):
    store = ReplayStore(tmp_path, capacity=10)
    store.put_many([rec(f"r{i}", created_at=float(i)) for i in range(5)])
    taken = [r["id"] for r in store.sample(4, current_version=0, max_staleness=0, consumer="learner-r0")]
    assert taken == ["r0", "r1", "r2", "r3"] and store.stats()["unconsumed"] == 1
    # the checkpoint kept r0 and r1; r2 and r3 were sampled after it and are handed back
    assert store.requeue("learner-r0", keep={"r0", "r1"}) == 2
    assert store.stats()["unconsumed"] == 3 and store.stats()["by_kind"]["group"]["unconsumed"] == 3
    again = [r["id"] for r in store.sample(10, current_version=0, max_staleness=0, consumer="learner-r0")]
    assert again == ["r2", "r3", "r4"]
    assert store.ids(consumer="learner-r0") == {f"r{i}" for i in range(5)}
    store.close()


class _QueueLockThatCounts:
    """Stands in for a store's queue lock; every release is counted, so a test can wait until each
    caller it started has queued its rows (without sleeping)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.releases = threading.Semaphore(0)

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc) -> None:
        self._lock.release()
        self.releases.release()


def _call_put_many(store: ReplayStore, records: list, results: dict, key) -> threading.Thread:
    def call() -> None:
        try:
            results[key] = store.put_many(records)
        except Exception as error:
            results[key] = error

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def test_concurrent_put_many_calls_share_one_commit_with_statuses_per_caller(tmp_path):
    store = ReplayStore(tmp_path, capacity=5)
    assert store.put(rec("old")) == "stored"
    store._queue_lock = counting = _QueueLockThatCounts()
    calls = {
        0: [rec("g0"), rec("g1")],
        1: [rec("g1"), rec("g2")],  # g1 was queued first by call 0
        2: [rec("g3"), rec("bad", version="1")],  # malformed: only this call fails, before it queues
        3: [rec("old"), rec("g4")],  # g4 makes 5 unconsumed records: capacity
        4: [rec("g5")],
        5: [rec("g0")],  # a duplicate stays a duplicate when the store is full
    }
    results: dict = {}
    threads = []
    with store._lock:  # a commit in progress: every call below queues behind it, in this order
        for key, records in calls.items():
            threads.append(_call_put_many(store, records, results, key))
            if key == 2:
                threads[-1].join(timeout=30)
            else:
                assert counting.releases.acquire(timeout=30), f"call {key} did not queue"
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert isinstance(results.pop(2), ValueError)
    assert results == {
        0: ["stored", "stored"],
        1: ["duplicate", "stored"],
        3: ["duplicate", "stored"],
        4: ["full"],
        5: ["duplicate"],
    }
    assert store.ids() == {"old", "g0", "g1", "g2", "g4"}
    stats = store.stats()
    assert (stats["put_calls"], stats["put_commits"]) == (6, 2)  # "old" alone, then the 5 queued calls
    store.close()


def test_a_failed_group_commit_fails_every_call_in_it_and_stores_none(tmp_path, monkeypatch):
    store = ReplayStore(tmp_path)
    insert = store._insert

    def insert_or_fail(db, row):
        if row[0] == "boom":
            raise sqlite3.OperationalError("disk I/O error")
        return insert(db, row)

    monkeypatch.setattr(store, "_insert", insert_or_fail)
    store._queue_lock = counting = _QueueLockThatCounts()
    results: dict = {}
    with store._lock:
        threads = []
        for key, rid in enumerate(["a", "boom", "b"]):
            threads.append(_call_put_many(store, [rec(rid)], results, key))
            assert counting.releases.acquire(timeout=30)
    for thread in threads:
        thread.join(timeout=30)
    assert all(isinstance(results[key], sqlite3.OperationalError) for key in range(3))
    assert len(store) == 0
    assert store.put_many([rec("a"), rec("b")]) == ["stored", "stored"]  # the store goes on
    store.close()


def test_many_threads_putting_overlapping_ids_store_each_exactly_once(tmp_path):
    store = ReplayStore(tmp_path, capacity=10_000, synchronous="FULL")
    threads_n, per_thread = 8, 40
    start = threading.Barrier(threads_n)
    statuses: dict[int, list[tuple[str, str]]] = {}

    def producer(t: int) -> None:
        start.wait(timeout=30)
        # every id is put by two threads: t's own half and its neighbour's
        ids = [f"r{(t + k % 2) % threads_n}-{k // 2}" for k in range(per_thread)]
        statuses[t] = [(rid, store.put_many([rec(rid, text="x" * 2000)])[0]) for rid in ids]

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    by_id: dict[str, list[str]] = {}
    for pairs in statuses.values():
        for rid, status in pairs:
            by_id.setdefault(rid, []).append(status)
    assert len(by_id) == threads_n * per_thread // 2
    assert all(sorted(s) == ["duplicate", "stored"] for s in by_id.values())
    assert store.ids() == set(by_id) and len(store) == len(by_id)
    stats = store.stats()
    assert stats["put_calls"] == threads_n * per_thread and stats["put_commits"] <= stats["put_calls"]
    store.close()
