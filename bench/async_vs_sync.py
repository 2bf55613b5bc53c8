"""The online loop asynchronous (rollouts keep going while the learner trains, staleness bound 1) vs
synchronous (`learner.mode=sync`: generate a batch, train on it, repeat), same config and seed, on the
embedded model: wall time to N policy updates, and where the time went (per-stage sums).

Time to N updates is measured from the run's first metric event (actors ready, work starting) to its
N-th learner event, so the identical start-up of both runs does not water the ratio down; the whole
command's wall time is printed too. Needs a trained reward model and the cold-start SFT model beside
it (`make run` trains both).

    .venv/bin/python bench/async_vs_sync.py [--updates 3] [--reward-model runs/local/reward_model]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER_STAGES = ("stage_generate_s", "stage_future_s", "stage_put_s", "admission_wait_s")
LEARNER_STAGES = (
    "stage_sample_s",
    "stage_score_s",
    "stage_advantages_s",
    "stage_update_s",
    "stage_publish_s",
)


def run(mode: str, updates: int, reward_model: Path, folder: Path) -> dict:
    run_dir = folder / mode
    shutil.copytree(reward_model, run_dir / "reward_model")
    for stage in ("sft", "seeker_sft"):  # configs/local.yaml cold-starts counselor and seeker from them
        trained = reward_model.parent / stage
        if not (trained / "config.json").is_file():
            raise SystemExit(f"{trained} holds no trained model: run `make stages` (or `make run`) first")
        shutil.copytree(trained, run_dir / stage)
    sets = [f"runs_dir={folder}", f"name={mode}", f"learner.mode={mode}", f"learner.max_updates={updates}"]
    sets += ["serve.enabled=false", "evaluation.every=0", f"learner.checkpoint_every={updates}"]
    command = [sys.executable, "-m", "jobs.cli", "run", "--config", "configs/local.yaml"]
    command += [a for s in sets for a in ("--set", s)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    learner = [e for e in events if e["source"] == "learner"]
    stages: dict[str, float] = defaultdict(float)
    for e in events:
        for key in LEARNER_STAGES if e["source"] == "learner" else WORKER_STAGES:
            stages[key] += e.get(key, 0.0)
    return {
        "mode": mode,
        "command_wall_s": round(wall, 1),
        "to_n_updates_s": round(learner[-1]["time"] - events[0]["time"], 1),
        "update_times_s": [round(e["time"] - events[0]["time"], 1) for e in learner],
        "updates": len(learner),
        "stage_totals_s": {k: round(v, 1) for k, v in stages.items()},
        "staleness": [e.get("staleness_hist") for e in learner],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--reward-model", type=Path, default=ROOT / "runs" / "local" / "reward_model")
    args = parser.parse_args()
    if not (args.reward_model / "reward_model.json").is_file():
        raise SystemExit(f"no reward model at {args.reward_model}; run `make run` (or rlff train --stage rm)")
    folder = Path(tempfile.mkdtemp(prefix="rlff-bench-async-"))
    try:
        results = {mode: run(mode, args.updates, args.reward_model, folder) for mode in ("sync", "async")}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ratio = results["sync"]["to_n_updates_s"] / results["async"]["to_n_updates_s"]
    for mode, r in results.items():
        print(
            f"{mode:>5}: {r['to_n_updates_s']} s to {r['updates']} updates ({r['command_wall_s']} s command)"
        )
        print("       " + ", ".join(f"{k} {v}" for k, v in r["stage_totals_s"].items()))
        print(f"       updates at {r['update_times_s']} s")
    print(f"async is {ratio:.2f}x faster to {args.updates} updates")
    print(
        json.dumps(
            {
                "name": "async_vs_sync",
                "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
                "updates": args.updates,
                "sync": results["sync"],
                "async": results["async"],
                "speedup": round(ratio, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
