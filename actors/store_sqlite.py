"""The replay store's SQLite layer (`actors/replay_store.py` holds the store itself): the schema, the row
each record becomes, and the thread that checkpoints the WAL."""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path
from typing import Any

import msgpack

CHECKPOINT_EVERY_S = 0.25  # how often the background thread copies the WAL into the database
WAL_RESTART_FRAMES = 16384  # a WAL longer than this (64 MiB) is restarted from frame 0, not only copied
Row = tuple[str, str, int, float, bytes]  # id, kind, policy_version, created_at, msgpack payload


# The partial indexes hold only unconsumed records in FIFO order, with policy_version and the (NULL)
# consumed_by, so staleness filters read the index, never the 2 KB rows. Per-kind counts kept by
# triggers let `put` check capacity and `stats` count without a scan. Insertion order is the implicit
# rowid (the store never deletes rows or runs VACUUM).
SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    policy_version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    consumed_by TEXT,
    consumed_at REAL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_fifo ON records (created_at, id, policy_version, consumed_by)
    WHERE consumed_by IS NULL;
CREATE INDEX IF NOT EXISTS records_kind_fifo ON records (kind, created_at, id, policy_version, consumed_by)
    WHERE consumed_by IS NULL;
CREATE INDEX IF NOT EXISTS records_consumer ON records (consumed_by) WHERE consumed_by IS NOT NULL;
CREATE TABLE IF NOT EXISTS counts (
    kind TEXT PRIMARY KEY, total INTEGER NOT NULL, unconsumed INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS records_insert AFTER INSERT ON records BEGIN
    INSERT INTO counts (kind, total, unconsumed) VALUES (NEW.kind, 1, 1)
        ON CONFLICT (kind) DO UPDATE SET total = total + 1, unconsumed = unconsumed + 1;
END;
CREATE TRIGGER IF NOT EXISTS records_consume AFTER UPDATE OF consumed_by ON records
WHEN OLD.consumed_by IS NULL AND NEW.consumed_by IS NOT NULL BEGIN
    UPDATE counts SET unconsumed = unconsumed - 1 WHERE kind = NEW.kind;
END;
COMMIT;
"""


# One statement per record in the common case: it inserts only while unconsumed < capacity and only a
# new id; when it inserts nothing, a second look tells 'duplicate' from 'full'.
INSERT = (
    "INSERT OR IGNORE INTO records (id, kind, policy_version, created_at, payload) SELECT ?, ?, ?, ?, ? "
    "WHERE (SELECT coalesce(sum(unconsumed), 0) FROM counts) < ?"
)


def checkpoint_loop(file: Path, synchronous: str, lock: threading.Lock, stop: threading.Event) -> None:
    """Copy the WAL into the database without blocking anyone (PASSIVE). Writers that never pause keep
    the WAL from restarting at frame 0, so past WAL_RESTART_FRAMES a RESTART checkpoint holds writers
    while it copies the few frames left. It takes the store's lock first, so it never waits for that
    store's own writer in SQLite's busy handler, whose sleeps (up to 100 ms) would stall every caller."""
    db = sqlite3.connect(file, timeout=60.0, isolation_level=None)
    db.execute(f"PRAGMA synchronous={synchronous}")
    try:
        while not stop.wait(CHECKPOINT_EVERY_S):
            try:
                if db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1] > WAL_RESTART_FRAMES:
                    with lock:
                        db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            except sqlite3.OperationalError:
                pass  # busy (another process is checkpointing): try again next round
    finally:
        db.close()


def encode(record: dict[str, Any]) -> Row:
    """Validate a record and return its row (id, kind, policy_version, created_at, msgpack payload)."""
    if not isinstance(record, dict):
        raise ValueError(f"a record must be a dict, got {type(record).__name__}")
    for field in ("id", "kind"):
        if not isinstance(record.get(field), str) or not record[field]:
            raise ValueError(f"record field '{field}' must be a non-empty string, got {record.get(field)!r}")
    rid, version, created = record["id"], record.get("policy_version"), record.get("created_at")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"record {rid!r} field 'policy_version' must be an int, got {version!r}")
    if not isinstance(created, (int, float)) or isinstance(created, bool) or not math.isfinite(created):
        raise ValueError(f"record {rid!r} field 'created_at' must be a finite number, got {created!r}")
    try:
        payload = msgpack.packb(record, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"record {rid!r} holds a value msgpack cannot encode ({error})") from None
    return rid, record["kind"], version, float(created), payload


def decode(payload: bytes) -> dict[str, Any]:
    return msgpack.unpackb(payload, raw=False, strict_map_key=False)
