"""Chaos soak: `rlff run` (real local Ray, tiny-random models, endpoint on) for a fixed number of updates
while a seeded schedule SIGKILLs a random rollout worker, role actor, the replay store or the learner at
random moments, and 4 clients query the endpoint all along. When the job dies, it is resumed
(`rlff run --resume`) until the updates are done. A job that fails by itself (no kill during it) before
making an update ends the soak at once, with its log's tail: that is a bug, not chaos.

Reports: kills (what, when, seconds until a new process of that kind runs and until the next update),
updates completed, groups produced (workers' `stored` outcomes) vs stored vs consumed (no loss, no
duplicates), and endpoint requests answered vs refused with an HTTP status vs unreachable (the run
restarting) vs hung (no answer within the client's timeout).

    .venv/bin/python bench/chaos_soak.py [--updates 120] [--kills 14] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from support.tiny_run import tiny_run  # noqa: E402

from actors.replay_store import ReplayStore  # noqa: E402
from esc.config import RewardModelConfig  # noqa: E402
from learner.reward_model import RewardModel  # noqa: E402

# What may be killed, by the Ray process title of its actor (`ray::<class>`). With no simulated futures
# and no periodic evaluation (this soak's settings) the run starts no seeker or judge, so the soak
# finds none to kill (`jobs.launcher.start_evaluation_roles`; since 2026-12-06).
TARGETS = {
    "rollout_worker": "RolloutWorker",
    "seeker": "UserSimulator",
    "counselor": "Counselor",
    "judge": "Judge",
    "store": "ReplayStore",
    "learner": "RayTrainWorker",
}
CLIENT_TIMEOUT_S = 60


def settings(runs: Path, updates: int, port: int) -> list[str]:
    """The tests' tiny run (tests/support/tiny_run.py) with the endpoint on and two rollout workers."""
    extra = [f"learner.max_updates={updates}", "learner.checkpoint_every=2", "rollout.future_fraction=0"]
    extra += ["serve.enabled=true", f"serve.port={port}", "actors.rollout_worker.replicas=2"]
    return tiny_run(runs, "chaos", *extra)


def processes(session: int) -> dict[str, list[int]]:
    """Pids of this run's actors by target kind (processes of the run's session only)."""
    found: dict[str, list[int]] = {kind: [] for kind in TARGETS}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) != session:
                continue
            title = (Path("/proc") / entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except (OSError, UnicodeDecodeError):
            continue
        for kind, cls in TARGETS.items():
            if title == f"ray::{cls}" or title.startswith(f"ray::{cls}."):
                found[kind].append(int(entry))
    return found


def updates_done(run: Path) -> list[dict]:
    path = run / "learner" / "updates-r0.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


class Clients:
    """4 threads sending chat requests to the endpoint until stopped; tallies the outcomes."""

    def __init__(self, url: str, count: int = 4):
        self.url, self.stop = url, threading.Event()
        self.tally = {"answered": 0, "refused": 0, "unreachable": 0, "hung": 0}
        self.statuses: dict[int, int] = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.loop, args=(i,), daemon=True) for i in range(count)]

    def loop(self, i: int) -> None:
        body = {"messages": [{"role": "user", "content": f"I feel tired, day {i}."}], "max_tokens": 8}
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT_S) as http:
            while not self.stop.is_set():
                try:
                    status = http.post("/v1/chat/completions", json=body).status_code
                    outcome = "answered" if status == 200 else "refused"
                except httpx.TimeoutException:
                    outcome, status = "hung", 0
                except httpx.TransportError:
                    outcome, status = "unreachable", 0
                with self.lock:
                    self.tally[outcome] += 1
                    if status and status != 200:
                        self.statuses[status] = self.statuses.get(status, 0) + 1
                if outcome == "unreachable":
                    self.stop.wait(1.0)  # the run is restarting: retry once a second, not in a busy loop


