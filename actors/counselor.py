"""Counselor actor: the policy, serving many conversations at once, tagged by weights version.

Owns one inference backend (from `counselor` config, or `system_agent` config for the plain system
agent of future simulation) and the Counselor role, behind the crisis-safety check. It serves the
newest weights published under `runs/<name>/weights` (version 0, the base model, when none are), so a
restarted actor comes back on the version it had (with `learner.publish=object_store`, on the newest
version on disk until the next publish reaches it). Every reply carries the version that wrote it. It
knows nothing of workers, the store or the learner.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from typing import Any

from actors.common import Throughput, actor_setup
from esc.backends import BackendError, BackendPool
from esc.roles import Counselor as CounselorRole
from esc.roles import CounselorOutput
from esc.schemas import Turn
from esc.weights import latest


class Counselor:
    def __init__(self, config: dict[str, Any], system_agent: bool = False):
        run = actor_setup(config, "counselor")
        self.weights_dir = run.weights_dir()
        if system_agent:
            run = run.model_copy(update={"counselor": run.system_agent})
        self.pool = BackendPool(seed=run.seed)
        self.counselor = CounselorRole.from_config(run, self.pool)
        self.backend = self.counselor.backend
        self._throughput = Throughput(self.backend)
        self._threads = getattr(self.backend, "torch_threads", None)  # what its placement gave it
        published = None if system_agent else latest(self.weights_dir)
        if published is not None:
            self._load(*published)

    def _load(self, version: int, path) -> None:
        if not hasattr(self.backend, "load_weights"):
            raise BackendError(f"backend '{self.backend.name}' cannot load published weights")
        self.backend.load_weights(version, path if isinstance(path, bytes) else str(path))

    async def load_weights(self, version: int, data: bytes | None = None) -> int:
        """Serve published weights `version`, from the shared filesystem or, with `data`, from the
        safetensors bytes sent through Ray's object store; replies being decoded finish on the old ones."""
        source = data
        if source is None:
            source = self.weights_dir / f"v{version}" / "model.safetensors"
            if not source.is_file():
                raise BackendError(f"no published weights for version {version} at {source}")
        await asyncio.to_thread(self._load, version, source)
        return version

    async def respond(self, history: list[Turn], seed: int | None = None) -> CounselorOutput:
        """Reply to `history`: the role's `CounselorOutput`, its `weights_version` always set (a crisis
        reply, written without the model, carries the version being served)."""
        output = await self.counselor.respond(list(history), seed=seed)
        if output.weights_version is None:
            output = replace(output, weights_version=self.weights_version())
        return output

    def use_all_cores(self, on: bool) -> int | None:
        """While `on`, an hf backend runs on every core this process may use (for work the driver runs
        while nothing else does, like the held-out points before and after the learner); off: back to
        the threads it started with. Returns the backend's thread count now (None: a backend without
        torch threads of its own, e.g. vllm or openai)."""
        if self._threads is None or not hasattr(self.backend, "set_threads"):
            return None
        self.backend.set_threads(len(os.sched_getaffinity(0)) if on else self._threads)
        return self.backend.torch_threads

    def weights_version(self) -> int:
        return getattr(self.backend, "weights_version", 0)

    def stats(self) -> dict:
        return self.pool.report()

    def throughput(self) -> dict[str, float]:
        """Tokens processed (prompt + generated) and seconds since start: the dashboard's tokens/s."""
        return self._throughput()

    def ready(self) -> int:
        """The actor's process id, once its model has loaded (the launcher waits on it)."""
        return os.getpid()
