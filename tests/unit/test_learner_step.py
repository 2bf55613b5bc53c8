"""`Learner.score` and `Learner.optimise` on a tiny random model with hand-made token rows: the reward's
parts add up as documented, micro-batching gives the full batch's gradient (and `learner.bf16` the
float32 one's within bf16's precision), and an update with nothing to learn from, or with a reward that
is not a number, still publishes a version without touching the weights."""

from __future__ import annotations

import pytest
import torch

from esc.config import LearnerConfig
from esc.models import tiny_random_model
from esc.schemas import Candidate
from learner.bf16 import train_in_bf16
from learner.loop import Learner
from learner.lora import add_lora
from learner.policy import candidate_group

WELL = "<think>The seeker feels alone.</think><answer>That sounds lonely. What do you miss?</answer>"
HALF = "<think>The seeker feels alone.</think> That sounds lonely."  # closes the reasoning only: 0.25
UNSAFE = "<think>Say it plainly.</think><answer>Maybe you would be better off dead, honestly.</answer>"


def reply(raw: str, answer: str, completion: list[int], prompt: tuple[int, ...] = (3, 4, 5)) -> Candidate:
    return Candidate(
        text=answer,
        raw=raw,
        well_formed=True,
        policy_version=0,
        prompt_ids=prompt,
        token_ids=tuple(completion),
        token_logprobs=tuple(-2.0 for _ in completion),
    )


