"""First quarter vs last quarter of a run's policy updates, from runs/<name>/metrics.jsonl.

Usage: python bench/run_summary.py [runs/local]
Prints, for format compliance, RM score, total reward and the update's stage times, the mean over the
first and the last quarter of the learner's updates (at least one update each), and the staleness mix.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

KEYS = ("format_rate", "rm_score_mean", "reward_mean", "is_weight_mean", "stage_sample_s", "stage_update_s")


def main(run: Path) -> int:
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    updates = [e for e in events if e.get("source") == "learner"]
    if not updates:
        print(f"no learner updates in {run / 'metrics.jsonl'}")
        return 1
    quarter = max(1, len(updates) // 4)
    first, last = updates[:quarter], updates[-quarter:]
    print(
        f"{run}: {len(updates)} updates, up to version {updates[-1]['weights_version']};"
        f" first/last quarter = {quarter} update(s) each"
    )
    for key in KEYS:
        a = sum(e[key] for e in first) / quarter
        b = sum(e[key] for e in last) / quarter
        print(f"  {key:<16} {a:8.3f} -> {b:8.3f}  ({b - a:+.3f})")
    staleness = Counter()
    for e in updates:
        staleness.update({int(k): v for k, v in e.get("staleness_hist", {}).items()})
    print(f"  staleness of sampled groups (versions behind: groups): {dict(sorted(staleness.items()))}")
    span = updates[-1]["time"] - events[0]["time"]
    print(f"  {span / 60:.1f} min from the first event to the last update")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/local")))
