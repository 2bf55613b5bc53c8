"""`rlff run` with `serve.enabled` on a real local Ray instance (tiny model): while the learner
publishes, sequential requests to the endpoint all succeed across weight switches with versions that
never go back; headless Chromium watches the dashboard plot data and the weights version advance;
the same metrics reach TensorBoard files and Ray's Prometheus export; Ctrl-C stops it all cleanly."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from support.serving import ROOT, free_port, start_rlff, stop, wait_healthy

from esc.config import RewardModelConfig
from learner.reward_model import RewardModel

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("RLFF_TEST_ARTIFACTS", ROOT / "test-artifacts"))
DEADLINE_S = 420
CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the machine is offline: no calls home
    "--disable-component-update",
    "--disable-sync",
]


def settings(runs: Path, port: int) -> list[str]:
    sets = [f"{r}.model=tiny-random" for r in ("seeker", "counselor", "judge", "system_agent")]
    sets += ["counselor.max_new_tokens=8", "counselor.reasoning=false", "rollout.group_size=2"]
    sets += ["rollout.in_flight=2", "rollout.future_fraction=0.5", "future.horizon=1"]
    sets += [
        "learner.batch_size=2",
        "learner.lr=1e-3",
        "learner.max_updates=400",
        "learner.checkpoint_every=100",
    ]
    sets += ["evaluation.every=3", "evaluation.episodes=1", "evaluation.max_turns=2"]
    sets += ["reward_model.backbone=tiny-random", f"runs_dir={runs}", "name=live"]
    sets += ["serve.enabled=true", f"serve.port={port}", "serve.poll_s=0.1"]
    return [arg for s in sets for arg in ("--set", s)]


def events(run: Path, source: str) -> list[dict]:
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [e for e in map(json.loads, lines) if e["source"] == source]


def wait_until(check, what: str, deadline: float) -> None:
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)  # watching another process's files and HTTP; there is no event to wait on


def prometheus_text() -> str:
    """Ray's Prometheus export of this machine's node (the run's Ray instance is the latest session)."""
    session = Path("/tmp/ray/session_latest")
    port = next(session.glob("metrics_export_port_*")).read_text().strip()
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


@pytest.mark.skipif(
    not Path(CHROMIUM).is_file() and not os.environ.get("CI"), reason="Debian chromium is not installed"
)
def test_live_weights_dashboard_and_metric_exports(tmp_path):
    from playwright.sync_api import sync_playwright

    run = tmp_path / "runs" / "live"
    RewardModel.from_config(RewardModelConfig(backbone="tiny-random")).save(run / "reward_model")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "run.log"
    process = start_rlff(["run", "--config", "configs/local.yaml", *settings(tmp_path / "runs", port)], log)
    deadline = time.monotonic() + DEADLINE_S
    try:
        wait_healthy(url, process, log)
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

            # 20+ sequential requests that span at least one weights switch
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
            assert versions == sorted(versions), f"a version went backwards: {versions}"

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
            points = page.evaluate("() => document.getElementById('plot-reward').data[0].x.length")
            assert points >= 2
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            browser.close()

        wait_until(lambda: "ray_rlff_reward_mean" in prometheus_text(), "Prometheus export", deadline)
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        board = EventAccumulator(str(run / "tensorboard"))
        wait_until(
            lambda: board.Reload() and "reward_mean/learner" in board.Tags()["scalars"], "TB", deadline
        )
    finally:
        code = stop(process)
    assert code == 0, log.read_text()[-3000:]
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