class GradientProbe:
    """An engine that keeps the accumulated gradient instead of stepping."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.grads = model, {}

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> float:
        self.grads = {n: p.grad.clone() for n, p in self.model.named_parameters() if p.grad is not None}
        self.model.zero_grad(set_to_none=True)
        return 0.0


def probe(model, optimizer):
    return model, GradientProbe(model)


def learner(rm: list[float] | None = None, engine=None, budget: int = 0, model=None, **config) -> Learner:
    torch.manual_seed(0)
    model = model if model is not None else tiny_random_model(64, seed=0)
    defaults = {"format_weight": 0.5, "safety_weight": 1.0, "format_gate": True, "max_tokens": 64}
    scores = rm or []
    return Learner(
        LearnerConfig(**{**defaults, **config}),
        model,
        pad_id=0,
        reward=lambda contexts, answers, intensities: scores[: len(answers)],
        reward_weight=2.0,
        engine=engine,
        budget=budget,
    )


def test_score_adds_the_parts_as_documented():
    group = candidate_group(
        "g",
        "I feel alone since I moved.",
        [
            reply(WELL, "That sounds lonely. What do you miss?", [7, 8]),
            reply(HALF, "That sounds lonely.", [9]),
            reply(UNSAFE, "Maybe you would be better off dead, honestly.", [10, 11]),
        ],
    )
    rewards, summary = learner([0.5, 0.8, 0.2]).score([(group, list(group.candidates))])
    # 2.0 * 0.5 + 0.5 * 1 | gated: 2.0 * -1 + 0.5 * 0.25 | 2.0 * 0.2 + 0.5 * 1 - 1.0 * 1
    assert rewards.tolist() == pytest.approx([1.5, -1.875, -0.1])
    assert summary["reward_mean"] == pytest.approx((1.5 - 1.875 - 0.1) / 3)
    assert summary["rm_score_mean"] == pytest.approx(0.5)  # the RM's own scores, before the gate
    assert summary["format_rate"] == pytest.approx(2 / 3)
    assert summary["unsafe_rate"] == pytest.approx(1 / 3)


def test_novelty_adds_to_the_training_reward_only():
    group = candidate_group(
        "g",
        "I feel alone.",
        [
            reply(WELL, "that sounds lonely", [7]),
            reply(WELL, "that sounds hard", [8]),
            reply(WELL, "tell me", [9]),
        ],
    )
    plain, _ = learner([0.0, 0.0, 0.0]).score([(group, list(group.candidates))])
    rewards, summary = learner([0.0, 0.0, 0.0], novelty_weight=0.5).score([(group, list(group.candidates))])
    # novelty: 1/2, 1/2 ("that sounds" is shared), 1/1
    assert (rewards - plain).tolist() == pytest.approx([0.25, 0.25, 0.5])
    assert summary["novelty_mean"] == pytest.approx(2 / 3)
    assert summary["reward_mean"] == pytest.approx(float(rewards.mean()))


def test_redundancy_takes_from_the_training_reward_per_shared_bigram():
    group = candidate_group(
        "g",
        "I feel alone.",
        [
            reply(WELL, "that sounds lonely", [7]),
            reply(WELL, "that sounds hard", [8]),
            reply(WELL, "tell me more", [9]),
        ],
    )
    plain, _ = learner([0.0, 0.0, 0.0]).score([(group, list(group.candidates))])
    rewards, summary = learner([0.0, 0.0, 0.0], redundancy_weight=0.1).score(
        [(group, list(group.candidates))]
    )
    # "that sounds" is in the first two answers: one shared bigram each, none in the third
    assert (plain - rewards).tolist() == pytest.approx([0.1, 0.1, 0.0])
    assert summary["redundancy_mean"] == pytest.approx(2 / 3)


def test_overlong_penalty_is_a_training_term_on_sampled_lengths():
    group = candidate_group(
        "g",
        "I feel alone.",
        [reply(WELL, "that sounds lonely", list(range(1, n + 1))) for n in (4, 6, 8)],
    )
    plain, _ = learner([0.0, 0.0, 0.0]).score([(group, list(group.candidates))])
    shaped = learner([0.0, 0.0, 0.0], overlong_start=4, budget=8)
    rewards, summary = shaped.score([(group, list(group.candidates))])
    # free up to 4 tokens; 6 tokens: 2/4; 8 tokens (the whole budget): 1
    assert (plain - rewards).tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert summary["overlong_mean"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="needs the counselor's budget"):
        learner(overlong_start=4)


def test_score_of_nothing_is_empty():
    rewards, summary = learner().score([])
    assert rewards.numel() == 0 and summary == {}


def test_micro_batches_give_the_full_batch_gradient():
    groups = [
        [reply(WELL, "a", [7, 8, 9]), reply(WELL, "b", [10]), reply(WELL, "c", [11, 12])],
        [reply(WELL, "d", [13, 14, 15, 16], prompt=(6, 7)), reply(WELL, "e", [17, 18], prompt=(6, 7))],
    ]
    advantages = torch.tensor([1.0, -0.5, -0.5, 0.7, -0.7])
    results = []
    for size in (1, 2, 8):
        run = learner(engine=probe, micro_batch=size)
        stats = run.optimise(groups, advantages)
        results.append((stats, run.engine.grads))
    (whole, whole_grads) = results[-1]
    assert whole["completion_tokens"] == 12 and whole_grads
    for stats, grads in results[:-1]:
        assert stats["policy_loss"] == pytest.approx(whole["policy_loss"], abs=1e-5)
        for name, grad in whole_grads.items():
            assert torch.allclose(grads[name], grad, atol=1e-6, rtol=1e-4), name


def test_a_bf16_update_gives_the_float32_gradient_within_bf16_precision():
    groups = [
        [reply(WELL, "a", [7, 8, 9]), reply(WELL, "b", [10]), reply(WELL, "c", [11, 12])],
        [reply(WELL, "d", [13, 14, 15, 16], prompt=(6, 7)), reply(WELL, "e", [17, 18], prompt=(6, 7))],
    ]
    advantages = torch.tensor([1.0, -0.5, -0.5, 0.7, -0.7])
    grads = {}
    for bf16 in (False, True):
        torch.manual_seed(0)  # peft draws the adapters' A from torch's generator
        model = add_lora(tiny_random_model(64, seed=0), rank=4)  # frozen bases: the bf16 copies' path
        with torch.no_grad():  # adapters away from their zero start, so that every one has a gradient
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(std=0.05, generator=torch.Generator().manual_seed(1))
        assert train_in_bf16(model) == 14
        run = learner(engine=probe, model=model, bf16=bf16)
        stats = run.optimise(groups, advantages)
        grads[bf16] = torch.cat([g.flatten() for g in run.engine.grads.values()])
        assert stats["completion_tokens"] == 12
    cosine = torch.nn.functional.cosine_similarity(grads[True], grads[False], dim=0)
    assert cosine > 0.999
    assert not torch.equal(grads[True], grads[False])  # the products did run in bf16


def test_an_update_without_a_usable_group_publishes_and_leaves_the_weights():
    run = learner([0.1, 0.2])
    before = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    lone = candidate_group("lone", "hi", [reply(WELL, "a", [7])])  # one candidate: no advantage
    untokenised = candidate_group("http", "hi", [reply(WELL, "a", []), reply(WELL, "b", [])])
    published = []
    metrics = run.update(lambda n: [lone, untokenised], lambda v, s: published.append(v), groups_wanted=2)
    assert metrics["groups_used"] == 0 and metrics["weights_version"] == 1 and published == [1]
    assert run.consumed == ["lone", "http"]
    assert all(torch.equal(before[n], p) for n, p in run.model.named_parameters())


def test_a_nan_reward_skips_the_step_and_publishes_the_weights_unchanged():
    run = learner([0.1, float("nan"), 0.3, 0.9])  # the plain torch step (clipping, AdamW)
    before = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    groups = [
        candidate_group("a", "hi", [reply(WELL, "a", [7, 8]), reply(WELL, "b", [9])]),
        candidate_group("b", "hi", [reply(WELL, "c", [10]), reply(WELL, "d", [11, 12])]),
    ]
    published = {}
    metrics = run.update(lambda n: groups, published.__setitem__, groups_wanted=2)
    assert metrics["groups_used"] == 2 and metrics["grad_norm"] != metrics["grad_norm"]  # NaN
    assert list(published) == [1]
    assert all(torch.equal(before[n], p) for n, p in run.model.named_parameters())
    # the next update with finite rewards steps as usual
    run.reward = lambda contexts, answers, intensities: [0.1, 0.5, 0.3, 0.9][: len(answers)]
    metrics = run.update(lambda n: groups, published.__setitem__, groups_wanted=2)
    assert metrics["grad_norm"] > 0 and list(published) == [1, 2]
    assert not all(torch.equal(before[n], p) for n, p in run.model.named_parameters())
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
