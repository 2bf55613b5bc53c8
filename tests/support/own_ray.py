"""A Ray instance that a test owns, and stops without touching any other Ray on the machine.

Ray puts its session files under `$RAY_TMPDIR/ray`, and every process it starts inherits the
environment of the one that started it: the head's servers carry the folder on their command lines,
and workers, agents and job drivers carry `RAY_TMPDIR` in their environment (their command lines
become `ray::...`). So a test that gives its `rlff` or `ray start` processes a fresh `RAY_TMPDIR`
can find every process of its instance, and only those, and stop them (`ray stop` would stop every
Ray instance of the user, the developer's own runs included).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile

import psutil

STOP_WAIT_S = 30


class OwnRay:
    """A fresh `RAY_TMPDIR` for the processes of one test, and `stop()` for what runs under it."""

    def __init__(self) -> None:
        # short: Ray's Unix socket paths under it must stay below 108 characters
        self.folder = tempfile.mkdtemp(prefix="rt-", dir="/tmp")

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """`base` (default: this process's environment) with this instance's RAY_TMPDIR."""
        return {**(os.environ if base is None else base), "RAY_TMPDIR": self.folder}

    def _ours(self, process: psutil.Process) -> bool:
        try:
            if any(self.folder in part for part in process.cmdline()):
                return True
            return process.environ().get("RAY_TMPDIR") == self.folder
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False

    def processes(self) -> list[psutil.Process]:
        """Every live process of this instance, with the processes they started."""
        found = {p.pid: p for p in psutil.process_iter() if p.pid != os.getpid() and self._ours(p)}
        for process in list(found.values()):
            with contextlib.suppress(psutil.NoSuchProcess):
                found.update({child.pid: child for child in process.children(recursive=True)})
        found.pop(os.getpid(), None)
        return list(found.values())

    def pause(self) -> None:
        """Freeze every process of this instance (SIGSTOP), so what they write on disk holds still."""
        self._signal(signal.SIGSTOP)

    def carry_on(self) -> None:
        """Undo `pause`."""
        self._signal(signal.SIGCONT)

    def _signal(self, number: int) -> None:
        for process in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(number)

    def stop(self) -> int:
        """Kill every process of this instance and wait until they are gone; returns how many there
        were. The folder goes too."""
        processes = self.processes()
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        _, alive = psutil.wait_procs(processes, timeout=STOP_WAIT_S)
        assert not alive, f"Ray processes outlived SIGKILL: {[p.pid for p in alive]}"
        shutil.rmtree(self.folder, ignore_errors=True)
        return len(processes)