def produced_by_workers(run: Path) -> list[str]:
    """Ids of the groups the rollout workers reported stored (their feed records, one per stored
    group; a worker killed between the put and the report leaves one out)."""
    path = run / "dialogues.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [r["id"] for r in map(json.loads, lines) if r.get("kind") == "group" and "id" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=120)
    parser.add_argument("--kills", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    args = parser.parse_args()
    chance = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="rlff-chaos-"))
    runs, run = folder / "runs", folder / "runs" / "chaos"
    RewardModel.from_config(RewardModelConfig(backbone="tiny-random")).save(run / "reward_model")
    port = 8000 + chance.randrange(1000, 2000)
    started = time.monotonic()
    kills: list[dict] = []
    resumes, sessions = 0, 0
    clients = Clients(f"http://127.0.0.1:{port}")
    command = [sys.executable, "-m", "jobs.cli", "run", "--config", "configs/local.yaml"]
    command += settings(runs, args.updates, port)
    for thread in clients.threads:
        thread.start()
    died_at, updates_then, recoveries = None, 0, []
    while True:
        log_path = folder / f"run-{sessions}.log"
        log, kills_before, updates_before = log_path.open("w"), len(kills), len(updates_done(run))
        job = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        sessions += 1
        while job.poll() is None and time.monotonic() - started < args.timeout:
            if died_at is not None and len(updates_done(run)) > updates_then:
                recoveries.append(round(time.monotonic() - died_at, 1))  # resumed job's first update
                died_at = None
            if len(kills) < args.kills:
                if _wait(job, chance.uniform(5, 20)):
                    break
                kills.append(kill_one(chance, job, run))
            else:
                _wait(job, 5)
        if job.poll() is None:  # out of time
            os.killpg(job.pid, signal.SIGKILL)
            break
        done = len(updates_done(run))
        if job.returncode == 0 or done >= args.updates:
            break
        _stop_session(job.pid)
        if done == updates_before and len(kills) == kills_before:  # it failed by itself, not by a kill
            clients.stop.set()
            tail = log_path.read_text()[-3000:]
            sys.exit(f"the run failed by itself, with no update (exit {job.returncode}); log tail:\n{tail}")
        resumes += 1
        died_at, updates_then = time.monotonic(), done
        command = [
            sys.executable,
            "-m",
            "jobs.cli",
            "run",
            "--resume",
            str(run),
            "--set",
            f"serve.port={port}",
        ]
    clients.stop.set()
    for thread in clients.threads:
        thread.join(CLIENT_TIMEOUT_S + 5)
    _stop_session(job.pid)
    report = account(run, kills, resumes, clients, time.monotonic() - started, args)
    report["resume_to_next_update_s"] = recoveries
    print(json.dumps(report))


def _wait(job: subprocess.Popen, seconds: float) -> bool:
    """Wait up to `seconds` for the job to end; True when it ended."""
    try:
        job.wait(seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def _stop_session(pid: int) -> None:
    """SIGKILL whatever is left of one job's session (its Ray instance), nothing else on the machine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def kill_one(chance: random.Random, job: subprocess.Popen, run: Path) -> dict:
    """SIGKILL one random target process of the run; then time its replacement and the next update
    (when the job dies of it, the resumed job's first update is timed in `main`)."""
    session = job.pid
    alive = {kind: pids for kind, pids in processes(session).items() if pids}
    if not alive:
        return {"target": None, "at_s": None, "note": "nothing to kill (the run is starting or ending)"}
    kind = chance.choice(sorted(alive))
    victim = chance.choice(alive[kind])
    before = len(updates_done(run))
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    record = {"target": kind, "pid": victim, "respawn_s": None, "next_update_s": None, "update": before}
    while time.monotonic() - killed < 300:
        now = processes(session)
        if record["respawn_s"] is None and set(now.get(kind, [])) - set(alive[kind]):  # a new process
            record["respawn_s"] = round(time.monotonic() - killed, 2)
        if record["next_update_s"] is None and len(updates_done(run)) > before:
            record["next_update_s"] = round(time.monotonic() - killed, 2)
        if record["respawn_s"] is not None and record["next_update_s"] is not None:
            break
        if job.poll() is not None:  # the job died with it (or ended); the soak resumes it if needed
            record["job_ended"] = True
            break
        time.sleep(0.5)  # watching another process's files and processes; nothing to wait on
    return record


def account(run: Path, kills: list[dict], resumes: int, clients: Clients, seconds: float, args) -> dict:
    store = ReplayStore(run / "store")
    try:
        stored = store.ids()
        consumed_store = store.ids(consumer="learner-r0")
    finally:
        store.close()
    written = updates_done(run)
    # a killed job redoes the updates after its last checkpoint: the run's lineage is the last record
    # written for each version
    lineage = {u["version"]: u["ids"] for u in written}
    consumed = [rid for ids in lineage.values() for rid in ids]
    produced = produced_by_workers(run)
    return {
        "name": "chaos_soak",
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
        "seed": args.seed,
        "updates_planned": args.updates,
        "updates_completed": len(lineage),
        "updates_redone_after_a_kill": len(written) - len(lineage),
        "kills": kills,
        "kill_count": sum(k["target"] is not None for k in kills),
        "resumes": resumes,
        "groups_produced": len(set(produced)),
        "groups_reported_twice": len(produced) - len(set(produced)),
        "groups_produced_not_stored": len(set(produced) - stored),
        "groups_stored": len(stored),
        "groups_consumed": len(consumed),
        "consumed_twice": len(consumed) - len(set(consumed)),
        "consumed_not_stored": len(set(consumed) - stored),
        "consumed_marked_in_store": len(consumed_store),
        "consumed_lineage_equals_store_marks": set(consumed) == consumed_store,
        "endpoint": {**clients.tally, "statuses": clients.statuses},
        "seconds": round(seconds, 1),
    }


if __name__ == "__main__":
    main()
