"""Judge actor: rates seekers' states for many conversations at once (PPDPP verdict rewards).

Owns one inference backend (from `judge` config, rebuilt on restart) and the Judge role; knows
nothing of workers, the store or training. Plain-dict arguments and results. A run whose candidates
get no simulated futures starts a judge for each periodic evaluation and ends it after
(`jobs.launcher.start_evaluation_roles`).
"""

from __future__ import annotations

import os
from typing import Any

from actors.common import Throughput, actor_setup
from esc.backends import make_backend
from esc.roles import Judge as JudgeRole
from esc.roles import JudgeResult
from esc.schemas import Scenario, Turn


class Judge:
    def __init__(self, config: dict[str, Any]):
        run = actor_setup(config, "judge")
        self.judge = JudgeRole(make_backend(run.judge, seed=run.seed), run.judge)
        self._throughput = Throughput(self.judge.backend)

    async def rate(self, scenario: Scenario, history: list[Turn], seed: int | None = None) -> JudgeResult:
        """The judge's rating of the seeker after `history`."""
        return await self.judge.rate(scenario, list(history), seed=seed)

    def throughput(self) -> dict[str, float]:
        """Tokens processed (prompt + generated) and seconds since start: the dashboard's tokens/s."""
        return self._throughput()

    def ready(self) -> int:
        """The actor's process id, once its model has loaded (the launcher waits on it)."""
        return os.getpid()
