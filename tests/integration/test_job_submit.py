"""The user's path end to end, on a real Ray head started with `ray start --head` on this machine, with
token authentication on (docs/cluster.md), and the tiny model:

- `ray job submit --working-dir . -- rlff run ...` with `serve.enabled`;
- while the learner publishes, 20+ sequential requests to the endpoint all succeed across weight
  switches, and the versions they report never go back;
- headless Chromium watches the dashboard's plot data, the weights version advance, a periodic
  evaluation and the dialogue feed, and saves a screenshot (test-artifacts/dashboard.png);
- the metrics reach TensorBoard files and Ray's Prometheus export;
- `runs/<name>/STOP` ends the job gracefully: SUCCEEDED, with its logs and metrics, and a checkpoint
  of its last update;
- a client without the token is refused.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from support.own_ray import OwnRay
from support.serving import RAY_CLI, ROOT, free_port

from esc.config import RewardModelConfig
from learner import checkpoint
from learner.reward_model import RewardModel

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("RLFF_TEST_ARTIFACTS", ROOT / "test-artifacts"))
DEADLINE_S = 480
CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the machine is offline: no calls home
    "--disable-component-update",
    "--disable-sync",
]


def ray(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RAY_CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def run_settings(runs: Path, port: int) -> list[str]:
    sets = [f"{r}.model=tiny-random" for r in ("seeker", "counselor", "judge", "system_agent")]
    sets += ["counselor.max_new_tokens=8", "counselor.reasoning=false", "rollout.group_size=2"]
    sets += ["rollout.in_flight=2", "rollout.future_fraction=0.5", "future.horizon=1"]
    sets += ["learner.batch_size=2", "learner.lr=1e-3", "learner.max_updates=1000"]
    sets += [
        "learner.checkpoint_every=1000",
        "reward_model.backbone=tiny-random",
        "sft.cold_start=false",
        "seeker_sft.cold_start=false",
    ]
    sets += ["evaluation.every=3", "evaluation.episodes=1", "evaluation.max_turns=2"]
    sets += ["serve.enabled=true", f"serve.port={port}", "serve.poll_s=0.1", f"runs_dir={runs}", "name=job"]
    return [arg for s in sets for arg in ("--set", s)]


def events(run: Path, source: str) -> list[dict]:
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [e for e in map(json.loads, lines) if e["source"] == source]


def wait_until(check, what: str, deadline: float) -> None:
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)  # watching another process's files and HTTP; there is no event to wait on


def job_status(address: str, token: str) -> str:
    """The job's status from the Jobs REST API, which `ray job status` asks: polled once a second, the
    CLI's own start took about as much CPU as the job being watched (2 cores, 2026-12-07)."""
    auth = {"Authorization": f"Bearer {token}"}
    try:
        reply = httpx.get(f"{address}/api/jobs/rlff-test", headers=auth, timeout=10)
    except httpx.HTTPError as error:  # a busy head: ask again
        return f"unknown ({type(error).__name__})"
    return reply.json()["status"] if reply.status_code == 200 else f"unknown (HTTP {reply.status_code})"


def endpoint_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def prometheus_text(ray_tmpdir: str) -> str:
    """Ray's Prometheus export of the head started under `ray_tmpdir` (its latest session)."""
    session = Path(ray_tmpdir) / "ray" / "session_latest"
    port = next(session.glob("metrics_export_port_*")).read_text().strip()
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def sequential_requests(url: str, deadline: float) -> list[int]:
    """20+ requests one after another until at least two weights versions answered; their versions."""
    versions: list[int] = []
    with httpx.Client(base_url=url, timeout=60) as http:
        while len(versions) < 20 or len(set(versions)) < 2:
            assert time.monotonic() < deadline, f"versions seen: {sorted(set(versions))}"
            message = {"role": "user", "content": f"Request {len(versions)}: I feel stuck at work."}
            reply = http.post("/v1/chat/completions", json={"messages": [message], "max_tokens": 8})
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body["choices"][0]["message"]["content"].strip()
            assert int(reply.headers["X-RLFF-Weights-Version"]) == body["rlff"]["weights_version"]
            versions.append(body["rlff"]["weights_version"])
    return versions


