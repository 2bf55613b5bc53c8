"""`Watch.settle`: a finished `collect` call's outcome counts are added, and a failed call (the worker
raised) comes back as one line and a `failed` count instead of an exception that would end `rlff run`
mid-update. The Ray result is stood in for by patching the driver's `get`; no Ray instance."""

from __future__ import annotations

import pytest
import ray.exceptions

from jobs import driver


class System:
    def pids(self, known=None) -> dict:
        return {}


def test_settle_counts_a_result_and_turns_a_failure_into_one_line(monkeypatch):
    results = {
        "ok": {"stored": 3, "duplicate": 1, "skipped": 0, "stopped": 0},
        "bad": ray.exceptions.RayTaskError(
            "collect", "Traceback ...", ValueError("judge at http://x/v1 unreachable\nsecond line")
        ).as_instanceof_cause(),
    }

    def get(ref):
        result = results[ref]
        if isinstance(result, Exception):
            raise result
        return result

    monkeypatch.setattr(driver, "get", get)
    watch = driver.Watch(System())
    assert watch.settle("ok") is None
    assert watch.settle("bad") == "ValueError: judge at http://x/v1 unreachable"
    assert watch.totals == {"stored": 3, "duplicate": 1, "skipped": 0, "stopped": 0, "failed": 1}
    with pytest.raises(ray.exceptions.RayTaskError):
        watch.count("bad")  # `rlff collect` still stops on it
