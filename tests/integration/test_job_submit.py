"""`ray job submit` against a head started with `ray start --head` on this machine, with token
authentication on, as docs/cluster.md tells users: the job runs `rlff run` (tiny model), succeeds,
and its logs and metrics say what it did; without the token the cluster refuses the job API."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest
from support.serving import RAY_CLI, ROOT, free_port

from esc.config import RewardModelConfig
from learner.reward_model import RewardModel

pytestmark = pytest.mark.slow
TIMEOUT_S = 420


def ray(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RAY_CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def run_settings(runs: Path) -> list[str]:
    sets = [f"{r}.model=tiny-random" for r in ("seeker", "counselor", "judge", "system_agent")]
    sets += ["counselor.max_new_tokens=8", "counselor.reasoning=false", "rollout.group_size=2"]
    sets += ["rollout.in_flight=2", "learner.batch_size=2", "learner.max_updates=2"]
    sets += ["reward_model.backbone=tiny-random", "serve.enabled=false", "evaluation.every=0"]
    sets += [f"runs_dir={runs}", "name=job"]
    return [arg for s in sets for arg in ("--set", s)]


def test_ray_job_submit_runs_rlff_on_a_token_authenticated_head(tmp_path):
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    bin_dir = str(Path(RAY_CLI).parent)
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),  # tests keep ~/.ray/auth_token, the users' default, untouched
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",  # so the job finds `rlff`
    }
    env.pop("RAY_ADDRESS", None)
    runs = tmp_path / "runs"
    RewardModel.from_config(RewardModelConfig(backbone="tiny-random")).save(runs / "job" / "reward_model")
    dashboard = free_port()
    address = f"http://127.0.0.1:{dashboard}"
    head = [f"--port={free_port()}", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1"]
    started = ray("start", "--head", "--num-cpus=2", "--disable-usage-stats", *head, env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        submit = ray(
            "job", "submit", "--address", address, "--working-dir", ".", "--submission-id", "rlff-test",
            "--no-wait", "--", "rlff", "run", "--config", "configs/local.yaml", *run_settings(runs),
            env=env,
        )  # fmt: skip
        assert submit.returncode == 0, submit.stdout + submit.stderr
        # --follow streams the job's output and returns when the job ends
        logs = ray("job", "logs", "--address", address, "--follow", "rlff-test", env=env, timeout=TIMEOUT_S)
        status = ray("job", "status", "--address", address, "rlff-test", env=env)
        said = status.stdout + status.stderr
        assert "Job 'rlff-test' succeeded" in said, said + logs.stdout[-3000:] + logs.stderr[-2000:]
        assert "actors ready" in logs.stdout and "learner version 2" in logs.stdout, logs.stdout[-3000:]

        events = [json.loads(line) for line in (runs / "job" / "metrics.jsonl").read_text().splitlines()]
        learner = [e for e in events if e["source"] == "learner"]
        assert [e["weights_version"] for e in learner] == [1, 2]
        assert (runs / "job" / "weights" / "LATEST").read_text().strip() == "2"

        anonymous = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
        refused = ray("job", "status", "--address", address, "rlff-test", env=anonymous)
        assert refused.returncode != 0 and "succeeded" not in refused.stdout + refused.stderr
    finally:
        ray("stop", "--force", env=env)
