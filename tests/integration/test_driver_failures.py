"""How `rlff run`'s driver takes a failed call. `Watch.settle`: a finished `collect` call's outcome
counts are added, and a failed call (the worker raised) comes back as one line and a `failed` count
instead of an exception that would end the run mid-update. `Evaluations.finish`: a periodic evaluation
that failed or did not finish is reported and left out, and the run goes on. Ray's results are stood in
for by patching the driver's `get`; no Ray instance."""

from __future__ import annotations

import pytest
import ray.exceptions

from esc.config import build_config
from jobs import driver, evaluations


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


def test_an_evaluation_that_failed_or_did_not_finish_is_left_out(monkeypatch, tmp_path, capsys):
    def get(ref):
        raise ray.exceptions.GetTimeoutError("Get timed out: some object(s) not ready.")

    monkeypatch.setattr(evaluations, "get", get)
    periodic = evaluations.Evaluations(build_config({"runs_dir": str(tmp_path)}), System())
    periodic.ref = "running"
    assert periodic.finish("other") is False and periodic.ref == "running"
    assert periodic.finish("running") is True  # no exception: the run goes on
    assert periodic.ref is None and periodic.refs() == []
    said = "a periodic evaluation failed or did not finish (GetTimeoutError: Get timed out: some object(s)"
    assert f"{said} not ready.); the run goes on without it" in capsys.readouterr().err
