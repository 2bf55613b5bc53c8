"""`rlff run` refuses a config it cannot train with, in one line. The command imports the Ray-based
run (`jobs.run`), so this test lives here rather than in unit."""

import subprocess
import sys

from conftest import REPO


def rlff(*args):
    return subprocess.run(
        [sys.executable, "-m", "jobs.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_run_refuses_counselors_that_cannot_load_published_weights(tmp_path):
    out = rlff(
        "run",
        "--config",
        "configs/gpu.yaml",
        "--set",
        "counselor.backend=openai",
        "--set",
        "counselor.base_url=http://127.0.0.1:9/v1",
        "--set",
        f"runs_dir={tmp_path}",
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: rlff run needs counselor.backend hf or vllm: the openai backend cannot load the weights the"
        " learner publishes"
    ]
