"""What every role actor does on start-up, run in a child process (niceness only ever goes up), and the
check that its peers answer."""

import asyncio
import subprocess
import sys
import time

from conftest import REPO

from actors.common import peers_answer

SCRIPT = """
import os, torch
from actors.common import actor_setup
from esc.config import RunConfig
tree = RunConfig().model_dump()
tree["actors"]["judge"].update(nice=3, torch_threads=1)
before = os.nice(0)
run = actor_setup(tree, "judge")
print(os.nice(0) - before, torch.get_num_threads(), run.actors.judge.nice)
"""


def test_actor_setup_applies_threads_and_lowers_priority():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["3", "1", "3"]


def test_peers_answer_waits_for_every_call_and_gives_up_at_the_timeout():
    async def answers(value):
        return value

    async def fails():
        raise ConnectionError("actor died")

    async def main():
        never = asyncio.get_running_loop().create_future()  # a call whose answer never comes
        every = await peers_answer([answers(1), answers(2)], timeout_s=5)
        failed = await peers_answer([answers(1), fails()], timeout_s=5)
        started = time.perf_counter()
        stuck = await peers_answer([answers(1), never], timeout_s=0.05)
        return every, failed, stuck, time.perf_counter() - started, never.cancelled()

    every, failed, stuck, waited, cancelled = asyncio.run(main())
    assert every and failed  # an error is an answer: Ray reached the actor or declared it dead
    assert not stuck and 0.05 <= waited < 5
    assert cancelled  # the call that never answered is not left pending
