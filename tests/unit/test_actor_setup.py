"""What every role actor does on start-up, run in a child process (niceness only ever goes up)."""

import subprocess
import sys

from conftest import REPO

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
