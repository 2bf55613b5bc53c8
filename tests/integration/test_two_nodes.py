"""A two-node Ray cluster on this machine (docs/cluster.md, "Placing roles on nodes"): a head
(`ray start --head`) and a second node (`ray start --address`) that alone has the custom resource
`rollout_node`. `rlff run` joins the cluster as its driver and places, by config, the rollout workers
and the role actors (seeker, counselor, judge) on the second node and the learner on the head
(resource `head_node`); the store, the metrics hub and the gate stay on the driver's node by
themselves. Mid-run the second node's processes are killed by their pids (a machine lost); a
replacement node with the same resource joins, the actors restart there, and the run finishes its
updates with no group consumed twice or lost.

The counselor restarting beside the worker is the case that once stalled the run: the restarted
worker's handle never learned the counselor's new address. The worker now checks that its peers answer
(`rollout.peer_timeout_s`, short here) and restarts itself when one does not. A second stall, in about
one run in five: the dead worker's admission calls, still waiting in the staleness gate, were admitted
after the restarted worker had asked for the same groups, and their leases, which no one would
release, kept its calls waiting forever; the gate now refuses a replaced process's calls
(`actors/admission.py`)."""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from support.own_ray import OwnRay
from support.serving import RAY_CLI, ROOT, free_port
from support.tiny_run import tiny_run

from actors.replay_store import ReplayStore
from esc.config import RewardModelConfig
from learner import checkpoint
from learner.reward_model import RewardModel

pytestmark = pytest.mark.slow
DEADLINE_S = 600
UPDATES = 10
NODE_RESOURCE = "rollout_node"


def settings(runs: Path) -> list[str]:
    roles = ("rollout_worker", "seeker", "counselor", "judge")
    return tiny_run(
        runs,
        "nodes",
        # half the candidates get a simulated future, so the seeker and judge work all along (with
        # none, they would run only in periodic evaluations: `jobs.launcher.start_evaluation_roles`)
        "rollout.future_fraction=0.5",
        "future.horizon=1",
        f"learner.max_updates={UPDATES}",
        "learner.checkpoint_every=100",
        *(f"actors.{role}.resources={{{NODE_RESOURCE}: 1}}" for role in roles),
        "learner.placement.resources={head_node: 1}",  # Ray Train workers do not survive a node loss
        "rollout.peer_timeout_s=20",
    )


def ray(*args: str, env: dict[str, str]) -> None:
    done = subprocess.run([RAY_CLI, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def second_node(own: OwnRay) -> psutil.Process | None:
    """The raylet of the node that has `rollout_node` (its resources are on its command line)."""
    found = [p for p in own.processes() if "raylet" in p.name() and NODE_RESOURCE in " ".join(p.cmdline())]
    assert len(found) <= 1, f"{len(found)} nodes have {NODE_RESOURCE}"
    return found[0] if found else None


def actors_on(raylet: psutil.Process) -> str:
    """The process titles of the workers a raylet runs (`ray::RolloutWorker...` once an actor lives)."""
    titles = []
    for child in raylet.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            titles.append(" ".join(child.cmdline()))
    return "\n".join(titles)


def updates(run: Path) -> list[dict]:
    path = run / "learner" / "updates-r0.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def wait_until(check, what: str, driver: subprocess.Popen, log: Path, deadline: float) -> None:
    while not check():
        assert driver.poll() is None, f"the run ended while waiting for {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)  # watching another process's files and process table; no event to wait on


def test_rollout_actors_on_a_second_node_outlive_its_death(tmp_path):
    own = OwnRay()
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {**own.env(), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env.pop("RAY_ADDRESS", None)
    gcs = f"127.0.0.1:{free_port()}"
    runs = tmp_path / "runs"
    run = runs / "nodes"
    RewardModel.from_config(RewardModelConfig(backbone="tiny-random")).save(run / "reward_model")
    node = ["start", f"--address={gcs}", "--num-cpus=1", f'--resources={{"{NODE_RESOURCE}": 8}}']
    log = tmp_path / "run.log"
    deadline = time.monotonic() + DEADLINE_S
    try:
        ray("start", "--head", f"--port={gcs.split(':')[1]}", "--num-cpus=2", '--resources={"head_node": 3}',
            "--include-dashboard=false",
            "--disable-usage-stats", env=env)  # fmt: skip
        ray(*node, env=env)
        driver = subprocess.Popen(
            [sys.executable, "-m", "jobs.cli", "run", "--config", "configs/local.yaml", *settings(runs)],
            cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, env={**env, "RAY_ADDRESS": gcs},
        )  # fmt: skip
        first = second_node(own)
        assert first is not None
        wait_until(lambda: len(updates(run)) >= 2, "two updates", driver, log, deadline)
        on_node = actors_on(first)
        assert all(a in on_node for a in ("RolloutWorker", "UserSimulator", "Counselor", "Judge")), on_node

        lost = [first, *first.children(recursive=True)]
        for process in lost:  # the machine is gone: its raylet and every worker on it
            process.send_signal(signal.SIGKILL)
        psutil.wait_procs(lost, timeout=30)
        killed_at, updates_then = time.time(), len(updates(run))
        ray(*node, env=env)  # a replacement machine with the same resource joins
        replacement = second_node(own)
        assert replacement is not None and replacement.pid != first.pid
        wait_until(
            lambda: "RolloutWorker" in actors_on(replacement), "the actors' restart", driver, log, deadline
        )

        assert driver.wait(max(1, deadline - time.monotonic())) == 0, log.read_text()[-3000:]
    finally:
        own.stop()

    lines = updates(run)
    assert [u["update"] for u in lines] == list(range(1, UPDATES + 1)) and updates_then < UPDATES
    ids = [rid for u in lines for rid in u["ids"]]
    assert len(ids) == len(set(ids)), "a group was consumed twice"
    store = ReplayStore(run / "store")
    groups = {r["id"]: r for r in store.iter_records("group")}
    assert set(ids) == store.ids(consumer="learner-r0") and set(ids) <= set(groups)
    store.close()
    assert set(checkpoint.read_state(checkpoint.latest(run / "checkpoints")).consumed) == set(ids)
    # the groups of the last updates were made after the kill, by the actors on the replacement node
    after = [rid for rid in ids if groups[rid]["created_at"] > killed_at]
    assert len(after) >= 2, f"only {len(after)} groups were made after the node died"
