"""A rollout worker on a real local Ray instance checks, before its first work, that the actors it waits
on answer: with every peer answering, its call goes on; with one that never answers, the worker restarts
itself after `rollout.peer_timeout_s`, and once out of restarts its call fails instead of hanging."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import ray

from actors.rollout_worker import RolloutWorker
from esc.config import ActorConfig, build_config
from jobs.launcher import Peers, remote

TIMEOUT_S = 120
PEER_TIMEOUT_S = 2.0


def peer_classes() -> tuple[type, type]:
    """(Answers, Silent), defined in a function so that Ray ships them by value to its workers (this
    module is not importable there)."""

    class Answers:
        """A peer that answers: `ready`, and a store's `put_many` (the worker calls nothing else before
        its first context)."""

        def ready(self) -> int:
            return os.getpid()

        def put_many(self, records: list) -> list[str]:
            return ["stored"] * len(records)

    class Silent:
        """A peer whose `ready` never answers, like a handle that never learned its actor's address."""

        async def ready(self) -> int:
            await asyncio.Event().wait()
            return os.getpid()

    return Answers, Silent


Answers, Silent = peer_classes()


def start_worker(tag: str, counselor: type) -> tuple:
    """A worker (one restart allowed) whose peers are fresh named actors; the counselor is `counselor`."""
    kinds = {"seeker": Answers, "counselor": counselor, "judge": Answers, "store": Answers, "hub": Answers}
    peers = {kind: remote(cls, ActorConfig(), name=f"{tag}-{kind}").remote() for kind, cls in kinds.items()}
    names = Peers(
        roles={"seeker": [f"{tag}-seeker"], "counselor": [f"{tag}-counselor"], "system_agent": [],
               "judge": [f"{tag}-judge"]},
        store=f"{tag}-store",
        hub=f"{tag}-hub",
    )  # fmt: skip
    config = build_config({"rollout": {"peer_timeout_s": PEER_TIMEOUT_S}}).model_dump()
    worker = remote(RolloutWorker, ActorConfig(max_restarts=1)).remote(config, names, f"{tag}-worker")
    return worker, peers


def test_a_worker_whose_peers_answer_works_and_one_whose_peer_is_silent_does_not_hang():
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        worker, _ = start_worker("answers", Answers)
        assert ray.get(worker.collect.remote([]), timeout=TIMEOUT_S) == dict.fromkeys(
            ("stored", "duplicate", "skipped", "stopped"), 0
        )

        worker, _ = start_worker("silent", Silent)
        first_pid = ray.get(worker.ready.remote(), timeout=TIMEOUT_S)
        started = time.monotonic()
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(worker.collect.remote([]), timeout=TIMEOUT_S)
        # two processes each waited out the timeout: the first, then the one Ray restarted it in
        assert time.monotonic() - started >= 2 * PEER_TIMEOUT_S
        assert first_pid is not None
    finally:
        ray.shutdown()
