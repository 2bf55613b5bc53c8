"""Two learner ranks in two spawned processes (gloo, as under Ray Train on CPU), each making one
`Learner.update` on its own groups, for every split of `SPLITS`; and the same update in one process on
the union of the groups. Shared by the DDP test (tests/unit) and the DeepSpeed tier (tests/deepspeed).
No Ray: the process group is torch's own."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from esc.config import LearnerConfig
from esc.models import tiny_random_model
from esc.schemas import Candidate
from learner.loop import Learner
from learner.policy import candidate_group
from learner.strategy import deepspeed_step, plain_step

JOIN_TIMEOUT_S = 300
WELL = "<think>The seeker feels alone.</think><answer>{}</answer>"


def reply(answer: str, completion: list[int], trainable: bool = True) -> Candidate:
    return Candidate(
        text=answer,
        raw=WELL.format(answer),
        well_formed=True,
        policy_version=0,
        prompt_ids=(3, 4, 5, 6),
        token_ids=tuple(completion) if trainable else (),
        token_logprobs=tuple(-2.5 + 0.1 * t for t in completion) if trainable else (),
    )


def group(gid: str, answers: list[str], trainable: bool = True):
    replies = [reply(a, [7 + i, 9 + 2 * i, 11 + i][: 2 + i % 2], trainable) for i, a in enumerate(answers)]
    return candidate_group(gid, "I feel alone since I moved.", replies)


GROUPS = {
    "a": group("a", ["That sounds hard.", "Tell me more?", "I hear you, that is lonely."]),
    "b": group("b", ["Moving is a big change.", "Who do you talk to?", "ok"]),
    "c": group("c", ["What do you miss most?", "That must ache."]),
    "idle": group("idle", ["no tokens", "none either"], trainable=False),
}
SPLITS = {
    "uneven": [["a", "b"], ["c"]],  # 3 micro-batches on rank 0, 1 on rank 1
    "one-rank-idle": [["a", "b"], ["idle"]],  # rank 1 keeps no group at all
}


def learner_config(**changes) -> LearnerConfig:
    return LearnerConfig(
        micro_batch=2, max_tokens=64, lr=1e-2, format_weight=0.0, max_grad_norm=1e6, **changes
    )


def make_learner(engine=None, **changes) -> Learner:
    torch.manual_seed(0)
    model = tiny_random_model(64, seed=0)

    def reward(contexts, answers, intensities):  # a rule-based stand-in for the reward model
        return [len(a) / 20 for a in answers]

    config = learner_config(**changes)
    return Learner(config, model, pad_id=0, reward=reward, engine=engine or plain_step(config.max_grad_norm))


def rank_learner(strategy: str, zero_stage: int) -> Learner:
    """A fresh learner of one of two ranks: DeepSpeed at `zero_stage`, or DDP-wrapped plain torch."""
    from torch.nn.parallel import DistributedDataParallel

    if strategy == "deepspeed":
        return make_learner(deepspeed_step(learner_config(zero_stage=zero_stage), world_size=2))
    return make_learner(plain_step(learner_config().max_grad_norm, DistributedDataParallel))


def rank_main(rank: int, init: str, folder: str, strategy: str, zero_stage: int) -> None:
    """One rank: an update for each split, its weights saved as <split>-r<rank>.safetensors."""
    import torch.distributed as dist

    from learner import ranks
    from learner.strategy import unwrap

    torch.set_num_threads(1)
    os.environ.update(LOCAL_RANK=str(rank), RANK=str(rank), WORLD_SIZE="2")  # as Ray Train sets them
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    for split, names in SPLITS.items():
        learner = rank_learner(strategy, zero_stage)
        mine = [GROUPS[name] for name in names[rank]]
        learner.update(lambda n, mine=mine: mine, lambda version, state: None, len(mine))
        either = ranks.any_rank(rank == 1)  # a flag one rank raises reaches both
        state = {k: v.detach().clone() for k, v in unwrap(learner.model).state_dict().items()}
        meta = {"any_rank": str(either), "version": str(learner.version)}
        save_file(state, f"{folder}/{split}-r{rank}.safetensors", metadata=meta)
    dist.destroy_process_group()


def spawn(target, folder: Path, strategy: str, zero_stage: int) -> None:
    """`target(rank, ...)` in two processes, to the end; fails when either hangs (joined with a
    timeout) or errs."""
    context = mp.get_context("spawn")
    init = f"file://{folder / 'rendezvous'}"
    procs = [
        context.Process(target=target, args=(r, init, str(folder), strategy, zero_stage)) for r in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(JOIN_TIMEOUT_S)
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
    assert not hung, "a learner rank hung waiting for the other"
    assert [p.exitcode for p in procs] == [0, 0]


def run_two_ranks(folder: Path, strategy: str = "ddp", zero_stage: int = 0) -> None:
    """`rank_main` on two ranks."""
    spawn(rank_main, folder, strategy, zero_stage)


def one_process(names: list[str]) -> dict[str, torch.Tensor]:
    """The weights after one plain update on `names` in this process."""
    learner = make_learner()
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    learner.update(lambda n: [GROUPS[name] for name in names], lambda version, state: None, len(names))
    after = learner.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in after), "the reference step changed nothing"
    return after


def check_split(folder: Path, split: str, tolerance: float) -> None:
    """Both ranks published version 1, saw the other's flag, hold identical weights, and those equal
    one process's step on the union of their groups (to `tolerance`)."""
    outs = [f"{folder}/{split}-r{rank}.safetensors" for rank in range(2)]
    for out in outs:
        with safe_open(out, "pt") as f:
            assert f.metadata() == {"any_rank": "True", "version": "1"}
    r0, r1 = (load_file(out) for out in outs)
    assert r0.keys() == r1.keys()
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "the ranks' weights differ"
    union = one_process([name for part in SPLITS[split] for name in part if name != "idle"])
    worst = max(float((r0[k] - union[k]).abs().max()) for k in union)
    assert worst < tolerance, f"two ranks' step differs from one step on the union by {worst}"


