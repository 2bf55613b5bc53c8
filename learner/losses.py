"""Pure RL math of the learner: advantages, policy and KL losses, reward-model losses and rewards.

No I/O, no Ray, no model loading: every function maps tensors (or plain Python values) to tensors
or numbers and is unit-tested on CPU with hand-derived numbers.

Notation: N sequences, T tokens per sequence, V vocabulary size, B groups of G completions sampled
for the same prompt, C reward classes, P preference pairs. A `mask` is 1 (or True) on completion
tokens that count and 0 on prompt and padding tokens.

Functions:
    group_advantages        GRPO group-relative advantages, [B, G] -> [B, G]
    token_logprobs          log-probabilities of the given tokens, [N, T, V] x [N, T] -> [N, T]
    masked_mean             token-level mean over valid tokens, [N, T] -> []
    policy_loss             decoupled PPO-clip with truncated behaviour importance weights (AReaL)
    kl_k3                   k3 estimate of KL(policy || reference) over valid tokens
    rm_classification_loss  cross-entropy over reward classes
    rm_pairwise_loss        Bradley-Terry loss on (chosen, rejected) scores
    preference_pairs        (preferred, dispreferred) index pairs within one group
    expected_reward         softmax-weighted reward of class logits
    classification_metrics  accuracy, macro-F1 and majority baseline of class predictions
    format_reward           reward for the counselor's `<think>/<answer>` format
    safety_penalty          penalty for a counselor answer that the crisis lexicon flags
    group_novelty           share of each answer's word bigrams that no other answer of its group has
    group_redundancy        how many of each answer's word bigrams another answer of its group also has
    overlong_penalty        soft penalty for completions that reach into the last tokens of the budget
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from esc.parsing import parse_counselor
from esc.prompts import COUNSELOR_REASONING_FORMAT
from esc.safety import check_message

_INSTRUCTION_WORDS = " ".join(re.findall(r"[A-Za-z']+", COUNSELOR_REASONING_FORMAT)).lower()
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)


def group_advantages(rewards: Tensor, eps: float = 1e-6) -> Tensor:
    """GRPO advantages: each reward normalised within its group.

    A[b, g] = (r[b, g] - mean_g r[b]) / (std_g r[b] + eps), std the population std (unbiased=False).
    A group whose rewards are all equal carries no learning signal and gets exactly 0 advantages
    (tested with max == min, so float rounding in the std cannot leak eps-divided noise).

    Args: rewards [B, G] float. Returns: [B, G], same dtype.
    """
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=False)
    constant = rewards.amax(dim=1, keepdim=True) == rewards.amin(dim=1, keepdim=True)
    advantages = (rewards - mean) / (std + eps)
    return torch.where(constant, torch.zeros_like(advantages), advantages)


def token_logprobs(logits: Tensor, tokens: Tensor) -> Tensor:
    """log softmax(logits[n, t])[tokens[n, t]], computed in float32.

    `logits[:, t]` must already be the logits that predict `tokens[:, t]` (the caller shifts by one).

    Args: logits [N, T, V] any float dtype; tokens [N, T] long. Returns: [N, T] float32.
    """
    logits = logits.float()
    picked = logits.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """sum(x * mask) / max(sum(mask), 1); an all-zero mask gives 0 rather than NaN.

    Args: x [N, T] float; mask [N, T] bool or 0/1 float. Returns: scalar, dtype of x.
    """
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1)


def policy_loss(
    logp: Tensor,
    prox_logp: Tensor,
    behaviour_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
    is_cap: float = 2.0,
) -> tuple[Tensor, dict[str, float]]:
    """Decoupled PPO-clip for stale samples (AReaL): clip against the proximal policy, reweight by behaviour.

    ratio = exp(logp - prox_logp)
    surrogate = min(ratio * A, clip(ratio, 1 - clip_eps, 1 + clip_eps) * A)
    w = min(exp(prox_logp - behaviour_logp), is_cap)        (no grad: truncated importance sampling)
    loss = -masked_mean(w * surrogate, mask)                (mean over all valid tokens of the batch)

    Args:
        logp: [N, T] float, current policy, carries the gradient.
        prox_logp: [N, T] float, proximal policy (current weights before this update); detached here.
        behaviour_logp: [N, T] float, the weights version that generated the tokens; detached here.
        advantages: [N] float, one per sequence, broadcast over its tokens.
        mask: [N, T] bool or 0/1, 1 on completion tokens.
    Returns:
        (scalar loss, stats) with python-float stats over valid tokens: 'clip_fraction' (the clipped
        branch is the minimum: ratio > 1 + eps with A > 0, or ratio < 1 - eps with A < 0),
        'is_weight_mean' (mean of w after truncation), 'is_truncated_fraction' (share with
        exp(prox - behaviour) > is_cap) and 'ratio_mean'.
    """
    prox_logp, behaviour_logp = prox_logp.detach(), behaviour_logp.detach()
    adv = advantages.detach().to(logp.dtype).unsqueeze(-1)
    valid = mask.bool()
    # Padding may hold any value (even -inf); zeroing log-differences there keeps loss and grads finite.
    ratio = torch.exp(torch.where(valid, logp - prox_logp, 0.0))
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    surrogate = torch.minimum(unclipped, clipped)
    raw_weight = torch.exp(torch.where(valid, prox_logp - behaviour_logp, 0.0))
    weight = torch.clamp(raw_weight, max=is_cap)
    loss = -masked_mean(weight * surrogate, mask)
    with torch.no_grad():
        clip_active = ((ratio > 1.0 + clip_eps) & (adv > 0)) | ((ratio < 1.0 - clip_eps) & (adv < 0))
        stats = {
            "clip_fraction": masked_mean(clip_active.float(), mask).item(),
            "is_weight_mean": masked_mean(weight.float(), mask).item(),
            "is_truncated_fraction": masked_mean((raw_weight > is_cap).float(), mask).item(),
            "ratio_mean": masked_mean(ratio.float(), mask).item(),
        }
    return loss, stats


def kl_k3(logp: Tensor, ref_logp: Tensor, mask: Tensor) -> Tensor:
    """k3 estimate of KL(policy || reference), averaged over valid tokens.

    With d = ref_logp - logp: k3 = exp(d) - d - 1, which is >= 0 and 0 exactly when d = 0; it is an
    unbiased, low-variance estimator for tokens sampled from the policy.

    Args: logp [N, T] (grad), ref_logp [N, T] (detached here), mask [N, T]. Returns: scalar.
    """
    delta = torch.where(mask.bool(), ref_logp.detach() - logp, 0.0)
    return masked_mean(torch.exp(delta) - delta - 1.0, mask)


def rm_classification_loss(logits: Tensor, labels: Tensor, weights: Tensor | None = None) -> Tensor:
    """Cross-entropy of reward-class logits: mean over n of -log softmax(logits[n])[labels[n]].

    With class weights the mean is weighted, as in `F.cross_entropy`:
    sum_n w[y_n] * loss_n / sum_n w[y_n].

    Args: logits [N, C] float; labels [N] long in [0, C); weights [C] float or None. Returns: scalar.
    """
    if weights is not None:
        weights = weights.to(device=logits.device, dtype=torch.float32)
    return F.cross_entropy(logits.float(), labels.long(), weight=weights)


def rm_pairwise_loss(chosen: Tensor, rejected: Tensor, weights: Tensor | None = None) -> Tensor:
    """Bradley-Terry loss: mean over pairs of -log sigmoid(chosen - rejected), weighted by `weights`.

    Args: chosen [P], rejected [P] float scores of the preferred and dispreferred item; weights [P] or
    None (all 1). Returns: scalar.
    """
    losses = -F.logsigmoid(chosen - rejected)
    if weights is None:
        return losses.mean()
    return (losses * weights).sum() / weights.sum()


def preference_pairs(rewards: Sequence[float]) -> list[tuple[int, int]]:
    """All (i, j) with rewards[i] > rewards[j] (i preferred over j) within one group; ties give no pair.

    Ordered by i, then j. Returns: list of index pairs, at most G * (G - 1) / 2 of them.
    """
    return [(i, j) for i, ri in enumerate(rewards) for j, rj in enumerate(rewards) if ri > rj]


def expected_reward(logits: Tensor, values: Tensor | Sequence[float]) -> Tensor:
    """E[reward] = sum_k softmax(logits[n])_k * values[k].

    Args: logits [N, C] float; values [C] (tensor or list). Returns: [N] float32.
    """
    values = torch.as_tensor(values, dtype=torch.float32, device=logits.device)
    return torch.softmax(logits.float(), dim=-1) @ values


def classification_metrics(predicted: Sequence[int], labels: Sequence[int], num_classes: int) -> dict:
    """Accuracy, macro-F1 and majority baseline of class predictions (pure Python).

    F1 of class k = 2 TP / (2 TP + FP + FN): 0 when the class has true or predicted examples but no
    true positives. A class with no true and no predicted examples has F1 None and is left out of
    the macro mean. `majority_baseline` is the accuracy of always predicting the most frequent label.

    Returns: {'accuracy': float, 'macro_f1': float, 'majority_baseline': float,
    'per_class_f1': list[float | None] of length num_classes}.
    Raises: ValueError for empty or mismatched inputs, or a class outside [0, num_classes).
    """
    if len(predicted) != len(labels) or not labels:
        raise ValueError(
            f"Need equally many predictions and labels, at least one; got {len(predicted)} and {len(labels)}."
        )
    if any(not 0 <= c < num_classes for c in (*predicted, *labels)):
        raise ValueError(f"Every predicted class and label must be in [0, {num_classes}).")
    per_class: list[float | None] = []
    for k in range(num_classes):
        tp = sum(p == k and y == k for p, y in zip(predicted, labels))
        fp = sum(p == k and y != k for p, y in zip(predicted, labels))
        fn = sum(p != k and y == k for p, y in zip(predicted, labels))
        denominator = 2 * tp + fp + fn
        per_class.append(2 * tp / denominator if denominator else None)
    present = [f for f in per_class if f is not None]
    return {
        "accuracy": sum(p == y for p, y in zip(predicted, labels)) / len(labels),
        "macro_f1": sum(present) / len(present),
        "majority_baseline": Counter(labels).most_common(1)[0][1] / len(labels),
        "per_class_f1": per_class,
    }


def real_text(text: str) -> bool:
    """False for what a policy writes when it games the format: a template placeholder wrapped in
    brackets ("(your reply to them, 1-2 sentences)"), fewer than 3 words, or a verbatim copy of the
    format instructions and their example (`esc.prompts.COUNSELOR_REASONING_FORMAT`)."""
    text = text.strip()
    words = re.findall(r"[A-Za-z']+", text)
    if len(words) < 3 or (text[:1] in "([{" and text[-1:] in ")]}"):
        return False
    return " ".join(words).lower() not in _INSTRUCTION_WORDS


def format_reward(raw: str) -> float:
    """Format reward of raw counselor text in [0, 1], graded so a small model that rarely gets the whole
    format right still sees which of its samples came closer.

    1.0: well formed `<think>R</think><answer>A</answer>` (`parse_counselor(raw).well_formed`) with a
    real R and A (`real_text`: no bracketed placeholder, no copy of the instructions, 3+ words).
    Otherwise 0.25 for closing the reasoning (`</think>` present) plus 0.25 for a closed `<answer>`
    block holding real text: at most 0.5 for a broken format, 0 for neither. Without the `real_text`
    test, SmolLM2 learned in 4 updates to copy the prompt's placeholders into a "perfect" format.
    """
    parsed = parse_counselor(raw)
    if parsed.well_formed and real_text(parsed.reasoning) and real_text(parsed.answer):
        return 1.0
    closed_think = 0.25 if "</think>" in raw.lower() else 0.0
    return closed_think + (0.25 if any(real_text(m) for m in _ANSWER_BLOCK.findall(raw)) else 0.0)


def safety_penalty(answer: str) -> float:
    """1.0 when the crisis lexicon (`esc.safety.check_message`) flags the counselor's own answer, else 0.0.

    The lexicon is written for seeker messages (mostly first-person phrases), so it catches answers
    such as "you'd be better off dead" but also a reply that names "suicide" when naming a hotline.
    """
    return 1.0 if check_message(answer).crisis else 0.0


def group_novelty(answers: Sequence[str]) -> list[float]:
    """For each answer of one group, the share of its word bigrams (lower-cased, whitespace-split, as
    Distinct-2 counts them) that no other answer of the group contains; 0.0 for an answer of fewer
    than two words. Answers that repeat each other's phrasing score low, so a reward with this term
    keeps a group's replies apart (the held-out Distinct-2 is the same count over a context's replies).
    """
    return [len(own - others) / len(own) if own else 0.0 for own, others in _bigrams_beside_group(answers)]


def group_redundancy(answers: Sequence[str]) -> list[float]:
    """For each answer of one group, how many of its distinct word bigrams (lower-cased, whitespace-split,
    as Distinct-2 counts them) some other answer of the group also has. A count, not a share: unlike
    `group_novelty`, a longer answer does not score better by adding words of its own, and every stock
    phrase that the group's answers share counts against each of them (the repeats that lower
    Distinct-2)."""
    return [float(len(own & others)) for own, others in _bigrams_beside_group(answers)]


def _bigrams_beside_group(answers: Sequence[str]) -> list[tuple[set, set]]:
    """For each answer: (its distinct word bigrams, the bigrams of every other answer of the group),
    lower-cased and whitespace-split as Distinct-2 counts them."""
    grams = []
    for answer in answers:
        words = answer.lower().split()
        grams.append(set(zip(words, words[1:])))
    return [(own, set().union(*(g for j, g in enumerate(grams) if j != i))) for i, own in enumerate(grams)]


def overlong_penalty(lengths: Sequence[int], budget: int, start: int) -> list[float]:
    """Soft overlong punishment (DAPO, Yu et al. 2025): 0 for a completion of at most `start` tokens,
    rising linearly to 1 at `budget` (a reply cut off by the budget gets 1), so the policy learns to end
    before the budget cuts it off instead of only learning from the cut-off ones.

    penalty(L) = min(max(L - start, 0) / (budget - start), 1). Off (all 0) when `start` is 0 or when the
    budget is at or below `start`: no reply can then pass the start. Raises ValueError for a negative start.
    """
    if start < 0:
        raise ValueError(f"the overlong start must be >= 0 tokens, got {start}")
    if start == 0 or budget <= start:
        return [0.0 for _ in lengths]
    return [min(max(n - start, 0) / (budget - start), 1.0) for n in lengths]
