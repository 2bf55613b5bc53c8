"""Helpers for tests that start `rlff serve` or `rlff run` as a real process and talk HTTP to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from support.own_ray import OwnRay

ROOT = Path(__file__).resolve().parents[2]
RAY_CLI = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rlff(subprocess.Popen):
    """An `rlff` process and the Ray instance it starts (`own_ray`, stopped by `stop`)."""

    own_ray: OwnRay


def start_rlff(args: list[str], log: Path, env: dict[str, str] | None = None) -> Rlff:
    """`rlff ARGS` in its own session, with a Ray temp folder of its own (`support.own_ray`)."""
    own = OwnRay()
    process = Rlff(
        [sys.executable, "-m", "jobs.cli", *args],
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=own.env({**os.environ, **(env or {})}),
    )
    process.own_ray = own
    return process


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 300) -> dict:
    """Poll GET url/healthz until it answers 200 (the process must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, f"rlff exited early:\n{log.read_text()[-3000:]}"
        try:
            reply = httpx.get(f"{url}/healthz", timeout=5)
            if reply.status_code == 200:
                return reply.json()
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"no healthy endpoint at {url}:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)  # the server is starting in another process; there is no event to wait on


def stop(process: Rlff, timeout_s: float = 120) -> int:
    """Ctrl-C the driver (a graceful stop: SIGINT to it alone, as a terminal would not reach Ray's own
    processes), then stop what is left of the Ray instance it started, and nothing else. Returns the
    driver's exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
    process.own_ray.stop()
    return process.returncode
