"""RolloutWorker actor: turns contexts into candidate groups with future-oriented rewards, streaming
each finished group into the replay store.

It owns no model: it drives the UserSimulator, Counselor, system-agent Counselor and Judge actors
through small proxies that look like the `esc` roles, so the same `esc.episode.future_reward` code
runs in-process and on Ray. Many contexts are in flight at once (`rollout.in_flight`), so the role
actors see concurrent requests and batch them.

Resumable by construction: a group's id is derived from (run, context, policy version) and the
worker skips contexts whose group the store already holds; the store's put is idempotent by id. A
restarted worker re-run on the same contexts therefore neither duplicates nor loses a group.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import sys
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from actors.common import actor_setup, peers_answer
from actors.feed import episode_feed, group_feed
from actors.store_puts import CoalescedPuts
from esc.episode import Roles, future_reward, run_episode
from esc.metrics import interactive_summary
from esc.roles import CounselorOutput, JudgeResult
from esc.schemas import Candidate, CandidateGroup, Context, Scenario, Turn

FULL_BACKOFF_S = (0.05, 2.0)  # first and largest wait while the store reports 'full'
SIMULATED = "simulated"  # the store kind of the records the reward-model trainer consumes


def group_id(run: str, context_id: str, version: int) -> str:
    return f"{run}:{context_id}:v{version}"


def simulated_record(group: CandidateGroup) -> dict[str, Any]:
    """The store record of kind 'simulated' that the reward-model trainer (`actors/rm_trainer.py`)
    consumes for a group with simulated futures: the group again, under its own id."""
    return {
        "id": f"{group.id}:{SIMULATED}",
        "kind": SIMULATED,
        "policy_version": group.policy_version,
        "created_at": group.created_at,
        "group": group.model_dump(),
    }


def derived_seed(key: str) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % 2**31


class _Spread:
    """Round-robin over the replicas of one role."""

    def __init__(self, handles: list):
        self._cycle = itertools.cycle(handles)

    def next(self):
        return next(self._cycle)


class RemoteSeeker(_Spread):
    async def speak(self, scenario: Scenario, history: list[Turn], seed: int | None = None) -> Turn:
        return await self.next().speak.remote(scenario, list(history), seed)


class RemoteCounselor(_Spread):
    async def respond(self, history: list[Turn], seed: int | None = None) -> CounselorOutput:
        return await self.next().respond.remote(list(history), seed)


class RemoteJudge(_Spread):
    async def rate(self, scenario: Scenario, history: list[Turn], seed: int | None = None) -> JudgeResult:
        return await self.next().rate.remote(scenario, list(history), seed)


class RolloutWorker:
    def __init__(self, config: dict[str, Any], peers: Any, worker_id: str):
        """`peers.resolve()` gives (role handles by role, store, metrics hub, gate) in this process
        (`jobs.launcher.Peers`); the gate is a StalenessGate for the online loop (admission control),
        None in `collect`."""
        self.run = actor_setup(config, "rollout_worker")
        handles, store, hub, gate = peers.resolve()
        self.roles = Roles(
            seeker=RemoteSeeker(handles["seeker"]),
            counselor=RemoteCounselor(handles["counselor"]),
            judge=RemoteJudge(handles["judge"]),
            system_agent=RemoteCounselor(handles["system_agent"]),
        )
        self.counselors = handles["counselor"]
        self._peers = [h for hs in handles.values() for h in hs] + [store] + ([gate] if gate else [])
        self._peers_checked = False
        self.store, self.worker_id, self.hub, self.gate = store, worker_id, hub, gate
        self.puts = CoalescedPuts(store.put_many.remote)  # this worker's concurrent groups share calls
        self._forgot = gate is None  # a (re)started worker first drops leases its old process held
        self.process = os.urandom(8).hex()  # this process, to the gate (`StalenessGate.forget`)
        self.tokens = 0
        self.done = 0  # contexts finished, any outcome (the driver's progress bar)
        self._metric_refs: list = []  # hub calls in flight; collect() settles them before returning
        self.started = time.perf_counter()
        self.labels: dict[int, int] = {}  # future-reward class -> candidates stored with it

    async def collect(self, contexts: list[dict]) -> dict[str, int]:
        """Make one candidate group per context and put it in the store as soon as it is done.
        Returns counts by outcome: stored, duplicate, skipped (already in the store), stopped (the
        staleness gate said the run is ending, so it was not started)."""
        await self._check_peers()
        if not self._forgot:
            await self.gate.forget.remote(self.worker_id, self.process)
            self._forgot = True
        slots = asyncio.Semaphore(self.run.rollout.in_flight)

        async def one(raw: dict) -> str:
            async with slots:
                outcome = await self._admitted(Context.model_validate(raw))
            self.done += 1
            return outcome

        outcomes = await asyncio.gather(*(one(c) for c in contexts))
        refs, self._metric_refs = self._metric_refs, []
        await asyncio.gather(*refs)
        return {k: outcomes.count(k) for k in ("stored", "duplicate", "skipped", "stopped")}

    async def _admitted(self, context: Context) -> str:
        """One group under admission control: wait for the gate, make the group, release the lease."""
        if self.gate is None:
            return await self._group(context)
        started = time.perf_counter()
        if await self.gate.acquire.remote(self.worker_id, context.id, self.process) < 0:
            return "stopped"
        self._metric({"admission_wait_s": time.perf_counter() - started})
        outcome = "failed"
        try:
            outcome = await self._group(context)
        finally:
            await self.gate.release.remote(self.worker_id, context.id, outcome == "stored")
        return outcome

    async def _check_peers(self) -> None:
        """Once per process, before its first work: every peer it waits on (role actors, store, gate)
        answers `ready` within `rollout.peer_timeout_s`, or the process exits and Ray restarts the worker
        (its call is retried there). Seen on a two-node cluster: a worker restarted together with the
        counselor when their node died got a handle that never learned the counselor's new address, and
        its calls waited forever; a new process of the worker reached the counselor at once."""
        if self._peers_checked:
            return
        timeout = self.run.rollout.peer_timeout_s
        if not await peers_answer([peer.ready.remote() for peer in self._peers], timeout):
            print(
                f"rollout worker {self.worker_id}: a peer actor did not answer within {timeout:g} s;"
                " restarting this worker so that it looks its peers up again",
                file=sys.stderr,
                flush=True,
            )
            os._exit(1)
        self._peers_checked = True

    def _metric(self, metrics: dict[str, Any]) -> None:
        if self.hub is not None:
            self._metric_refs.append(self.hub.record.remote(self.worker_id, metrics))  # not awaited here

    def _feed(self, record: dict[str, Any]) -> None:
        if self.hub is not None:
            self._metric_refs.append(self.hub.dialogue.remote(self.worker_id, record))

    async def evaluate(
        self, scenarios: list[dict], seed: int, seeker: list | None = None, judge: list | None = None
    ) -> dict[str, Any]:
        """A periodic evaluation on the current policy: PPDPP episodes on `scenarios` with the run's
        role actors (`evaluation.max_turns` turns at most); `seeker` and `judge`: handles started for this
        evaluation, in place of the run's (`jobs.launcher.start_evaluation_roles`). Returns
        {policy_version (at its start), last_version (the newest that wrote a reply: the learner may
        publish meanwhile), sr, at, eval_format_rate}; each episode also goes to the dashboard's feed."""
        await self._check_peers()
        roles = self.roles
        if seeker is not None and judge is not None:
            roles = replace(roles, seeker=RemoteSeeker(seeker), judge=RemoteJudge(judge))
        # the oldest version a counselor replica serves: replicas load a new one each in its own time
        version = min(await asyncio.gather(*(c.weights_version.remote() for c in self.counselors)))
        limits = self.run.episode.model_copy(update={"max_turns": self.run.evaluation.max_turns})
        episodes = await asyncio.gather(
            *(
                run_episode(Scenario.model_validate(s), roles, limits, seed=seed + i)
                for i, s in enumerate(scenarios)
            )
        )
        for episode in episodes:
            self._feed(episode_feed(episode, version))
        refs, self._metric_refs = self._metric_refs, []
        await asyncio.gather(*refs)
        summary = interactive_summary([(e.success, e.turns) for e in episodes], limits.max_turns)
        records = [r for e in episodes for r in e.records if not r.crisis]
        formatted = sum(r.well_formed for r in records) / len(records) if records else 0.0
        wrote = [r.weights_version for r in records if r.weights_version is not None]
        return {
            "policy_version": version,
            "last_version": max([version, *wrote]),
            "sr": summary["sr"],
            "at": summary["at"],
            "eval_format_rate": formatted,
        }

    async def _group(self, context: Context) -> str:
        version = await self.counselors[0].weights_version.remote()
        gid = group_id(self.run.name, context.id, version)
        if await self.store.get.remote(gid) is not None:
            return "skipped"
        history = list(context.turns)
        started = time.perf_counter()
        outputs = await asyncio.gather(
            *(
                self.roles.counselor.respond(history, seed=derived_seed(f"{gid}:{i}"))
                for i in range(self.run.rollout.group_size)
            )
        )
        generated = time.perf_counter()
        futures = await asyncio.gather(
            *(self._future(context, gid, i, out.turn) for i, out in enumerate(outputs))
        )
        simulated = time.perf_counter()
        candidates = [self._candidate(out, fut) for out, fut in zip(outputs, futures, strict=True)]
        tokens = sum(out.completion_tokens for out in outputs)
        self.tokens += tokens
        group = CandidateGroup(
            id=gid,
            scenario=context.scenario,
            context=context.turns,
            candidates=tuple(candidates),
            policy_version=min(c.policy_version for c in candidates),
            created_at=time.time(),
            worker=self.worker_id,
        )
        records = [group.model_dump()]
        if self.run.reward_refresh.every and any(c.label is not None for c in candidates):
            records.append(simulated_record(group))  # for the reward-model trainer, in the same transaction
        status = await self._put(records)
        metrics = {
            "stage_generate_s": generated - started,
            "stage_future_s": simulated - generated,
            "stage_put_s": time.perf_counter() - simulated,
            "group_tokens": tokens,
        }
        rewards = [c.future_reward for c in candidates if c.future_reward is not None]
        if rewards:
            metrics["group_reward_mean"] = sum(rewards) / len(rewards)
        verdicts = Counter(f.verdict or "none" for f in futures if f is not None)
        if verdicts:
            metrics["judge_verdicts"] = dict(verdicts)
        self._metric(metrics)
        if status == "stored":
            self._feed(group_feed(group))
        if status == "stored":
            for c in candidates:
                if c.label is not None:
                    self.labels[c.label] = self.labels.get(c.label, 0) + 1
        return status

    async def _future(self, context: Context, gid: str, index: int, turn: Turn):
        if derived_seed(f"{gid}:{index}:future") / 2**31 >= self.run.rollout.future_fraction:
            return None
        return await future_reward(
            context.scenario,
            list(context.turns),
            turn,
            self.roles,
            self.run.future,
            seed=derived_seed(f"{gid}:{index}:sim"),
        )

    @staticmethod
    def _candidate(out: CounselorOutput, fut) -> Candidate:
        extra = {}
        if fut is not None and fut.verdict is None:
            # no judge sample named a verdict: the sample scorer's 0.0 is no neutral state to learn from
            extra = {"future": fut.future}
        elif fut is not None:
            extra = {
                "future_reward": fut.reward,
                "label": fut.label,
                "verdict": fut.verdict,
                "future": fut.future,
            }
        generation = out.generation
        return Candidate(
            text=out.turn.text,
            raw=out.raw,
            reasoning=out.turn.reasoning,
            well_formed=out.well_formed,
            policy_version=out.weights_version,
            prompt_ids=generation.prompt_ids if generation else (),
            token_ids=generation.token_ids if generation else (),
            token_logprobs=generation.token_logprobs if generation else (),
            **extra,
        )

    async def _put(self, records: list[dict]) -> str:
        """Put `records` (a group, maybe its simulated record) in one transaction (which other groups'
        puts may share, `CoalescedPuts`), retrying those the full store refused; returns the first
        record's status."""
        wait, longest = FULL_BACKOFF_S
        statuses: dict[str, str] = {}
        first = records[0]["id"]
        while records:
            answers = await self.puts.put(records)
            statuses.update((r["id"], a) for r, a in zip(records, answers, strict=True) if a != "full")
            records = [r for r, a in zip(records, answers, strict=True) if a == "full"]
            if records:
                await asyncio.sleep(wait)  # backpressure: the store is full until a learner samples
                wait = min(wait * 2, longest)
        return statuses[first]

    def ready(self) -> int:
        return os.getpid()

    def stats(self) -> dict[str, Any]:
        return {
            "worker": self.worker_id,
            "completion_tokens": self.tokens,
            "done": self.done,
            "labels": dict(self.labels),
            "elapsed_s": time.perf_counter() - self.started,
        }
