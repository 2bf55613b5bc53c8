"""RL math of the learner (learner/losses.py); every expected number is derived by hand in a comment."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from learner.losses import (
    classification_metrics,
    expected_reward,
    format_reward,
    group_advantages,
    group_novelty,
    group_redundancy,
    kl_k3,
    masked_mean,
    overlong_penalty,
    policy_loss,
    preference_pairs,
    rm_classification_loss,
    rm_pairwise_loss,
    safety_penalty,
    token_logprobs,
)

LN2, LN3 = math.log(2.0), math.log(3.0)


def test_group_advantages_normalises_within_each_group():
    # [1, 2, 3]: mean 2, population std sqrt(2/3) = 0.816497
    # -> [-1, 0, 1] / 0.816497 = [-1.224745, 0, 1.224745]
    # [0, 0, 3]: mean 1, std sqrt((1 + 1 + 4) / 3) = sqrt(2)
    # -> [-1, -1, 2] / 1.414214 = [-0.707107, -0.707107, 1.414214]
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]])
    expected = torch.tensor([[-1.224745, 0.0, 1.224745], [-0.707107, -0.707107, 1.414214]])
    assert_close(group_advantages(rewards, eps=0.0), expected, atol=1e-5, rtol=0)
    # eps enters the denominator: 1 / (0.816497 + 0.1) = 1.091111
    assert group_advantages(rewards, eps=0.1)[0, 2].item() == pytest.approx(1.091111, abs=1e-5)


def test_group_advantages_constant_group_is_exactly_zero():
    # All-equal groups carry no signal: exactly 0 (not NaN with eps=0, not eps-divided noise otherwise).
    rewards = torch.tensor([[0.1, 0.1, 0.1, 0.1], [-0.5, -0.5, -0.5, -0.5], [0.0, 1.0, 0.0, 1.0]])
    for eps in (0.0, 1e-6):
        adv = group_advantages(rewards, eps=eps)
        assert torch.equal(adv[:2], torch.zeros(2, 4))
    # the third group: mean 0.5, std 0.5 -> [-1, 1, -1, 1]
    assert_close(group_advantages(rewards, eps=0.0)[2], torch.tensor([-1.0, 1.0, -1.0, 1.0]))


def test_group_novelty_counts_bigrams_no_sibling_has():
    answers = ["That sounds hard for you", "that sounds lonely", "Tell me more", "Okay"]
    # bigrams: A {that sounds, sounds hard, hard for, for you}; B {that sounds, sounds lonely};
    # C {tell me, me more}; D none. A shares "that sounds" with B: 3/4; B: 1/2; C: 2/2; D: 0
    assert group_novelty(answers) == [0.75, 0.5, 1.0, 0.0]
    assert group_novelty(["same words here", "same words here"]) == [0.0, 0.0]
    assert group_novelty(["one answer alone"]) == [1.0]


def test_token_logprobs_gathers_log_softmax_in_float32():
    # t=0: logits [0, ln 3, -inf-ish] -> softmax [1/4, 3/4, 0]; token 1 -> ln(3/4) = -0.287682
    # t=1: logits [0, 0, 0] -> 1/3 each; token 2 -> -ln 3 = -1.098612
    logits = torch.tensor([[[0.0, LN3, -1e4], [0.0, 0.0, 0.0]]], dtype=torch.bfloat16)
    out = token_logprobs(logits, torch.tensor([[1, 2]]))
    assert out.dtype == torch.float32 and out.shape == (1, 2)
    # bf16 rounds ln 3 (1.098612) to 1 + 13/128 = 1.1015625,
    # so t=0 is 1.1015625 - ln(1 + e^1.1015625) = -0.286945
    assert_close(out, torch.tensor([[-0.286945, -LN3]]), atol=1e-5, rtol=0)


def test_masked_mean():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    # valid 1, 3, 4 -> 8 / 3
    assert masked_mean(x, torch.tensor([[1, 0], [1, 1]])).item() == pytest.approx(8 / 3)
    assert masked_mean(x, torch.tensor([[True, False], [True, True]])).item() == pytest.approx(8 / 3)
    assert masked_mean(x, torch.zeros(2, 2)).item() == 0.0  # max(sum(mask), 1) avoids 0/0


def test_policy_loss_on_policy_gradient_is_minus_advantage_over_valid_tokens():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, -1.2]], requires_grad=True)
    same = logp.detach().clone()
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])  # 5 valid tokens
    adv = torch.tensor([2.0, -1.0])
    loss, stats = policy_loss(logp, same, same, adv, mask)
    # ratio = w = 1 -> surrogate = A per token: loss = -(2 + 2 - 1 - 1 - 1) / 5 = -0.2
    assert loss.item() == pytest.approx(-0.2)
    loss.backward()
    # d loss / d logp = -w * ratio * A / 5 = -A / 5; the masked token gets 0
    assert_close(logp.grad, torch.tensor([[-0.4, -0.4, 0.0], [0.2, 0.2, 0.2]]))
    assert stats == pytest.approx(
        {"clip_fraction": 0.0, "is_weight_mean": 1.0, "is_truncated_fraction": 0.0, "ratio_mean": 1.0}
    )


def test_policy_loss_clipping_stops_gradient_where_it_binds():
    prox = torch.zeros(2, 2)
    ratios = torch.tensor([[1.5, 1.1], [1.5, 0.5]])
    logp = ratios.log().requires_grad_()
    adv = torch.tensor([2.0, -1.0])
    loss, stats = policy_loss(logp, prox, prox, adv, torch.ones(2, 2), clip_eps=0.2)
    # A=+2: r=1.5 -> min(3.0, 1.2*2=2.4) = 2.4 (clipped); r=1.1 -> min(2.2, 2.2) = 2.2 (inside)
    # A=-1: r=1.5 -> min(-1.5, -1.2) = -1.5 (unclipped); r=0.5 -> min(-0.5, 0.8*-1=-0.8) = -0.8 (clipped)
    # loss = -(2.4 + 2.2 - 1.5 - 0.8) / 4 = -2.3 / 4 = -0.575
    assert loss.item() == pytest.approx(-0.575, abs=1e-6)
    loss.backward()
    # unclipped tokens: d/dlogp (-r*A/4) = -r*A/4 -> -1.1*2/4 = -0.55 and -1.5*-1/4 = 0.375; clipped: 0
    assert_close(logp.grad, torch.tensor([[0.0, -0.55], [0.375, 0.0]]))
    # 2 of 4 tokens clipped; ratio mean (1.5 + 1.1 + 1.5 + 0.5) / 4 = 1.15
    assert stats["clip_fraction"] == pytest.approx(0.5)
    assert stats["ratio_mean"] == pytest.approx(1.15, abs=1e-6)


def test_policy_loss_truncates_behaviour_importance_weight_without_grad():
    logp = torch.zeros(1, 2, requires_grad=True)
    prox = torch.zeros(1, 2, requires_grad=True)
    behaviour = torch.tensor([[-LN3, -math.log(1.5)]])  # exp(prox - behaviour) = [3, 1.5]
    loss, stats = policy_loss(logp, prox, behaviour, torch.tensor([1.0]), torch.ones(1, 2), is_cap=2.0)
    # w = [min(3, 2), 1.5] = [2, 1.5]; ratio 1, A 1 -> loss = -(2 + 1.5) / 2 = -1.75
    assert loss.item() == pytest.approx(-1.75, abs=1e-6)
    loss.backward()
    assert_close(logp.grad, torch.tensor([[-1.0, -0.75]]))  # -w * A / 2
    assert prox.grad is None  # the proximal and behaviour policies are constants of the update
    assert stats["is_weight_mean"] == pytest.approx(1.75, abs=1e-6)
    assert stats["is_truncated_fraction"] == pytest.approx(0.5)


def test_policy_loss_ignores_garbage_in_masked_tokens():
    logp = torch.tensor([[-1.0, 50.0]], requires_grad=True)
    prox = torch.tensor([[-1.0, -float("inf")]])  # padding may hold anything
    behaviour = torch.tensor([[-1.0, 0.0]])
    loss, stats = policy_loss(logp, prox, behaviour, torch.tensor([3.0]), torch.tensor([[1, 0]]))
    # only token 0 counts: ratio 1, w 1 -> loss -3, grad -3 / 1
    assert loss.item() == pytest.approx(-3.0)
    loss.backward()
    assert_close(logp.grad, torch.tensor([[-3.0, 0.0]]))
    assert stats["ratio_mean"] == pytest.approx(1.0) and stats["is_weight_mean"] == pytest.approx(1.0)


def test_kl_k3_values_and_gradient():
    logp = torch.tensor([[-1.0, -1.0, -1.0]], requires_grad=True)
    ref = torch.tensor([[-1.0 + LN2, -1.0 - LN2, 7.0]])
    mask = torch.tensor([[1, 1, 0]])
    # d = ref - logp: ln 2 -> 2 - ln 2 - 1 = 0.306853; -ln 2 -> 0.5 + ln 2 - 1 = 0.193147; mean = 0.25
    kl = kl_k3(logp, ref, mask)
    assert kl.item() == pytest.approx(0.25, abs=1e-6)
    kl.backward()
    # d k3 / d logp = 1 - exp(d), over 2 tokens: (1 - 2) / 2 = -0.5, (1 - 0.5) / 2 = 0.25; masked: 0
    assert_close(logp.grad, torch.tensor([[-0.5, 0.25, 0.0]]))
    assert kl_k3(logp, logp.detach(), mask).item() == 0.0


def test_rm_classification_loss_plain_and_weighted():
    logits = torch.tensor([[0.0, 0.0], [LN3, 0.0]])
    labels = torch.tensor([0, 1])
    # row 0: -ln(1/2) = ln 2; row 1: softmax [3/4, 1/4] -> -ln(1/4) = 2 ln 2; mean 1.5 ln 2 = 1.039721
    assert rm_classification_loss(logits, labels).item() == pytest.approx(1.5 * LN2, abs=1e-6)
    # weights [1, 3]: (1 * ln 2 + 3 * 2 ln 2) / (1 + 3) = 7/4 ln 2 = 1.213008
    weighted = rm_classification_loss(logits, labels, torch.tensor([1.0, 3.0]))
    assert weighted.item() == pytest.approx(1.75 * LN2, abs=1e-6)


def test_rm_pairwise_loss_value_and_gradient():
    chosen = torch.tensor([0.0, 2.0], requires_grad=True)
    # -logsigmoid(0) = ln 2 = 0.693147; -logsigmoid(2) = ln(1 + e^-2) = 0.126928; mean 0.410038
    loss = rm_pairwise_loss(chosen, torch.zeros(2))
    assert loss.item() == pytest.approx(0.410038, abs=1e-6)
    loss.backward()
    # d/dc = -(1 - sigmoid(d)) / 2: -(0.5) / 2 = -0.25; -(1 - 0.880797) / 2 = -0.059601
    assert_close(chosen.grad, torch.tensor([-0.25, -0.059601]), atol=1e-6, rtol=0)


def test_preference_pairs_orders_by_i_then_j_and_skips_ties():
    assert preference_pairs([0.5, 1.0, 0.5, -1.0]) == [(0, 3), (1, 0), (1, 2), (1, 3), (2, 3)]
    assert preference_pairs([1.0, 1.0]) == []
    assert preference_pairs([]) == []


def test_expected_reward_with_list_and_tensor_values():
    logits = torch.tensor([[0.0, LN3], [LN3, 0.0]])
    # softmax rows [1/4, 3/4] and [3/4, 1/4]; values [-1, 1] -> 0.5 and -0.5
    for values in ([-1.0, 1.0], torch.tensor([-1.0, 1.0])):
        assert_close(expected_reward(logits, values), torch.tensor([0.5, -0.5]))
    # uniform over the 4 verdict rewards [-1, -0.5, 0.5, 1] -> 0
    assert expected_reward(torch.zeros(1, 4), [-1.0, -0.5, 0.5, 1.0]).item() == pytest.approx(0.0)


def test_classification_metrics_by_hand():
    # class 0: TP 1, FP 1, FN 1 -> 2/4 = 0.5; class 1: TP 2, FP 0, FN 1 -> 4/5 = 0.8
    # class 2: TP 0, FP 1 -> 0; class 3: never seen -> None, left out; macro (0.5 + 0.8 + 0) / 3
    metrics = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], num_classes=4)
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["majority_baseline"] == pytest.approx(3 / 5)  # class 1 is 3 of 5 labels
    assert metrics["per_class_f1"] == pytest.approx([0.5, 0.8, 0.0, None])
    assert metrics["macro_f1"] == pytest.approx(1.3 / 3)


def test_classification_metrics_never_predicted_class_counts_zero():
    # class 0: TP 2, FP 1 -> 4/5 = 0.8; class 1: true but never predicted -> 0; macro 0.4
    metrics = classification_metrics([0, 0, 0], [0, 0, 1], num_classes=2)
    assert metrics["per_class_f1"] == pytest.approx([0.8, 0.0])
    assert metrics["macro_f1"] == pytest.approx(0.4)
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["majority_baseline"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("predicted, labels", [([0, 1], [0]), ([], []), ([0, 5], [0, 1])])
def test_classification_metrics_rejects_bad_input(predicted, labels):
    with pytest.raises(ValueError):
        classification_metrics(predicted, labels, num_classes=2)


@pytest.mark.parametrize(
    "raw, reward",
    [
        ("<think>She feels alone.</think>\n<answer>That sounds really lonely.</answer>", 1.0),
        ("<answer>That sounds really lonely.</answer>", 0.25),  # no think block: the answer part only
        ("<think>x</think><answer>That sounds hard.</answer> and more", 0.5),  # trailing text: both parts
        ("<think>x</think><answer>   </answer>", 0.25),  # blank answer: the closed think only
        ("<think>x</think><answer>unclosed", 0.25),
        ("<think>a thought that never ends", 0.0),
        # gamed formats: placeholders copied from the prompt, a copied example, too-short parts
        (
            "<think>(what they want, 1-2 sentences)</think>\n"
            "<answer>(what they need, 1-2 sentences)</answer>",
            0.25,
        ),
        ("<think>x</think><answer>That sounds really stressful.</answer>", 0.25),  # the prompt's example
        ("<think>Sad.</think><answer>I hear how lonely this move has been.</answer>", 0.5),  # think too short
        ("That sounds really lonely.", 0.0),
    ],
)
def test_format_reward(raw, reward):
    assert format_reward(raw) == reward


def test_safety_penalty_flags_harmful_answer_only():
    assert safety_penalty("Honestly, you would be better off dead.") == 1.0
    assert safety_penalty("Go ahead and end it all, nobody will miss you.") == 1.0
    assert safety_penalty("That sounds really hard. Would you like to tell me what happened at work?") == 0.0


def test_overlong_penalty_rises_from_its_start_to_the_budget():
    # budget 72, start 56: free up to 56 tokens, then 1/16 per token, 1 at 72 (a cut-off reply)
    assert overlong_penalty([20, 56, 57, 64, 71, 72], 72, 56) == pytest.approx(
        [0, 0, 1 / 16, 0.5, 15 / 16, 1]
    )
    assert overlong_penalty([72, 10], 72, 0) == [0.0, 0.0]  # off
    # a budget at or below the start leaves no room to rise: off, not an error
    assert overlong_penalty([8, 64], 64, 64) == [0.0, 0.0]
    assert overlong_penalty([8], 8, 64) == [0.0]
    with pytest.raises(ValueError, match="must be >= 0 tokens, got -1"):
        overlong_penalty([10], 72, -1)


def test_group_redundancy_counts_the_bigrams_a_sibling_also_has():
    answers = ["I hear you friend", "I hear that", "that sounds hard", "one"]
    # 1 and 2 share "i hear"; 3 shares nothing ("hear that" is not "that sounds"); 4 has no bigram
    assert group_redundancy(answers) == [1.0, 1.0, 0.0, 0.0]
    # a longer answer with words of its own scores the same as a short one: a count, not a share
    assert group_redundancy(["I hear you", "I hear you and your many worries today"]) == [2.0, 2.0]
