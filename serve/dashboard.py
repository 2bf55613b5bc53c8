"""The live dashboard's data: what a run folder holds, read as it grows.

The page (`serve/static/dashboard.html` + `dashboard.js`, Plotly from the installed `plotly` package,
no CDN) opens one server-sent-events stream. Each event is a JSON object:
`{"metrics": [new metrics.jsonl events], "dialogues": [new dialogues.jsonl records],
"status": {"weights_version", "run", "reward_model", "time"}}`; the first event carries the history.
Reading files keeps the dashboard independent of the actors: it works during a run, after it, and on
any machine that sees the run folder. Nothing here knows about Ray.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

HISTORY_EVENTS = 20000  # metrics events the first message carries at most
STATIC = Path(__file__).with_name("static")


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
    """Held-out accuracy of the run's reward model (runs/<name>/reward_model/report.json), if trained."""
    try:
        report = json.loads((run_dir / "reward_model" / "report.json").read_text())
        valid = report["fit"]["valid"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    keys = ("accuracy", "macro_f1", "majority_baseline", "n")
    return {"formulation": report.get("formulation"), **{k: valid.get(k) for k in keys}}


async def event_stream(
    run_dir: Path, status: Callable[[], dict[str, Any]], feed_size: int, interval_s: float = 1.0
) -> AsyncIterator[str]:
    """Server-sent events for one dashboard client, every `interval_s`, for as long as it listens."""
    metrics, dialogues = FileTail(run_dir / "metrics.jsonl"), FileTail(run_dir / "dialogues.jsonl")
    first = True
    while True:
        payload = {
            "metrics": metrics.read()[-HISTORY_EVENTS:] if first else metrics.read(),
            "dialogues": dialogues.read()[-feed_size:],
            "status": {**status(), "reward_model": reward_model_summary(run_dir)},
        }
        first = False
        yield f"data: {json.dumps(payload)}\n\n"
        await asyncio.sleep(interval_s)
