"""UserSimulator actor: the help-seeker, serving many conversations at once.

Owns one inference backend (built from `seeker` config in the constructor, so a restarted actor
comes back the same) and the Seeker role. Knows nothing of workers, the store or training. Arguments
and results are plain dicts (the wire types' `model_dump()`), validated on arrival.
"""

from __future__ import annotations

import os
from typing import Any

from actors.common import Throughput, actor_setup
from esc.backends import make_backend
from esc.roles import Seeker
from esc.schemas import Scenario, Turn


class UserSimulator:
    def __init__(self, config: dict[str, Any]):
        run = actor_setup(config, "seeker")
        self.seeker = Seeker(make_backend(run.seeker, seed=run.seed), run.seeker)
        self._throughput = Throughput(self.seeker.backend)

    async def speak(self, scenario: Scenario, history: list[Turn], seed: int | None = None) -> Turn:
        """The seeker's next turn after `history`."""
        return await self.seeker.speak(scenario, list(history), seed=seed)

    def throughput(self) -> dict[str, float]:
        """Tokens processed (prompt + generated) and seconds since start: the dashboard's tokens/s."""
        return self._throughput()

    def ready(self) -> int:
        """The actor's process id, once its model has loaded (the launcher waits on it)."""
        return os.getpid()
