"""What `rlff run` prints: one progress line per policy update, with the libraries' chatter in a file.

`quiet_libraries(log_file)` sends Python warnings and the log records of Ray, Ray Train, Ray Serve,
transformers and friends to `log_file` instead of the terminal (the run's own lines are plain prints).
`Progress` turns the metrics hub's latest values into one line per new weights version: version,
updates done / planned, held-out and training reward, format compliance, seconds per update and the
time left. Nothing here imports Ray.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

# Loggers whose records go to the run's log file rather than the terminal.
LIBRARY_LOGGERS = (
    "ray",
    "ray.train",
    "ray.serve",
    "ray.data",
    "transformers",
    "torch",
    "filelock",
    "urllib3",
)


def quiet_libraries(log_file: Path) -> Path:
    """Route warnings and library log records to `log_file` (appended); returns its path."""
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in (*LIBRARY_LOGGERS, "py.warnings"):
        logger = logging.getLogger(name)
        for old in logger.handlers:  # an earlier call's file handler: closed, not left to the collector
            old.close()
        logger.handlers = [handler]
        logger.propagate = False
    logging.captureWarnings(True)  # warnings.warn(...) becomes a record of the 'py.warnings' logger
    warnings.simplefilter("default")  # each distinct warning once per place, in the file
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:  # progress bars of model loading in this process (the held-out report loads the reward model)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # transformers is a dependency; this only keeps config-only uses import-light
        pass
    return log_file


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _value(metrics: dict[str, Any], key: str, digits: int = 3) -> str:
    value = metrics.get(key)
    return "-" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def progress_line(
    version: int,
    planned: int,
    done: int,
    learner: dict[str, Any],
    heldout: dict[str, Any],
    seconds_per_update: float | None,
) -> str:
    """One line: 'update 3/8  v3  held-out reward 0.41 [0.35, 0.47] @v0  train reward 0.38
    format 0.95  41 s/update  ~3m25s left'. Missing values print as '-'."""
    held = "-"
    if isinstance(heldout.get("heldout_reward"), (int, float)):
        held = (
            f"{heldout['heldout_reward']:.3f} [{_value(heldout, 'heldout_reward_lo')},"
            f" {_value(heldout, 'heldout_reward_hi')}] @v{heldout.get('weights_version', '?')}"
        )
    speed = "-" if seconds_per_update is None else f"{seconds_per_update:.0f} s/update"
    left = "-" if seconds_per_update is None else "~" + _duration(seconds_per_update * (planned - done))
    return (
        f"update {done}/{planned}  v{version}  held-out reward {held}  train reward"
        f" {_value(learner, 'reward_mean')}  format {_value(learner, 'format_rate', 2)}  {speed}  {left} left"
    )


class Progress:
    """Prints a progress line whenever the learner has published a new version.

    `update(snapshot)` takes the metrics hub's `snapshot()` ({source: {metric: latest value}}) and
    returns the line it printed, or None when nothing changed. Seconds per update are measured from the
    start of this process and `start_version`, so a resumed run does not count the time before it.
    """

    def __init__(self, planned: int, start_version: int = 0, clock=time.monotonic):
        self.planned, self.start_version, self.clock = planned, start_version, clock
        self.started = clock()
        self.last: int | None = None

    def update(self, snapshot: dict[str, dict[str, Any]]) -> str | None:
        learner = snapshot.get("learner", {})
        version = learner.get("weights_version")
        if not isinstance(version, int) or version == self.last:
            return None
        self.last = version
        fresh = version - self.start_version  # updates this process has seen (a resume starts later)
        per = (self.clock() - self.started) / fresh if fresh > 0 else None
        line = progress_line(
            version, self.planned, min(version, self.planned), learner, snapshot.get("heldout", {}), per
        )
        print(line, flush=True)
        return line
