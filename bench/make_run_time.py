"""Wall time of `make run`: the first time (no runs/local, a fresh model and seeker cache, so the model
conversion, the reward model and both SFT stages all run) and the second time (all three cached),
one after the other on this machine. The virtual environment must already exist (`make install`):
installing packages depends on the network, not on this project.

    .venv/bin/python bench/make_run_time.py [--force] [--out FILE]

It deletes runs/local (so it refuses unless --force or runs/local is absent). Prints each run's time
against the goals of issue 16 (first <= 40 min, cached <= 20 min), the stage times the run folder
records and the held-out learning table's main lines; the last line is the JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "runs" / "local"
GOALS_MIN = {"first": 40.0, "cached": 20.0}


def timed_make_run(env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.call(["make", "run"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if code:
        sys.exit(f"make run failed with exit code {code}; see {log}")
    return seconds


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="delete an existing runs/local")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    if RUN.exists() and not args.force:
        sys.exit(f"{RUN} exists and this benchmark deletes it; pass --force")
    shutil.rmtree(RUN, ignore_errors=True)
    logs = Path(tempfile.mkdtemp(prefix="make-run-time-"))
    env = {**os.environ, "RLFF_CACHE": str(logs / "cache")}  # model + seeker caches start empty
    report: dict = {"name": "make_run_time", "machine": f"{os.cpu_count()} CPUs", "logs": str(logs)}
    for name in ("first", "cached"):
        seconds = timed_make_run(env, logs / f"{name}.log")
        report[f"{name}_s"] = round(seconds, 1)
        verdict = "met" if seconds / 60 <= GOALS_MIN[name] else "MISSED"
        goal = f"goal <= {GOALS_MIN[name]:.0f} min: {verdict}"
        print(f"{name} make run: {seconds / 60:.1f} min ({goal})", flush=True)
    rm, sft = read_json(RUN / "reward_model" / "report.json"), read_json(RUN / "sft" / "report.json")
    report["reward_model_s"] = round(rm.get("seconds", float("nan")), 1)  # features, fit and its report
    report["rank_real_vs_other"] = rm.get("rank_real_vs_other")
    report["sft_s"] = round(sft.get("seconds", float("nan")), 1)
    report["seeker_sft_s"] = round(
        read_json(RUN / "seeker_sft" / "report.json").get("seconds", float("nan")), 1
    )
    learning = read_json(RUN / "learning.json").get("metrics", {})
    for key in ("format_rate", "reward", "rm_score", "distinct2"):
        if key in learning:
            report[key] = {side: learning[key][side] for side in ("base", "final", "diff")}
            b, f, d = (learning[key][side] for side in ("base", "final", "diff"))
            print(
                f"  {key:<12} base {b['value']:.3f}  final {f['value']:.3f}  diff {d['value']:+.3f}"
                f" [{d['lo']:+.3f}, {d['hi']:+.3f}]"
            )
    stages = f"reward model {report['reward_model_s']} s, SFT {report['sft_s']} s"
    print(f"  {stages}, seeker SFT {report['seeker_sft_s']} s; logs in {logs}")
    line = json.dumps(report)
    if args.out:
        args.out.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
