"""`rlff serve` refuses a busy port and a folder that holds no weights, in one line, as a real
subprocess that imports torch and the serving stack."""

import os
import socket
import subprocess
import sys

from conftest import REPO


def rlff(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "jobs.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env=env,
    )


def test_serve_refuses_a_busy_port_and_a_wrong_checkpoint(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = rlff("serve", "--set", f"serve.port={port}", "--set", "counselor.model=tiny-random")
    assert out.returncode == 2 and f"127.0.0.1:{port} is already in use" in out.stderr
    out = rlff("serve", "--checkpoint", str(tmp_path), "--set", "counselor.model=tiny-random")
    assert out.returncode == 2 and "neither a model folder" in out.stderr


def test_serve_and_run_refuse_an_open_bind_without_a_key_in_one_sentence(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RLFF_API_KEY"}
    for command in ("serve", "run"):
        sets = ["serve.host=0.0.0.0", "serve.enabled=true", f"runs_dir={tmp_path}"]
        out = rlff(command, *[a for s in sets for a in ("--set", s)], env=env)
        assert out.returncode == 2, out.stderr[-2000:]
        line = out.stderr.strip().splitlines()[-1]
        assert line.startswith("error: serve.host 0.0.0.0 is reachable from other machines"), line
        assert "serve.allow_open=true" in line
