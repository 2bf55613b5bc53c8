"""`rlff train --stage heldout`: the run's version-0 held-out point, computed ahead of the run and saved
where the run looks for it; beside another stage, it waits for that stage before scoring."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import jobs.base_point as base_point
from esc.config import RunConfig, build_config
from jobs import UsageError
from jobs.base_point import run_base_point, when_gone
from jobs.heldout import Scorer, heldout_contexts
from jobs.heldout_cache import BaseCache
from jobs.report import base_replies
from jobs.train_rm import run_train_rm

pytestmark = pytest.mark.unit
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "esconv_split"
WAIT_S = 120


def config(tmp_path: Path) -> RunConfig:
    data = f"esconv:{FIXTURE}"
    rm = {"backbone": "tiny-random", "max_tokens": 32, "epochs": 5, "hidden": 16, "data": data}
    sets = ["counselor.model=tiny-random", "counselor.max_new_tokens=8", "counselor.reasoning=false"]
    sets += ["sft.cold_start=false", f"evaluation.heldout={data}#valid", "evaluation.heldout_samples=2"]
    return build_config({"runs_dir": str(tmp_path / "runs"), "name": "p", "reward_model": rm}, sets)


def waiting_child() -> subprocess.Popen:
    """A process that runs until its stdin closes."""
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)


def test_when_gone_fires_once_the_process_exits_and_at_once_for_none():
    child, fired = waiting_child(), threading.Event()
    when_gone(child.pid, fired.set)
    assert not fired.is_set()  # the child runs until its stdin closes
    child.stdin.close()
    assert fired.wait(WAIT_S)
    child.wait(WAIT_S)
    again = threading.Event()
    when_gone(child.pid, again.set)  # exited and reaped: there is no such process
    assert again.wait(WAIT_S)


def test_the_stage_saves_the_point_the_run_would_record_and_then_skips(tmp_path, monkeypatch, capsys):
    run = config(tmp_path)
    assert run_train_rm(run) == 0
    rm = run.run_dir() / "reward_model"
    contexts = heldout_contexts(run)
    assert run_base_point(run) == 0
    saved = BaseCache(run, rm).load([c.id for c in contexts])
    expected = Scorer(run, rm).rows(contexts, asyncio.run(base_replies(run, contexts)))
    assert saved == expected and all(r["versions"] == [0] for r in saved)
    assert "held-out point v0: 2 contexts x 2 samples" in capsys.readouterr().out

    def generating(*args, **kwargs):
        raise AssertionError("the point was generated again")

    monkeypatch.setattr(base_point, "base_replies", generating)
    assert run_base_point(run) == 0
    assert "up to date" in capsys.readouterr().out
    run = run.replace("evaluation", heldout_samples=3)  # another point: the saved one does not stand in
    with pytest.raises(AssertionError, match="generated again"):
        run_base_point(run)


def test_without_a_reward_model_it_stops_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(base_point, "base_replies", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(UsageError, match="train it with `rlff train --stage rm`"):
        run_base_point(config(tmp_path))


def test_beside_a_running_stage_it_scores_after_that_stage_and_widens_then(tmp_path, monkeypatch):
    run = config(tmp_path)
    assert run_train_rm(run) == 0
    ids = [c.id for c in heldout_contexts(run)]
    generated, seen = threading.Event(), {}

    async def observed(config, contexts, pool):
        replies = await base_replies(config, contexts, pool)
        seen["backend"] = pool.get(config.counselor)
        seen["threads"] = seen["backend"].torch_threads
        generated.set()
        return replies

    monkeypatch.setattr(base_point, "base_replies", observed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the stage's half of the cores (OMP_NUM_THREADS in make)
    child, outcome = waiting_child(), {}
    stage = threading.Thread(target=lambda: outcome.update(rc=run_base_point(run, beside=child.pid)))
    try:
        stage.start()
        assert generated.wait(WAIT_S)
        assert seen["threads"] == 1  # decoded on its own thread while the other stage ran
        assert stage.is_alive() and BaseCache(run, run.run_dir() / "reward_model").load(ids) is None
        child.stdin.close()
        stage.join(WAIT_S)
        assert outcome == {"rc": 0}
        assert BaseCache(run, run.run_dir() / "reward_model").load(ids) is not None
        assert seen["backend"].torch_threads == len(os.sched_getaffinity(0))
    finally:
        child.kill()
        child.wait(WAIT_S)
        stage.join(WAIT_S)
        torch.set_num_threads(threads)
