"""The training stages of `make run` one after the other on every core, against side by side on half
the cores each (the reward model beside the counselor's SFT then the seeker's), as the Makefile runs
them. Shortened stages (reward model on --contexts contexts, SFT and seeker SFT --steps steps each) on
ESConv, in fresh run folders; both layouts in one run, so the ratio is measured under the same load.

    .venv/bin/python bench/parallel_stages.py [--esconv PATH] [--contexts 100] [--steps 24]

Prints each layout's wall time, each stage's own time and the ratio; the last line is the JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RLFF = str(ROOT / ".venv" / "bin" / "rlff")


def stage_args(esconv: str, contexts: int, steps: int, name: str) -> list[str]:
    sets = {
        "reward_model.data": f"esconv:{esconv}",
        "sft.data": f"esconv:{esconv}#train",
        "seeker_sft.data": f"esconv:{esconv}#train",
        "data.scenarios": f"esconv:{esconv}#train",
        "reward_model.max_contexts": contexts,
        "reward_model.valid_contexts": contexts // 2,
        "sft.max_steps": steps,
        "seeker_sft.max_steps": max(1, steps // 3),  # 32 of 96 in configs/local.yaml
        "name": name,
    }
    return ["--config", "configs/local.yaml", *(a for k, v in sets.items() for a in ("--set", f"{k}={v}"))]


def start(stage: str, args: list[str], threads: int | None, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else dict(os.environ)
    command = [RLFF, "train", "--stage", stage, *args]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, log: Path) -> None:
    if process.wait() != 0:
        raise SystemExit(f"{' '.join(process.args[1:4])} failed; see {log}")


def layout(name: str, args: list[str], cores: int, parallel: bool, logs: Path) -> dict[str, float]:
    """Wall seconds of the three stages and of each, in one layout."""
    shutil.rmtree(ROOT / "runs" / name, ignore_errors=True)
    threads = max(1, cores // 2) if parallel else None
    started, took = time.perf_counter(), {}
    rm = start("rm", args, threads, logs / f"{name}-rm.log") if parallel else None
    for stage in ("sft", "seeker") if parallel else ("rm", "sft", "seeker"):
        begun = time.perf_counter()
        finish(start(stage, args, threads, logs / f"{name}-{stage}.log"), logs / f"{name}-{stage}.log")
        took[stage] = time.perf_counter() - begun
    if rm is not None:
        finish(rm, logs / f"{name}-rm.log")
        took["rm"] = time.perf_counter() - started  # it started with the SFT
    took["wall"] = time.perf_counter() - started
    shutil.rmtree(ROOT / "runs" / name, ignore_errors=True)
    return {k: round(v, 1) for k, v in took.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--esconv", default=str(ROOT.parent / "shared" / "data" / "esconv"))
    parser.add_argument("--contexts", type=int, default=100, help="reward-model training contexts")
    parser.add_argument("--steps", type=int, default=24, help="counselor SFT steps (seeker: a third)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    logs = ROOT / "runs" / "bench" / "parallel_stages"
    logs.mkdir(parents=True, exist_ok=True)
    report: dict = {"name": "parallel_stages", "cores": cores}
    for name, parallel in (("bench-sequential", False), ("bench-parallel", True)):
        report[name.split("-")[1]] = layout(
            name, stage_args(args.esconv, args.contexts, args.steps, name), cores, parallel, logs
        )
        print(f"{name.split('-')[1]:<10} {report[name.split('-')[1]]}", flush=True)
    report["speedup"] = round(report["sequential"]["wall"] / report["parallel"]["wall"], 2)
    print(f"side by side on {max(1, cores // 2)} thread(s) each: {report['speedup']}x the sequential speed")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
