"""Wall time of `make run`: the first time (no runs/local, a fresh model and seeker cache, so the model
conversion, the reward model and both SFT stages all run) and the second time (all three cached),
one after the other on this machine. The virtual environment must already exist (`make install`):
installing packages depends on the network, not on this project.

    .venv/bin/python bench/make_run_time.py [--force] [--first-only] [--out FILE]

It deletes runs/local (so it refuses unless --force or runs/local is absent); `--first-only` stops
after the first run. Prints each run's time against the goals of issue 16 (first <= 40 min, cached
<= 20 min), the minutes from each start to the first held-out point with format compliance >= 0.9
(issue 21: <= 10), the stage times the run folder records and the held-out learning table's main
lines; the last line is the JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "runs" / "local"
GOALS_MIN = {"first": 40.0, "cached": 20.0}
BASE_POINT = re.compile(r"held-out point v0: .* in (\d+) s \(generation")  # `rlff train --stage heldout`
FORMAT_GOAL, FORMAT_GOAL_MIN = 0.9, 10.0  # issue 21: held-out format compliance >= 0.9 within 10 minutes


def timed_make_run(env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.call(["make", "run"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if code:
        sys.exit(f"make run failed with exit code {code}; see {log}")
    return seconds


def minutes_to_format(metrics: Path, started: float, goal: float = FORMAT_GOAL) -> float | None:
    """Minutes from `started` (unix seconds) to the first held-out point of the run's metrics with
    format compliance >= `goal`; None when no point reached it."""
    if not metrics.is_file():
        return None
    for line in metrics.read_text().splitlines():
        event = json.loads(line)
        if event.get("source") == "heldout" and event.get("heldout_format_rate", 0.0) >= goal:
            return (event["time"] - started) / 60
    return None


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="delete an existing runs/local")
    parser.add_argument(
        "--first-only", action="store_true", help="time the first make run, not the cached one"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    if RUN.exists() and not args.force:
        sys.exit(f"{RUN} exists and this benchmark deletes it; pass --force")
    shutil.rmtree(RUN, ignore_errors=True)
    logs = Path(tempfile.mkdtemp(prefix="make-run-time-"))
    env = {**os.environ, "RLFF_CACHE": str(logs / "cache")}  # model + seeker caches start empty
    report: dict = {
        "name": "make_run_time", "machine": f"{os.cpu_count()} CPUs", "logs": str(logs),
        "first_only": args.first_only,
    }  # fmt: skip
    for name in ("first",) if args.first_only else ("first", "cached"):
        started = time.time()
        seconds = timed_make_run(env, logs / f"{name}.log")
        report[f"{name}_s"] = round(seconds, 1)
        verdict = "met" if seconds / 60 <= GOALS_MIN[name] else "MISSED"
        goal = f"goal <= {GOALS_MIN[name]:.0f} min: {verdict}"
        print(f"{name} make run: {seconds / 60:.1f} min ({goal})", flush=True)
        to_format = minutes_to_format(RUN / "metrics.jsonl", started)
        report[f"{name}_minutes_to_format"] = None if to_format is None else round(to_format, 1)
        verdict = "met" if to_format is not None and to_format <= FORMAT_GOAL_MIN else "MISSED"
        shown = "never" if to_format is None else f"{to_format:.1f} min"
        print(f"  held-out format >= {FORMAT_GOAL}: {shown} (goal <= {FORMAT_GOAL_MIN:.0f} min: {verdict})")
    rm, sft = read_json(RUN / "reward_model" / "report.json"), read_json(RUN / "sft" / "report.json")
    report["reward_model_s"] = round(rm.get("seconds", float("nan")), 1)  # features and fit
    report["reward_model_report_s"] = round(rm.get("report_seconds", 0.0), 1)  # deferred: after the run
    point = BASE_POINT.search((logs / "first.log").read_text()) if (logs / "first.log").is_file() else None
    report["heldout_stage_s"] = float(point.group(1)) if point else None
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
    stages += f", seeker SFT {report['seeker_sft_s']} s, held-out point {report['heldout_stage_s']} s"
    print(f"  {stages}, reward model report {report['reward_model_report_s']} s; logs in {logs}")
    line = json.dumps(report)
    if args.out:
        args.out.write_text(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
