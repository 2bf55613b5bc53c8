"""A Counselor actor on real Ray swaps to published weights while serving, tags every reply with the
version that wrote it, and comes back on the published version after a crash."""

from __future__ import annotations

import ray
from support.ray_helpers import wait_for_new_process

from actors.counselor import Counselor
from esc.config import ActorConfig, load_config
from esc.models import load_model, tiny_random_model
from esc.schemas import Turn
from esc.weights import publish, to_bytes
from jobs.launcher import remote

TIMEOUT_S = 120
HISTORY = [Turn(role="seeker", text="I feel lonely since I moved.")]


def test_counselor_swaps_weights_and_reloads_them_after_restart(tmp_path):
    config = load_config(
        "configs/local.yaml",
        ["counselor.model=tiny-random", "counselor.temperature=1.0", "counselor.max_new_tokens=8",
         f"runs_dir={tmp_path}", "name=w"],
    )  # fmt: skip
    _, tokenizer = load_model("tiny-random")
    publish(tiny_random_model(len(tokenizer), seed=1).state_dict(), config.weights_dir(), 1)
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        (config.weights_dir() / "LATEST").unlink()  # the actor starts on the base weights
        actor = remote(Counselor, ActorConfig(max_restarts=1)).remote(config.model_dump())
        base = ray.get(actor.respond.remote(HISTORY, 7), timeout=TIMEOUT_S)
        assert base.weights_version == 0

        assert ray.get(actor.load_weights.remote(1), timeout=TIMEOUT_S) == 1
        new = ray.get(actor.respond.remote(HISTORY, 7), timeout=TIMEOUT_S)
        assert new.weights_version == 1 and new.raw != base.raw

        publish(tiny_random_model(len(tokenizer), seed=1).state_dict(), config.weights_dir(), 2)
        old_pid = ray.get(actor.ready.remote(), timeout=TIMEOUT_S)
        ray.kill(actor, no_restart=False)  # a crash: the restarted actor loads the newest published version
        wait_for_new_process(actor, old_pid)
        assert ray.get(actor.weights_version.remote(), timeout=TIMEOUT_S) == 2
        again = ray.get(actor.respond.remote(HISTORY, 7), timeout=TIMEOUT_S)
        assert again.weights_version == 2 and again.raw == new.raw  # v2 holds the same weights as v1

        # learner.publish=object_store: the bytes travel through Ray's object store, nothing on disk
        data = ray.put(to_bytes(tiny_random_model(len(tokenizer), seed=5).state_dict()))
        assert ray.get(actor.load_weights.remote(3, data), timeout=TIMEOUT_S) == 3
        third = ray.get(actor.respond.remote(HISTORY, 7), timeout=TIMEOUT_S)
        assert third.weights_version == 3 and third.raw != new.raw
        assert not (config.weights_dir() / "v3").exists()
    finally:
        ray.shutdown()