def resume_main(rank: int, init: str, folder: str, strategy: str, zero_stage: int) -> None:
    """One rank: update on its groups of split 'uneven', checkpoint (jobs.learn.save_checkpoint), update
    again (weights saved as straight-r<rank>); then a fresh learner restores the checkpoint
    (jobs.learn.restore_learner) and makes the second update again (weights saved as resumed-r<rank>)."""
    import torch.distributed as dist

    from esc.config import RunConfig
    from jobs.learn import restore_learner, save_checkpoint
    from learner.strategy import unwrap

    torch.set_num_threads(1)
    os.environ.update(LOCAL_RANK=str(rank), RANK=str(rank), WORLD_SIZE="2")
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    config = RunConfig.model_validate(
        {"runs_dir": folder, "name": "resume", "learner": {"strategy": strategy, "zero_stage": zero_stage}}
    )
    mine = [GROUPS[name] for name in SPLITS["uneven"][rank]]

    def step(learner: Learner, name: str) -> None:
        learner.update(lambda n: mine, lambda version, state: None, len(mine))
        state = {k: v.detach().clone() for k, v in unwrap(learner.model).state_dict().items()}
        save_file(state, f"{folder}/{name}-r{rank}.safetensors")

    straight = rank_learner(strategy, zero_stage)
    straight.update(lambda n: mine, lambda version, state: None, len(mine))
    save_checkpoint(config, straight, 1, 2, rank)
    step(straight, "straight")
    resumed = rank_learner(strategy, zero_stage)
    assert restore_learner(config, resumed, rank) == 1 and resumed.version == 1
    step(resumed, "resumed")
    dist.destroy_process_group()


def run_resume(folder: Path, strategy: str, zero_stage: int = 0) -> None:
    """`resume_main` on two ranks, then: the resumed second update equals the straight one on both."""
    spawn(resume_main, folder, strategy, zero_stage)
    for rank in range(2):
        straight = load_file(f"{folder}/straight-r{rank}.safetensors")
        resumed = load_file(f"{folder}/resumed-r{rank}.safetensors")
        worst = max(float((straight[k] - resumed[k]).abs().max()) for k in straight)
        assert worst < 1e-6, f"rank {rank}: the update after resuming differs by {worst}"
