"""Reward-model versions of an online refresh, on disk under `runs/<name>/reward_model/online/`.

Version 0 is the reward model trained before the run (`runs/<name>/reward_model` itself). The trainer
(`actors/rm_trainer.py`) publishes version M as `online/v<M>/`: the head `RewardModel.save` writes, and
`version.json` with every simulated record it used (`ids`, in the order taken; `heldout` the ones it was
checked on), its metrics and when it was trained. The folder is written under a temporary name and
renamed, then `online/LATEST` is replaced, so a reader of LATEST always finds a whole folder.

`FollowedReward` is the learner's side: the reward function at the newest published version, switched
by `follow()` between updates (a file read, and a small head load when a version is new), so the
learner never waits for a refresh.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ONLINE = "online"
MANIFEST = "version.json"


def online_dir(rm_dir: str | Path) -> Path:
    return Path(rm_dir) / ONLINE


def latest(rm_dir: str | Path) -> int:
    """The newest published version; 0 when none was published."""
    path = online_dir(rm_dir) / "LATEST"
    return int(path.read_text().strip()) if path.is_file() else 0


def folder(rm_dir: str | Path, version: int) -> Path:
    """Where version `version` lives (0: the reward model trained before the run)."""
    return Path(rm_dir) if version == 0 else online_dir(rm_dir) / f"v{version}"


def manifest(rm_dir: str | Path, version: int) -> dict[str, Any]:
    """version.json of a published version; version 0 used no simulated record."""
    if version == 0:
        return {"version": 0, "ids": [], "heldout": []}
    return json.loads((folder(rm_dir, version) / MANIFEST).read_text())


def publish(rm_dir: str | Path, model: Any, version: int, record: dict[str, Any]) -> Path:
    """Write `model` (a RewardModel) and `record` (ids, heldout, metrics...) as version `version`, then
    point LATEST at it. A folder of that version left by a trainer killed before LATEST moved is
    replaced."""
    online = online_dir(rm_dir)
    online.mkdir(parents=True, exist_ok=True)
    final, temporary = online / f"v{version}", online / f".v{version}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    model.save(temporary)
    (temporary / MANIFEST).write_text(json.dumps({"version": version, **record}, indent=1) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.rename(temporary, final)
    pointer = online / ".LATEST.tmp"
    pointer.write_text(f"{version}\n")
    os.replace(pointer, online / "LATEST")
    return final


class FollowedReward:
    """The learner's reward function: `model` (a RewardModel loaded from `rm_dir`) at the newest
    published version. `version` is the version that scores now."""

    def __init__(self, model: Any, rm_dir: str | Path):
        self.model, self.rm_dir, self.version = model, Path(rm_dir), 0

    def follow(self, newest: int | None = None) -> float:
        """Switch to version `newest` (default: LATEST) when it is newer; returns the seconds spent."""
        started = time.perf_counter()
        newest = latest(self.rm_dir) if newest is None else newest
        if newest > self.version:
            self.model.load_head(folder(self.rm_dir, newest))
            self.version = newest
        return time.perf_counter() - started

    def __call__(
        self, contexts: Sequence[Any], answers: Sequence[str], intensities: Sequence[int | None]
    ) -> list[float]:
        return self.model.score(contexts, answers, intensities)
