"""RewardModelTrainer actor: retrains the reward model on simulated futures while the policy learns.

Beside each group with simulated futures, rollout workers put a record of kind 'simulated' (the group
again, `actors.rollout_worker.simulated_record`). `run()` takes those records from the replay store as
consumer 'rm-trainer' and, after every `reward_refresh.every` new ones, trains a fresh head on all it
has taken (less the held-out share, `reward_refresh.holdout`, chosen by a hash of the id; plus
data-grounded ESConv examples at `reward_refresh.data_weight`), checks it on the held-out ones and
publishes reward-model version M (`learner.rm_versions`). The learner switches to the newest version
between its updates, so it never waits for a refresh. Before training on new groups, the trainer
scores them with the newest model and records how far that score is above the judge's future reward
(`rm_judge_gap`: the over-optimisation signal; a policy that games the reward model raises it).

Restartable: each published version lists every record it used. A restarted trainer reloads those
records, hands back to the store the ones it had taken but not yet published (`requeue`), and goes on,
so no label is lost or used twice. `run()` ends when the staleness gate says the run is stopping, and
hands back what it took since its last version. `runs/<name>/reward_model/online/trainer.json` says
what it is doing (state, version, pid).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from actors.common import actor_setup
from actors.rollout_worker import SIMULATED
from esc.data import hash_split, load_dialogues, parse_spec
from esc.schemas import CandidateGroup
from learner import rm_versions
from learner.reward_model import RewardModel
from learner.rm_data import RMExample, data_grounded_examples, simulated_examples

CONSUMER = "rm-trainer"
TAKE = 64  # records taken from the store per call
POLL_S = 1.0  # how often an idle trainer asks the store for new records


def judge_gap(scores: list[float], rewards: list[float]) -> float | None:
    """Mean reward-model score minus mean judge future reward over the same candidates (None if none)."""
    if not scores:
        return None
    return sum(scores) / len(scores) - sum(rewards) / len(rewards)


class RewardModelTrainer:
    def __init__(self, config: dict[str, Any], peers: Any, rm_dir: str):
        """`peers.resolve()` gives the store, metrics hub and staleness gate (`jobs.launcher.Peers`);
        `rm_dir`: the reward model trained before the run, version 0."""
        self.run_config = actor_setup(config, "rm_trainer")
        _, self.store, self.hub, self.gate = peers.resolve()
        self.rm_dir = Path(rm_dir)
        self.model = RewardModel.load(rm_dir)  # the newest version's head is loaded in `_restore`
        self.model.memo = {}  # the backbone is frozen: each text is embedded once per process
        self.version = 0
        self.used: list[str] = []  # simulated record ids of the newest version, in the order taken
        self.groups: dict[str, CandidateGroup] = {}  # by record id: everything taken
        self.fresh: list[str] = []  # taken since the newest version
        self.data: list[RMExample] = []
        self.status("starting")

    def status(self, state: str) -> None:
        """online/trainer.json: what the trainer is doing (tests and people watch it)."""
        folder = rm_versions.online_dir(self.rm_dir)
        folder.mkdir(parents=True, exist_ok=True)
        line = {"state": state, "version": self.version, "pid": os.getpid(), "time": time.time()}
        (folder / ".trainer.tmp").write_text(json.dumps(line) + "\n")
        os.replace(folder / ".trainer.tmp", folder / "trainer.json")

    async def run(self) -> dict[str, Any]:
        """Refresh until the run stops; returns the newest version and how many records it used."""
        await self._restore()
        every = self.run_config.reward_refresh.every
        while not await self.gate.stopped.remote():
            taken = await self.store.sample.remote(TAKE, 0, 10**9, CONSUMER, SIMULATED)
            for record in taken:
                self.groups[record["id"]] = CandidateGroup.model_validate(record["group"])
                self.fresh.append(record["id"])
            if len(self.fresh) >= every and self._training_ids():
                self.status("training")
                metrics = await asyncio.to_thread(self.refresh)
                await self.hub.record.remote("rm_trainer", metrics)
                self.status("waiting")
            elif not taken:
                await asyncio.sleep(POLL_S)
        handed_back = await self.store.requeue.remote(CONSUMER, self.used)
        self.status("stopped")
        return {"version": self.version, "used": len(self.used), "handed_back": handed_back}

    async def _restore(self) -> None:
        """Pick up the newest published version: its head, the records it used (the rest of what this
        consumer took goes back to the store) and, when asked for, the data-grounded examples."""
        self.version = rm_versions.latest(self.rm_dir)
        self.used = list(rm_versions.manifest(self.rm_dir, self.version)["ids"])
        if self.version:
            self.model.load_head(rm_versions.folder(self.rm_dir, self.version))
        await self.store.requeue.remote(CONSUMER, self.used)
        records = await self.store.get_many.remote(self.used)
        self.groups = {r["id"]: CandidateGroup.model_validate(r["group"]) for r in records}
        self.fresh = []
        refresh = self.run_config.reward_refresh
        if refresh.data_weight and not self.data:
            self.data = await asyncio.to_thread(self._data_examples)
        self.status("waiting")

    def _data_examples(self) -> list[RMExample]:
        """Data-grounded examples of ESConv's train split (as `rlff train --stage rm` builds them)."""
        cfg, refresh, seed = (
            self.run_config.reward_model,
            self.run_config.reward_refresh,
            self.run_config.seed,
        )
        spec = dataclasses.replace(parse_spec(cfg.data or ""), split="train")
        examples = data_grounded_examples(load_dialogues(spec, seed=seed), cfg, seed, refresh.data_contexts)
        return [dataclasses.replace(e, weight=refresh.data_weight) for e in examples]

    def _held_out(self, record_id: str) -> bool:
        holdout = self.run_config.reward_refresh.holdout
        return hash_split(record_id, self.run_config.seed, (1.0 - holdout, holdout, 0.0)) != "train"

    def _training_ids(self) -> list[str]:
        return [i for i in [*self.used, *self.fresh] if not self._held_out(i)]

    def refresh(self) -> dict[str, Any]:
        """Train version M+1 on every record taken so far and publish it; returns its metrics."""
        started = time.time()
        fresh = simulated_examples(self.groups[i] for i in self.fresh)
        scores = self.model.score(
            [e.context for e in fresh], [e.reply for e in fresh], [e.intensity for e in fresh]
        )
        gap = judge_gap(scores, [e.reward for e in fresh])
        ids = [*self.used, *self.fresh]
        assert len(set(ids)) == len(ids), "a simulated record was taken twice"
        heldout = [i for i in ids if self._held_out(i)]
        train = simulated_examples(self.groups[i] for i in ids if not self._held_out(i))
        valid = simulated_examples(self.groups[i] for i in heldout)
        model = RewardModel(self.model.cfg, self.model.lm, self.model.tokenizer, self.model.seed)
        model.memo = self.model.memo
        fit = model.fit(train + self.data, valid)
        metrics = {
            "rm_version": self.version + 1,
            "rm_heldout_accuracy": fit["valid"].get("pairwise_accuracy") if valid else None,
            "rm_judge_gap": gap,
            "rm_train_groups": len(ids) - len(heldout),
            "rm_refresh_s": time.time() - started,
        }
        record = {
            "ids": ids,
            "heldout": heldout,
            "metrics": metrics,
            "started": started,
            "finished": time.time(),
        }
        rm_versions.publish(self.rm_dir, model, self.version + 1, record)
        self.model, self.version, self.used, self.fresh = model, self.version + 1, ids, []
        return {k: v for k, v in metrics.items() if v is not None}

    def ready(self) -> int:
        return os.getpid()
