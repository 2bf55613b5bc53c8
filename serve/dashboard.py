"""The live dashboard's data: what a run folder holds, read as it grows.

The page (`serve/static/dashboard.html` + `dashboard.js`, Plotly from the installed `plotly` package,
no CDN) opens one server-sent-events stream. Each event is a JSON object:
`{"metrics": [new metrics.jsonl events], "dialogues": [new dialogues.jsonl records],
"status": {"weights_version", "run", "reward_model", "progress", "seeker_role", "now"}}`; the first event
carries the history. A value that is not a finite number (a NaN gradient norm of a skipped step, a
correlation of constant scores) is sent as null, which the browser's JSON parser reads and the charts
skip; a bare NaN would make it throw away every event. Reading files keeps the dashboard independent
of the actors: it works during a run, after it, and on any machine that sees the run folder. Nothing
here knows about Ray.

Seeker role consistency: when the run folder holds a trained seeker-role checker
(`runs/<name>/seeker_checker.json`, `esc.seeker_check.RoleChecker`), every simulated seeker turn of
the feed gets `in_role` and `seeker_p`, and `status.seeker_role` counts them over the whole feed file.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

HISTORY_EVENTS = 20000  # metrics events the first message carries at most
STATIC = Path(__file__).with_name("static")
CHECKER_FILE = "seeker_checker.json"  # in the run folder: the seeker-role checker the feed is marked with


def plotly_js() -> Path:
    """plotly.min.js from the installed plotly package."""
    import plotly

    path = Path(plotly.__file__).with_name("package_data") / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(
            f"plotly.min.js is missing from the plotly package at {path}; reinstall plotly"
        )
    return path


class FileTail:
    """The complete JSON lines appended to a file since the last `read()`. A file that shrank (a run
    started anew in the same folder) is read again from the start; a line that is not JSON is skipped."""

    def __init__(self, path: str | Path):
        self.path, self.offset = Path(path), 0

    def read(self) -> list[dict[str, Any]]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:
            self.offset = 0
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        self.offset += end
        out = []
        for line in data[:end].splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out


def reward_model_summary(run_dir: Path) -> dict[str, Any] | None:
    """Held-out quality of the run's reward model (runs/<name>/reward_model/report.json), if trained:
    how often it ranks the real reply above another conversation's, and how its scores correlate with
    the future-oriented labels of real replies (each a value or None)."""
    try:
        report = json.loads((run_dir / "reward_model" / "report.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict):
        return None

    def value(key: str) -> float | None:
        part = report.get(key)
        return part.get("value") if isinstance(part, dict) else None

    return {
        "rank_real_vs_other": value("rank_real_vs_other"),
        "label_correlation": value("label_correlation"),
    }


def run_progress(run_dir: Path) -> dict[str, Any]:
    """What is cheap to know about a run's progress: `planned_updates` (learner.max_updates of the
    run's config.json, None without one), `heldout` (whether that config has held-out points, so the
    page can say when one is being measured) and `started` (Unix seconds: the earlier of config.json's
    write and the first metrics event, None when neither exists)."""
    planned, heldout, times = None, False, []
    config = run_dir / "config.json"
    try:
        tree = json.loads(config.read_text())
        planned = tree["learner"]["max_updates"]
        heldout = bool((tree.get("evaluation") or {}).get("heldout"))
        times.append(config.stat().st_mtime)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    try:
        with (run_dir / "metrics.jsonl").open("rb") as f:
            times.append(float(json.loads(f.readline())["time"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {"planned_updates": planned, "heldout": heldout, "started": min(times) if times else None}


class SeekerMarks:
    """Marks the simulated seeker turns of feed records with the run's seeker-role checker, loaded from
    `runs/<name>/seeker_checker.json` when that file appears (and again when it changes), and counts
    them. Without the file (or the `esc.seeker_check` module) it marks nothing."""

    def __init__(self, run_dir: Path):
        self.path, self.stamp, self.checker = run_dir / CHECKER_FILE, None, None
        self.in_role = self.turns = 0

    def _load(self) -> None:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self.stamp, self.checker = None, None
            return
        if stamp == self.stamp:
            return
        self.stamp = stamp
        try:
            from esc.seeker_check import RoleChecker

            self.checker = RoleChecker.load(self.path)
        except (ImportError, OSError, ValueError, KeyError, TypeError):
            self.checker = None  # a broken or half-written file: tried again when it changes

    def mark(self, records: list[dict[str, Any]]) -> None:
        """Add `in_role` (bool) and `seeker_p` to every seeker turn marked `simulated`, in place."""
        self._load()
        if self.checker is None:
            return
        for record in records:
            turns = list(record.get("turns") or [])
            for candidate in record.get("candidates") or []:
                turns += candidate.get("future") or []
            for turn in turns:
                if turn.get("role") == "seeker" and turn.get("simulated"):
                    turn["seeker_p"] = float(self.checker.seeker_probability(turn["text"]))
                    turn["in_role"] = bool(self.checker.in_role(turn["text"]))
                    self.in_role += turn["in_role"]
                    self.turns += 1

    def summary(self) -> dict[str, Any]:
        """{"checker": whether one is loaded, "in_role", "turns"}: counts over every record marked."""
        return {"checker": self.checker is not None, "in_role": self.in_role, "turns": self.turns}


async def event_stream(
    run_dir: Path, status: Callable[[], dict[str, Any]], feed_size: int, interval_s: float = 1.0
) -> AsyncIterator[str]:
    """Server-sent events for one dashboard client, every `interval_s`, for as long as it listens.
    File reading and seeker marking run in a worker thread so the server's event loop keeps serving."""
    metrics, dialogues = FileTail(run_dir / "metrics.jsonl"), FileTail(run_dir / "dialogues.jsonl")
    marks = SeekerMarks(run_dir)

    def tick(first: bool) -> dict[str, Any]:
        records = dialogues.read()
        marks.mark(records)
        return {
            "metrics": metrics.read()[-HISTORY_EVENTS:] if first else metrics.read(),
            "dialogues": records[-feed_size:],
            "status": {
                "reward_model": reward_model_summary(run_dir),
                "progress": run_progress(run_dir),
                "seeker_role": marks.summary(),
                "now": time.time(),
            },
        }

    first = True
    while True:
        payload = await asyncio.to_thread(tick, first)
        payload["status"].update(status())
        first = False
        yield f"data: {json.dumps(finite(payload), allow_nan=False)}\n\n"
        await asyncio.sleep(interval_s)


def finite(value: Any) -> Any:
    """`value` (JSON-like: dicts, lists, scalars) with every float that is NaN or infinite made None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
