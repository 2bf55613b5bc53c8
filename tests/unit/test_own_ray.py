"""`support.own_ray.OwnRay.stop` takes the processes started under its RAY_TMPDIR (found by command
line or environment, with their children) and leaves a process of another Ray folder alone. Plain
`sleep` processes stand in for Ray's: what is checked is which processes are found."""

from __future__ import annotations

import subprocess
import sys

import psutil
from support.own_ray import OwnRay

PARENT = "import subprocess, sys, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"


def started(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(list(args), env=env)


def wait_for_child(process: subprocess.Popen) -> psutil.Process:
    """The `sleep` child `process` starts (its parent prints nothing; we poll its process table)."""
    parent = psutil.Process(process.pid)
    while not parent.children():
        assert process.poll() is None, "the parent process died"
    return parent.children()[0]


def test_stop_takes_its_own_processes_and_their_children_and_nothing_else():
    mine, other = OwnRay(), OwnRay()
    by_env = started(mine.env(), sys.executable, "-c", PARENT)
    by_cmdline = started(other.env(), "sh", "-c", "sleep 300; :", mine.folder)  # our folder in its argv
    elsewhere = started(other.env(), "sleep", "300")
    child = wait_for_child(by_env)
    try:
        found = {p.pid for p in mine.processes()}
        assert {by_env.pid, child.pid, by_cmdline.pid} <= found
        assert elsewhere.pid not in found
        assert mine.stop() >= 3
        for pid in (by_env.pid, child.pid, by_cmdline.pid):  # psutil reaped our children: ask it
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert elsewhere.poll() is None, "a process of another Ray folder was stopped"
    finally:
        for process in (by_env, by_cmdline, elsewhere):
            process.kill()
            process.wait(30)
        mine.stop()
        other.stop()
