"""The replay store: durable, bounded, versioned storage of rollout records.

Owns one SQLite database, `<path>/store.sqlite`, holding every record that producers (rollout workers,
`rlff collect`) put and consumers (the learner, exports) take out. A record is a plain dict (e.g. a wire
type's `model_dump()`) with at least `id: str`, `kind: str` ('group', 'trajectory', ...),
`policy_version: int` (the weights that produced its samples) and `created_at: float` (unix seconds);
any other JSON-like fields travel along untouched.

It knows nothing of Ray, models or record schemas beyond those four fields: a plain class (the launcher
applies `ray.remote`) whose methods are short and synchronous. Several processes may open the same
folder at once, each with its own `ReplayStore`; SQLite's locks keep them honest.

Why SQLite in WAL mode rather than append-only msgpack segments with an index: `sample` must find
the oldest fresh unconsumed records without a scan and hand each to exactly one consumer, even across
processes. With segments we would write the index, a consumed-marks log, crash recovery and compaction
ourselves; SQLite gives all of that in the stdlib, and WAL lets readers run while a writer commits.
Payloads are still msgpack (never pickle): the same bytes a segment file would hold.

Durability: `synchronous="NORMAL"` (the default, `store.synchronous`): in WAL mode a committed record
survives a crash of the process (the actor, or Ray itself): it is in the WAL file, in the OS page cache.
A power loss or kernel crash may lose the commits since the last checkpoint's fsync, but never corrupts
the database. `synchronous="FULL"` fsyncs the WAL at every commit, so a put that returned survives a
power loss too. NORMAL stays the default because FULL's cost was measured only by `bench/store_actor.py`
(0.84x NORMAL's groups/s through the actor, with fsync at 1.4 ms), not in a real run. Checkpoints (WAL
into database, with fsync) run on a background thread, so callers wait for an fsync only when sustained
writes push the WAL past 64 MiB.

Group commit: concurrent `put_many` calls (the store actor serves several at once, `actors.store.
max_concurrency`) share transactions. A call queues its validated rows and waits for the connection;
whichever call gets it next commits every queued call's rows in one transaction, one fsync under FULL,
as if the calls had run one after another in queue order, and hands each call its own statuses. So a
commit's cost is paid once per burst of puts, not once per put (`bench/store_actor.py` measures both).

Backpressure: `capacity` bounds the UNCONSUMED records. When it is reached, `put` returns 'full' and
stores nothing; the producer keeps the record and retries after consumers `sample` (or `drop_stale`
frees room). Nothing is dropped silently: too-old records are marked consumed by 'stale' and counted.
Consumed records stay on disk for export and audit; capacity does not bound them.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from actors.store_sqlite import INSERT, SCHEMA, Row, checkpoint_loop, decode, encode

STALE = "stale"  # the `consumed_by` mark of records that `drop_stale` retired; no consumer may use it


@dataclass
class _QueuedPut:
    """One `put_many` call's validated rows, waiting for a group commit to fill statuses or error."""

    rows: list[Row]
    statuses: list[str] | None = None
    error: BaseException | None = None