def watch_dashboard(url: str, run: Path, deadline: float) -> list[int]:
    """Open the dashboard in Chromium; while it watches, send the sequential requests. Returns their
    versions; saves the screenshot."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(f"{url}/dashboard")
        page.wait_for_function(
            "() => { const d = document.getElementById('plot-reward').data;"
            " return d && d[0].x.length >= 1; }",
            timeout=DEADLINE_S * 1000,
        )
        first_seen = int(page.inner_text("#weights-version"))
        versions = sequential_requests(url, deadline)
        page.wait_for_function(
            f"() => Number(document.getElementById('weights-version').textContent) > {first_seen}",
            timeout=120_000,
        )
        wait_until(lambda: events(run, "evaluate"), "a periodic evaluation", deadline)
        page.wait_for_function(
            "() => document.getElementById('sr-at').textContent.includes('/')"
            " && document.querySelectorAll('#dialogues .dialogue').length > 0",
            timeout=120_000,
        )
        assert page.evaluate("() => document.getElementById('plot-reward').data[0].x.length") >= 2
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        browser.close()
    return versions


@pytest.mark.skipif(
    not Path(CHROMIUM).is_file() and not os.environ.get("CI"), reason="Debian chromium is not installed"
)
def test_submitted_job_serves_live_weights_and_dashboard_on_a_token_head(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    own = OwnRay()  # the head's processes, and only they, are stopped at the end
    env = {
        **own.env(),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),  # tests keep ~/.ray/auth_token, the users' default, untouched
        "PATH": f"{Path(RAY_CLI).parent}{os.pathsep}{os.environ['PATH']}",  # so the job finds `rlff`
    }
    env.pop("RAY_ADDRESS", None)
    runs = tmp_path / "runs"
    run = runs / "job"
    RewardModel.from_config(RewardModelConfig(backbone="tiny-random")).save(run / "reward_model")
    dashboard, port = free_port(), free_port()
    address, url = f"http://127.0.0.1:{dashboard}", f"http://127.0.0.1:{port}"
    head = [f"--port={free_port()}", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1"]
    started = ray("start", "--head", "--num-cpus=2", "--disable-usage-stats", *head, env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    deadline = time.monotonic() + DEADLINE_S
    try:
        submit = ray(
            "job", "submit", "--address", address, "--working-dir", ".", "--submission-id", "rlff-test",
            "--no-wait", "--", "rlff", "run", "--config", "configs/local.yaml", *run_settings(runs, port),
            env=env,
        )  # fmt: skip
        assert submit.returncode == 0, submit.stdout + submit.stderr
        while not endpoint_up(url):  # it comes up once the job's actors are ready
            status = job_status(address, token.read_text())
            if time.monotonic() > deadline or status in ("FAILED", "STOPPED", "SUCCEEDED"):
                logs = ray("job", "logs", "--address", address, "rlff-test", env=env).stdout[-3000:]
                pytest.fail(f"job status {status}; its logs:\n{logs}")
            time.sleep(1)  # the job starts in other processes; there is no event to wait on

        versions = watch_dashboard(url, run, deadline)
        assert versions == sorted(versions), f"a version went backwards: {versions}"
        exported = lambda: "ray_rlff_reward_mean" in prometheus_text(own.folder)  # noqa: E731
        wait_until(exported, "the Prometheus export", deadline)
        board = EventAccumulator(str(run / "tensorboard"))
        tagged = lambda: board.Reload() and "reward_mean/learner" in board.Tags()["scalars"]  # noqa: E731
        wait_until(tagged, "TensorBoard events", deadline)

        (run / "STOP").touch()  # a job has no terminal to press Ctrl-C in
        logs = ray("job", "logs", "--address", address, "--follow", "rlff-test", env=env, timeout=DEADLINE_S)
        status = ray("job", "status", "--address", address, "rlff-test", env=env)
        said = status.stdout + status.stderr
        assert "Job 'rlff-test' succeeded" in said, said + logs.stdout[-3000:]
        assert "STOP found" in logs.stderr + logs.stdout and "groups:" in logs.stdout, logs.stdout[-3000:]
        learner = events(run, "learner")
        assert [e["weights_version"] for e in learner] == list(range(1, len(learner) + 1))
        assert (run / "weights" / "LATEST").read_text().strip() == str(len(learner))
        # STOP checkpoints the last update (the scheduled ones come every 1000), so a resume redoes none
        state = checkpoint.read_state(checkpoint.latest(run / "checkpoints"))
        assert state.updates == state.version == len(learner)

        anonymous = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
        refused = ray("job", "status", "--address", address, "rlff-test", env=anonymous)
        assert refused.returncode != 0 and "succeeded" not in refused.stdout + refused.stderr
    finally:
        own.stop()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
