"""The online reward-model refresh without Ray: the trainer (actors/rm_trainer.py) on a real on-disk
replay store and the tiny backbone, its published versions (learner/rm_versions.py), the learner's
side (`FollowedReward`), and the store's kind-aware `drop_stale` and `get_many`. The actor handles
are plain objects whose `method.remote(...)` is awaitable, as a Ray handle's is."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
import torch

from actors.replay_store import ReplayStore
from actors.rm_trainer import CONSUMER, RewardModelTrainer, judge_gap
from actors.rollout_worker import simulated_record
from esc.config import RewardModelConfig, RunConfig
from esc.schemas import CandidateGroup
from learner import rm_versions
from learner.losses import rm_pairwise_loss
from learner.reward_model import RewardModel
from learner.rm_versions import FollowedReward

SCENARIO = {"id": "s", "emotion_type": "anxiety", "problem_type": "work", "situation": "Worried."}


class Handle:
    """`handle.method.remote(*args)` returns an awaitable of `target.method(*args)`."""

    def __init__(self, target):
        self._target = target

    def __getattr__(self, name):
        method = getattr(self._target, name)

        async def call(*args, **kwargs):
            return method(*args, **kwargs)

        return SimpleNamespace(remote=call)


class Hub:
    def __init__(self):
        self.events = []

    def record(self, source, metrics):
        self.events.append((source, metrics))


def group(i: int) -> CandidateGroup:
    seeker = f"I feel alone since my move number {i}."
    candidates = [
        {"text": f"That sounds lonely after move {i}.", "future_reward": 0.5, "label": 2},
        {"text": "Whatever.", "future_reward": -1.0, "label": 0},
    ]
    return CandidateGroup.model_validate(
        {
            "id": f"t:c{i}:v0",
            "scenario": SCENARIO,
            "context": [{"role": "seeker", "text": seeker}],
            "candidates": [
                {**c, "raw": c["text"], "well_formed": True, "policy_version": 0} for c in candidates
            ],
            "policy_version": 0,
            "created_at": float(i),
        }
    )


@pytest.fixture
def setup(tmp_path):
    rm_dir = tmp_path / "reward_model"
    RewardModel.from_config(RewardModelConfig(backbone="tiny-random")).save(rm_dir)
    config = RunConfig.model_validate(
        {
            "reward_model": {"backbone": "tiny-random", "epochs": 50},
            "reward_refresh": {"every": 2, "holdout": 0.0},
            "rollout": {"future_fraction": 1.0},
        }
    ).model_dump()
    store = ReplayStore(tmp_path / "store")
    yield config, store, rm_dir
    store.close()


def trainer_until(config, store, rm_dir, version: int) -> tuple[RewardModelTrainer, Hub, dict]:
    """A (re)started trainer, run until it has published `version` (or has polled 10 times in vain)."""
    hub, box, polls = Hub(), {}, []

    def stopped() -> bool:
        polls.append(1)
        return box["trainer"].version >= version or len(polls) > 10

    gate = SimpleNamespace(stopped=stopped)
    peers = SimpleNamespace(resolve=lambda: ({}, Handle(store), Handle(hub), Handle(gate)))
    box["trainer"] = RewardModelTrainer(config, peers, str(rm_dir))
    outcome = asyncio.run(box["trainer"].run())
    return box["trainer"], hub, outcome


def test_refreshes_publish_versions_and_a_restart_uses_every_label_once(setup):
    config, store, rm_dir = setup
    store.put_many([simulated_record(group(i)) for i in (0, 1)] + [group(0).model_dump()])
    first, hub, outcome = trainer_until(config, store, rm_dir, 1)
    assert rm_versions.latest(rm_dir) == 1 and outcome["version"] == 1
    assert rm_versions.manifest(rm_dir, 1)["ids"] == ["t:c0:v0:simulated", "t:c1:v0:simulated"]
    ((source, metrics),) = hub.events
    assert source == "rm_trainer" and metrics["rm_version"] == 1 and metrics["rm_train_groups"] == 2
    # the gap is the version-0 model's mean score minus the judge's mean reward on the two new groups
    assert -1.25 - 1e-6 <= metrics["rm_judge_gap"] <= 1.25 + 1e-6 and "rm_heldout_accuracy" not in metrics

    # a trainer killed in a refresh had taken two more records and published nothing
    store.put_many([simulated_record(group(i)) for i in (2, 3)])
    assert len(store.sample(10, 0, 10**9, CONSUMER, "simulated")) == 2
    second, hub, _ = trainer_until(config, store, rm_dir, 2)
    used = rm_versions.manifest(rm_dir, 2)["ids"]
    assert used == [f"t:c{i}:v0:simulated" for i in range(4)]
    assert store.ids(consumer=CONSUMER) == set(used)  # taken once each, none left over
    assert hub.events[0][1]["rm_train_groups"] == 4  # trained on the records of version 1 too
    assert store.ids(consumed=False) == {"t:c0:v0"}  # the group record is the learner's, untouched

    # the learner follows the newest version; its scores are version 2's
    follower = FollowedReward(RewardModel.load(rm_dir), rm_dir)
    assert follower.follow() >= 0 and follower.version == 2
    contexts, replies = [group(9).context] * 2, ["That sounds lonely.", "Whatever."]
    expected = RewardModel.load(rm_versions.folder(rm_dir, 2)).score(contexts, replies, [None, None])
    assert follower(contexts, replies, [None, None]) == pytest.approx(expected, abs=1e-6)
    assert follower(contexts, replies, [None, None]) != pytest.approx(
        RewardModel.load(rm_dir).score(contexts, replies, [None, None]), abs=1e-6
    )


def test_a_stopped_trainer_hands_back_what_no_version_used(setup):
    config, store, rm_dir = setup
    store.put_many([simulated_record(group(0))])  # fewer than `every`: no refresh
    hub, gate_calls = Hub(), []

    def stopped():
        gate_calls.append(1)
        return len(gate_calls) > 1

    peers = SimpleNamespace(
        resolve=lambda: ({}, Handle(store), Handle(hub), Handle(SimpleNamespace(stopped=stopped)))
    )
    outcome = asyncio.run(RewardModelTrainer(config, peers, str(rm_dir)).run())
    assert outcome == {"version": 0, "used": 0, "handed_back": 1}
    assert store.ids(consumed=False) == {"t:c0:v0:simulated"} and not hub.events


def test_publish_replaces_a_half_written_version_and_moves_latest_last(tmp_path):
    class Model:
        def save(self, folder):
            folder.mkdir(parents=True)
            (folder / "head").write_text("new")

    (tmp_path / "online" / "v1").mkdir(parents=True)  # left by a trainer killed before LATEST moved
    (tmp_path / "online" / "v1" / "stale").write_text("old")
    assert rm_versions.latest(tmp_path) == 0
    rm_versions.publish(tmp_path, Model(), 1, {"ids": ["a"], "heldout": []})
    assert rm_versions.latest(tmp_path) == 1
    assert sorted(p.name for p in (tmp_path / "online" / "v1").iterdir()) == ["head", "version.json"]
    assert rm_versions.manifest(tmp_path, 1) == {"version": 1, "ids": ["a"], "heldout": []}
    assert rm_versions.folder(tmp_path, 0) == tmp_path


def test_judge_gap_and_weighted_pairwise_loss_by_hand():
    assert judge_gap([0.5, 0.1], [0.0, -0.4]) == pytest.approx(0.5)
    assert judge_gap([], []) is None
    chosen, rejected = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    # -log sigmoid(1) = 0.31326, -log sigmoid(0) = 0.69315; weights 3 and 1
    expected = (3 * 0.31326 + 0.69315) / 4
    assert float(rm_pairwise_loss(chosen, rejected, torch.tensor([3.0, 1.0]))) == pytest.approx(
        expected, abs=1e-4
    )
    assert float(rm_pairwise_loss(chosen, rejected)) == pytest.approx((0.31326 + 0.69315) / 2, abs=1e-4)


def test_drop_stale_of_one_kind_and_get_many(tmp_path):
    store = ReplayStore(tmp_path)
    try:
        old = {"policy_version": 0, "created_at": 0.0}
        store.put_many([{"id": "g", "kind": "group", **old}, {"id": "s", "kind": "simulated", **old}])
        assert store.drop_stale(5, 1, "group") == 1
        assert store.ids(consumed=False) == {"s"}
        assert [r["id"] for r in store.get_many(["s", "missing", "g"])] == ["s", "g"]
    finally:
        store.close()
