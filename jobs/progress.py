"""Small helpers shared by the commands: progress bars over concurrent work, and output paths."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from jobs import UsageError


async def gather_with_progress(coros: list, desc: str) -> list:
    """Await all coroutines concurrently (so backends batch them), with a bar moving as each finishes."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    with tqdm(total=len(tasks), desc=desc, file=sys.stderr, disable=not tasks) as bar:
        for task in asyncio.as_completed(tasks):
            await task
            bar.update(1)
    return [t.result() for t in tasks]


def write_report(path: Path, report: dict) -> None:
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


def writable_output(out: str | Path) -> Path:
    """Check before any long work that `out` can be written; returns it as a Path."""
    path = Path(out)
    if path.is_dir():
        raise UsageError(f"cannot write --out {out}: it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot write --out {out}: {error.strerror}") from None
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise UsageError(f"cannot write --out {out}: permission denied")
    return path  # no empty file is left there if the work is stopped before it writes
