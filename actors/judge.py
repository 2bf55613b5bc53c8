"""Judge actor: rates seekers' states for many conversations at once (PPDPP verdict rewards).

Owns one inference backend (from `judge` config, rebuilt on restart) and the Judge role; knows
nothing of workers, the store or training. Plain-dict arguments and results. A run whose candidates
get no simulated futures needs the judge only for its periodic evaluations, and has an hf judge
`release` its model between them; the next rating loads it again.
"""

from __future__ import annotations

import gc
import os
from typing import Any

from actors.common import Throughput, actor_setup
from esc.backends import make_backend
from esc.memory import release_free_memory
from esc.roles import Judge as JudgeRole
from esc.roles import JudgeResult
from esc.schemas import Scenario, Turn


class Judge:
    def __init__(self, config: dict[str, Any]):
        self.run = actor_setup(config, "judge")
        self.judge: JudgeRole | None = self._load()
        self._throughput = Throughput(self.judge.backend)
        self._rating = 0  # ratings under way: `release` waits for none

    def _load(self) -> JudgeRole:
        return JudgeRole(make_backend(self.run.judge, seed=self.run.seed), self.run.judge)

    async def rate(self, scenario: Scenario, history: list[Turn], seed: int | None = None) -> JudgeResult:
        """The judge's rating of the seeker after `history` (loading the model first if it was released)."""
        if self.judge is None:  # no await before the assignment: concurrent calls load it once
            self.judge = self._load()
            self._throughput.swap(self.judge.backend)
        judge = self.judge
        self._rating += 1
        try:
            return await judge.rate(scenario, list(history), seed=seed)
        finally:
            self._rating -= 1

    async def release(self) -> bool:
        """Drop the model (its memory goes back to the OS) until the next `rate` loads it again; whether
        it is released now (False while ratings are under way, which keep it)."""
        if self.judge is not None and self._rating == 0:
            backend, self.judge = self.judge.backend, None
            self._throughput.swap(None)
            await backend.close()
            del backend
            gc.collect()
            release_free_memory()
        return self.judge is None

    def throughput(self) -> dict[str, float]:
        """Tokens processed (prompt + generated) and seconds since start: the dashboard's tokens/s."""
        return self._throughput()

    def ready(self) -> int:
        """The actor's process id, once its model has loaded (the launcher waits on it)."""
        return os.getpid()