class ReplayStore:
    """Durable, bounded store of records in `<path>/store.sqlite`; reloads what is there on construction.

    `path`: folder, created if missing. `capacity`: most UNCONSUMED records held; `put` answers 'full'
    beyond it. `synchronous`: 'NORMAL' (survives process crashes) or 'FULL' (fsync per commit, survives
    power loss). Thread-safe (one lock around one connection; concurrent puts share commits);
    process-safe through SQLite's locks.
    """

    def __init__(
        self,
        path: str | Path,
        capacity: int = 100_000,
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        nice: int = 0,
    ) -> None:
        """`nice`: raise this process's niceness (`actors.store.nice`, where the store is an actor)."""
        if not isinstance(capacity, int) or capacity <= 0:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        if nice:
            os.nice(nice)
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.file = self.path / "store.sqlite"
        self.capacity, self.synchronous = capacity, synchronous
        self._lock = threading.Lock()  # held by whoever uses the connection
        self._queue_lock = threading.Lock()  # held only to add to or take the queue
        self._queue: list[_QueuedPut] = []
        self._put_calls = self._put_commits = 0
        # Autocommit mode (isolation_level=None): transactions are the explicit BEGIN/COMMIT below.
        self._db = sqlite3.connect(self.file, timeout=60.0, isolation_level=None, check_same_thread=False)
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise RuntimeError(f"{self.file} cannot use WAL mode (got {mode!r}); use a local disk")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(SCHEMA)
        # Checkpoints (copy the WAL into the database, then fsync) run on a background thread: inline
        # autocheckpoints made every ~200th put wait for an fsync, halving single puts/s and setting
        # sample's p99 (measured with bench/replay_store.py).
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(
            target=checkpoint_loop, args=(self.file, synchronous, self._lock, self._stop), daemon=True
        )
        self._checkpointer.start()
        weakref.finalize(self, self._stop.set)  # a store dropped without close() stops its thread too

    @contextmanager
    def _tx(self, immediate: bool) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock."""
        with self._lock, self._transaction(immediate) as db:
            yield db

    @contextmanager
    def _transaction(self, immediate: bool) -> Iterator[sqlite3.Connection]:
        """One transaction; the caller holds the lock. IMMEDIATE takes the write lock up front (no upgrade
        races)."""
        self._db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def put(self, record: dict[str, Any]) -> str:
        """Store one record durably; returns 'stored', 'duplicate' (id already held: nothing changes,
        even if the store is full) or 'full' (capacity unconsumed records held: nothing stored, retry
        later). Raises ValueError for a malformed record."""
        return self.put_many([record])[0]

    def put_many(self, records: list[dict[str, Any]]) -> list[str]:
        """Store records in one transaction; returns one `put` status per record, in order.

        Every record is validated first: one malformed record raises ValueError and stores none (of this
        call; concurrent calls are not affected). A repeated id inside the batch is 'duplicate' after its
        first occurrence. Concurrent calls may share the transaction (group commit, module docstring).
        """
        mine = _QueuedPut([encode(record) for record in records])
        with self._queue_lock:
            self._queue.append(mine)
        with self._lock:
            if mine.statuses is None and mine.error is None:  # no committer took mine while I waited
                with self._queue_lock:
                    queued, self._queue = self._queue, []
                self._commit(queued)
        if mine.error is not None:
            raise mine.error
        return mine.statuses

    def _commit(self, queued: list[_QueuedPut]) -> None:
        """Insert the queued calls' rows in one transaction, in queue order, then hand each call its
        statuses, or every call the error should the transaction fail (then none is stored). The caller
        holds the lock."""
        try:
            with self._transaction(immediate=True) as db:
                answers = [[self._insert(db, row) for row in put.rows] for put in queued]
        except BaseException as error:  # each call raises it in its own thread
            for put in queued:
                put.error = error
            return
        self._put_calls += len(queued)
        self._put_commits += 1
        for put, statuses in zip(queued, answers, strict=True):
            put.statuses = statuses

    def _insert(self, db: sqlite3.Connection, row: Row) -> str:
        if db.execute(INSERT, (*row, self.capacity)).rowcount == 1:
            return "stored"
        if db.execute("SELECT 1 FROM records WHERE id = ?", (row[0],)).fetchone():
            return "duplicate"
        return "full"

    def sample(
        self, n: int, current_version: int, max_staleness: int, consumer: str, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Take up to n unconsumed records with policy_version >= current_version - max_staleness.

        Oldest first (by created_at, then id). The records are marked consumed by `consumer` in the
        same write transaction, so no record is ever handed out twice, across threads or processes.
        Stale records at the head are skipped, not retired: call `drop_stale` when the version moves.
        """
        for name, value in (("n", n), ("max_staleness", max_staleness)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if not isinstance(consumer, str) or not consumer or consumer == STALE:
            raise ValueError(f"consumer must be a non-empty name other than {STALE!r}, got {consumer!r}")
        if n == 0:
            return []
        index, where, params = "records_fifo", "", [current_version - max_staleness]
        if kind is not None:
            index, where = "records_kind_fifo", " AND kind = ?"
            params.append(kind)
        # INDEXED BY pins the FIFO index: without statistics the planner may scan another one and sort.
        query = (
            f"SELECT id, payload FROM records INDEXED BY {index} WHERE consumed_by IS NULL"
            f" AND policy_version >= ?{where} ORDER BY created_at, id LIMIT ?"
        )
        with self._tx(immediate=True) as db:
            rows = db.execute(query, (*params, n)).fetchall()
            now = time.time()
            db.executemany(
                "UPDATE records SET consumed_by = ?, consumed_at = ? WHERE id = ?",
                [(consumer, now, rid) for rid, _ in rows],
            )
        return [decode(payload) for _, payload in rows]

    def drop_stale(self, current_version: int, max_staleness: int, kind: str | None = None) -> int:
        """Mark unconsumed records with policy_version < current_version - max_staleness (of `kind` only,
        when given) as consumed by 'stale' (freeing capacity, kept on disk and counted in `stats`);
        returns how many."""
        index, where, params = "records_fifo", "", [STALE, time.time(), current_version - max_staleness]
        if kind is not None:
            index, where = "records_kind_fifo", " AND kind = ?"
            params.append(kind)
        with self._tx(immediate=True) as db:
            cursor = db.execute(
                f"UPDATE records INDEXED BY {index} SET consumed_by = ?, consumed_at = ? "
                f"WHERE consumed_by IS NULL AND policy_version < ?{where}",
                params,
            )
            return cursor.rowcount

    def requeue(self, consumer: str, keep: list[str] | set[str]) -> int:
        """Hand back records `consumer` took but did not keep (a learner that crashed after sampling and
        before its checkpoint): they become unconsumed again, so the resumed learner samples them and
        no record is lost or used twice. Returns how many."""
        keep = set(keep)
        with self._tx(immediate=True) as db:
            taken = db.execute("SELECT id, kind FROM records WHERE consumed_by = ?", (consumer,)).fetchall()
            back = [(rid, kind) for rid, kind in taken if rid not in keep]
            db.executemany(
                "UPDATE records SET consumed_by = NULL, consumed_at = NULL WHERE id = ?",
                [(r,) for r, _ in back],
            )
            for kind, n in Counter(kind for _, kind in back).items():  # the trigger only counts consumption
                db.execute("UPDATE counts SET unconsumed = unconsumed + ? WHERE kind = ?", (n, kind))
        return len(back)

    def get(self, record_id: str) -> dict[str, Any] | None:
        """The record with this id as it was put, or None."""
        with self._lock:
            row = self._db.execute("SELECT payload FROM records WHERE id = ?", (record_id,)).fetchone()
        return None if row is None else decode(row[0])

    def get_many(self, record_ids: list[str]) -> list[dict[str, Any]]:
        """The records with these ids that the store holds, in the order asked."""
        found: dict[str, dict[str, Any]] = {}
        with self._lock:
            for start in range(0, len(record_ids), 500):  # SQLite's bound on parameters per statement
                part = record_ids[start : start + 500]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(f"SELECT id, payload FROM records WHERE id IN ({marks})", part)
                found.update((rid, decode(payload)) for rid, payload in rows)
        return [found[rid] for rid in record_ids if rid in found]

    def ids(self, consumed: bool | None = None, consumer: str | None = None) -> set[str]:
        """Ids of the records held; `consumed` filters on being consumed, `consumer` on who consumed them."""
        clauses, params = [], []
        if consumed is not None:
            clauses.append("consumed_by IS NOT NULL" if consumed else "consumed_by IS NULL")
        if consumer is not None:
            clauses.append("consumed_by = ?")
            params.append(consumer)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            return {row[0] for row in self._db.execute(f"SELECT id FROM records{where}", params)}

    def stats(self) -> dict[str, Any]:
        """Counts for dashboards: total, unconsumed, consumed (stale included), stale, by_kind
        ({kind: {'total', 'unconsumed'}}), capacity, synchronous, oldest/newest policy_version among
        UNCONSUMED records (None when none), db_bytes (database plus WAL file, bytes), and put_calls and
        put_commits: the `put`/`put_many` calls this object stored and the transactions that stored them
        (fewer under group commit)."""
        with self._tx(immediate=False) as db:
            calls, commits = self._put_calls, self._put_commits
            by_kind = {
                kind: {"total": n, "unconsumed": free}
                for kind, n, free in db.execute("SELECT kind, total, unconsumed FROM counts ORDER BY kind")
            }
            stale = db.execute("SELECT count(*) FROM records WHERE consumed_by = ?", (STALE,)).fetchone()[0]
            oldest, newest = db.execute(
                "SELECT min(policy_version), max(policy_version) FROM records INDEXED BY records_fifo "
                "WHERE consumed_by IS NULL"
            ).fetchone()
        total, unconsumed = (sum(c[key] for c in by_kind.values()) for key in ("total", "unconsumed"))
        files = (self.file, self.file.with_name(self.file.name + "-wal"))
        return {
            "total": total,
            "unconsumed": unconsumed,
            "consumed": total - unconsumed,
            "stale": stale,
            "by_kind": by_kind,
            "capacity": self.capacity,
            "synchronous": self.synchronous,
            "oldest_policy_version": oldest,
            "newest_policy_version": newest,
            "db_bytes": sum(f.stat().st_size for f in files if f.exists()),
            "put_calls": calls,
            "put_commits": commits,
        }

    def __len__(self) -> int:
        """Number of records held, consumed ones included."""
        with self._lock:
            return self._db.execute("SELECT coalesce(sum(total), 0) FROM counts").fetchone()[0]

    def iter_records(self, kind: str | None = None, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Yield every record (consumed or not) in insertion order, `batch` rows per read; records put
        meanwhile are yielded too (for export, e.g. into Ray Data)."""
        where, params = ("", []) if kind is None else (" AND kind = ?", [kind])
        last = 0
        while True:
            with self._lock:
                rows = self._db.execute(
                    f"SELECT rowid, payload FROM records WHERE rowid > ?{where} ORDER BY rowid LIMIT ?",
                    (last, *params, batch),
                ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield from (decode(payload) for _, payload in rows)

    def ready(self) -> int:
        """The process id serving this store (the launcher and tests use it to see restarts)."""
        return os.getpid()

    def close(self) -> None:
        """Close the connection; committed records stay on disk. Further calls on this object fail."""
        self._stop.set()
        self._checkpointer.join()
        with self._lock:
            self._db.close()
