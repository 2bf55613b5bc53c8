"""The store actor as the launcher starts it (`store.synchronous`, `actors.store.max_concurrency`) on a
real local Ray instance: concurrent one-group puts share commits, every caller gets its own statuses,
and a malformed record fails only the call that sent it."""

from __future__ import annotations

import pytest
import ray

from esc.config import build_config
from jobs.launcher import start_store

TIMEOUT_S = 120
CALLS = 48


def record(rid: str, version: int | str = 0) -> dict:
    return {"id": rid, "kind": "group", "policy_version": version, "created_at": 1.0, "text": "x" * 2000}


def test_concurrent_puts_through_the_store_actor_share_commits(tmp_path):
    config = build_config({"store": {"path": str(tmp_path / "store"), "synchronous": "FULL"}})
    assert config.actors.store.max_concurrency > 1
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        store = start_store(config)
        # call i puts group i and group i+1, so every group but the first is sent by two calls at once
        refs = [store.put_many.remote([record(f"g{i}"), record(f"g{i + 1}")]) for i in range(CALLS)]
        bad = store.put_many.remote([record("lonely"), record("bad", version="1")])
        answers = ray.get(refs, timeout=TIMEOUT_S)
        with pytest.raises(ValueError, match="policy_version"):
            ray.get(bad, timeout=TIMEOUT_S)

        by_id: dict[str, list[str]] = {}
        for i, statuses in enumerate(answers):
            for rid, status in zip((f"g{i}", f"g{i + 1}"), statuses, strict=True):
                by_id.setdefault(rid, []).append(status)
        assert by_id.pop("g0") == ["stored"] and by_id.pop(f"g{CALLS}") == ["stored"]
        assert all(sorted(s) == ["duplicate", "stored"] for s in by_id.values())
        assert ray.get(store.ids.remote(), timeout=TIMEOUT_S) == {f"g{i}" for i in range(CALLS + 1)}
        stats = ray.get(store.stats.remote(), timeout=TIMEOUT_S)
        assert stats["synchronous"] == "FULL" and stats["put_calls"] == CALLS
        # 48 calls reach the actor's threads at once and a commit (an fsync) takes a while: some share
        assert stats["put_commits"] < CALLS
    finally:
        ray.shutdown()
