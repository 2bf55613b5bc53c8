"""Counselor actor: the policy, serving many conversations at once, tagged by weights version.

Owns one inference backend (from `counselor` config, or `system_agent` config for the plain system
agent of future simulation) and the Counselor role, behind the crisis-safety check. It holds a
weights version (0 = the base model) and reports it with every reply, so each record says which
policy wrote it. It knows nothing of workers, the store or the learner.
"""

from __future__ import annotations

import os
from typing import Any

from actors.common import actor_setup
from esc.backends import BackendPool
from esc.roles import Counselor as CounselorRole
from esc.schemas import Turn


class Counselor:
    def __init__(self, config: dict[str, Any], system_agent: bool = False):
        run = actor_setup(config, "counselor")
        if system_agent:
            run = run.model_copy(update={"counselor": run.system_agent})
        self.pool = BackendPool(seed=run.seed)
        self.counselor = CounselorRole.from_config(run, self.pool)
        self.version = 0

    async def respond(self, history: list[dict], seed: int | None = None) -> dict:
        """Reply to `history`: {turn, raw, well_formed, completion_tokens, policy_version}."""
        version = self.version
        output = await self.counselor.respond([Turn.model_validate(t) for t in history], seed=seed)
        return {
            "turn": output.turn.model_dump(),
            "raw": output.raw,
            "well_formed": output.well_formed,
            "completion_tokens": output.completion_tokens,
            "policy_version": version,
        }

    def weights_version(self) -> int:
        return self.version

    def stats(self) -> dict:
        return self.pool.report()

    def ready(self) -> int:
        """The actor's process id, once its model has loaded (the launcher waits on it)."""
        return os.getpid()
