"""Evaluation metrics: reference-based reply quality, interactive (PPDPP) summaries, judge checks.

Pure functions over plain Python values; no I/O, no model calls. Owns the scoring conventions
(tokenizer, smoothing, scales) so every report computes them the same way. It does not know how
replies were generated, how dialogues were simulated, or how the judge was prompted.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any

from esc.parsing import VERDICTS

QUALITY_KEYS: tuple[str, ...] = ("bleu1", "bleu2", "bleu4", "rouge_l", "distinct1", "distinct2")
SURVEY_CLASSES: tuple[str, ...] = ("worse", "same", "better")
CHANCE_ACCURACY = 1.0 / len(SURVEY_CLASSES)
DEGENERATE_SHARE = 0.8  # a judge giving one verdict more often than this is not discriminating
SIGNIFICANCE = 0.05


def _check_pairs(hypotheses: list[str], references: list[str]) -> None:
    if not hypotheses or len(hypotheses) != len(references):
        raise ValueError(
            f"Need the same, non-zero number of hypotheses and references; got {len(hypotheses)} "
            f"and {len(references)}."
        )


def bleu_n(hypotheses: list[str], references: list[str], n: int) -> float:
    """Corpus BLEU (0-100) of hypotheses against one reference each, with n-grams up to order `n`.

    sacrebleu settings: tokenizer `13a` (the WMT mteval standard), lower-cased (casing in chatty
    replies is not quality), smoothing `exp` (sacrebleu's default: the k-th order whose match count is
    zero gets precision 1 / (2^k * total), so one missing order does not zero the score).
    """
    _check_pairs(hypotheses, references)
    if n < 1:
        raise ValueError(f"BLEU n-gram order must be at least 1; got {n}.")
    from sacrebleu.metrics import BLEU

    bleu = BLEU(max_ngram_order=n, tokenize="13a", lowercase=True, smooth_method="exp")
    return float(bleu.corpus_score(hypotheses, [references]).score)


def rouge_l_each(hypotheses: list[str], references: list[str]) -> list[float]:
    """Sentence-level ROUGE-L F1 (0-100) of each hypothesis against its reference, rouge_score
    tokenization with the Porter stemmer."""
    _check_pairs(hypotheses, references)
    from rouge_score import rouge_scorer  # heavy (nltk); only reports need it, not every actor

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [100.0 * scorer.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hypotheses, references)]


def rouge_l(hypotheses: list[str], references: list[str]) -> float:
    """Mean sentence-level ROUGE-L F1 (0-100), as `rouge_l_each`."""
    scores = rouge_l_each(hypotheses, references)
    return sum(scores) / len(scores)


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct-n (0-1): unique n-grams / all n-grams, pooled over texts.

    Tokens are lower-cased whitespace-split words; n-grams never cross text boundaries.
    Returns 0.0 when no text has `n` tokens.
    """
    if n < 1:
        raise ValueError(f"distinct-n order must be at least 1; got {n}.")
    grams: list[tuple[str, ...]] = []
    for text in texts:
        tokens = text.lower().split()
        grams.extend(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def quality_scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """All reference-based metrics, keyed by QUALITY_KEYS (BLEU/ROUGE 0-100, distinct 0-1).

    distinct1/distinct2 are computed on the hypotheses only.
    """
    _check_pairs(hypotheses, references)
    return {
        "bleu1": bleu_n(hypotheses, references, 1),
        "bleu2": bleu_n(hypotheses, references, 2),
        "bleu4": bleu_n(hypotheses, references, 4),
        "rouge_l": rouge_l(hypotheses, references),
        "distinct1": distinct_n(hypotheses, 1),
        "distinct2": distinct_n(hypotheses, 2),
    }


def interactive_summary(episodes: list[tuple[bool, int]], max_turns: int) -> dict[str, Any]:
    """PPDPP interactive-evaluation summary of simulated conversations.

    Args:
        episodes: one (success, turns_used) per conversation, 1 <= turns_used <= max_turns.
        max_turns: the turn limit of the simulation.

    Returns:
        n: number of episodes.
        sr: success rate, share of episodes that succeeded (0-1).
        at: average turns, failures counted as `max_turns` whatever they used.
        success_curve: list of length `max_turns`; entry t is the share of episodes that succeeded
            within t + 1 turns. Cumulative, so non-decreasing, and the last entry equals `sr`.
    """
    if not episodes:
        raise ValueError("Need at least one episode to summarise.")
    if max_turns < 1:
        raise ValueError(f"max_turns must be at least 1; got {max_turns}.")
    for success, turns in episodes:
        if not 1 <= turns <= max_turns:
            raise ValueError(f"Episode turns must lie in 1..{max_turns}; got {turns} (success={success}).")
    n = len(episodes)
    success_turns = Counter(turns for success, turns in episodes if success)
    curve, done = [], 0
    for t in range(1, max_turns + 1):
        done += success_turns[t]
        curve.append(done / n)
    turns_counted = [turns if success else max_turns for success, turns in episodes]
    return {"n": n, "sr": curve[-1], "at": sum(turns_counted) / n, "success_curve": curve}


def survey_verdict(initial: int, final: int) -> str:
    """Survey outcome class from the seeker's emotion intensity (1-5, lower is better) before and after.

    'better' when final < initial, 'same' when final == initial, 'worse' when final > initial.
    """
    for name, value in (("initial", initial), ("final", final)):
        if not 1 <= value <= 5:
            raise ValueError(f"Emotion intensity must be in 1..5; got {name}={value}.")
    if final < initial:
        return "better"
    return "same" if final == initial else "worse"


def judge_class(verdict: str) -> str:
    """Collapse a judge verdict onto the survey's three classes: 'solved' counts as 'better'."""
    if verdict not in VERDICTS:
        raise ValueError(f"Unknown verdict {verdict!r}; expected one of {list(VERDICTS)}.")
    return "better" if verdict == "solved" else verdict


def _shares(items: list[str], keys: tuple[str, ...]) -> dict[str, float]:
    counts = Counter(items)
    return {key: counts[key] / len(items) for key in keys}


def _spearman(x: list[float], y: list[float]) -> tuple[float | None, float | None]:
    """Spearman rho and p-value, with None for whatever is undefined (constant input, n < 3)."""
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant input; we report None instead
        result = spearmanr(x, y)
    rho, p = float(result.statistic), float(result.pvalue)
    return (None if math.isnan(rho) else rho), (None if math.isnan(p) else p)


def judge_agreement(
    judge_verdicts: list[str], judge_rewards: list[float], surveys: list[tuple[int, int]]
) -> dict[str, Any]:
    """How well judge verdicts match ESConv seekers' own (initial, final) emotion-intensity ratings.

    Args:
        judge_verdicts: one VERDICTS key per conversation.
        judge_rewards: the judge's scalar reward per conversation (e.g. expected VERDICTS value).
        surveys: (initial, final) emotion intensity, 1-5, per conversation.

    Returns:
        n; accuracy of judge_class(verdict) against survey_verdict(initial, final); majority_baseline
        (share of the most common survey class); chance_accuracy (1/3); spearman and spearman_p between
        reward and improvement (initial - final), None when undefined; verdict_distribution (share of
        each of the four verdicts); survey_distribution (share of each survey class); warnings, a list of
        one-sentence strings starting 'degenerate judge' or 'no better than chance'.
    """
    n = len(judge_verdicts)
    if n == 0 or len(judge_rewards) != n or len(surveys) != n:
        raise ValueError(
            f"Need the same, non-zero number of verdicts, rewards and surveys; got {n}, "
            f"{len(judge_rewards)} and {len(surveys)}."
        )
    judged = [judge_class(v) for v in judge_verdicts]
    truth = [survey_verdict(initial, final) for initial, final in surveys]
    accuracy = sum(j == t for j, t in zip(judged, truth)) / n
    survey_distribution = _shares(truth, SURVEY_CLASSES)
    majority = max(survey_distribution.values())
    verdict_distribution = _shares(judge_verdicts, tuple(VERDICTS))
    rho, p = _spearman(list(judge_rewards), [float(i - f) for i, f in surveys])

    found: list[str] = []
    top_verdict, top_share = max(verdict_distribution.items(), key=lambda kv: kv[1])
    if top_share > DEGENERATE_SHARE:
        found.append(
            f"degenerate judge: {top_share:.0%} of verdicts are {top_verdict!r}, above the "
            f"{DEGENERATE_SHARE:.0%} limit."
        )
    reasons = []
    if accuracy <= max(majority, CHANCE_ACCURACY):
        reasons.append(
            f"accuracy {accuracy:.3f} does not beat the majority baseline {majority:.3f} "
            f"or chance {CHANCE_ACCURACY:.3f}"
        )
    if rho is None or p is None or rho <= 0 or p >= SIGNIFICANCE:
        shown = "undefined" if rho is None else f"{rho:.3f} (p={'undefined' if p is None else f'{p:.3g}'})"
        reasons.append(f"Spearman rho {shown} is not positive with p < {SIGNIFICANCE}")
    if reasons:
        found.append(f"no better than chance: {'; '.join(reasons)}.")

    return {
        "n": n,
        "accuracy": accuracy,
        "majority_baseline": majority,
        "chance_accuracy": CHANCE_ACCURACY,
        "spearman": rho,
        "spearman_p": p,
        "verdict_distribution": verdict_distribution,
        "survey_distribution": survey_distribution,
        "warnings": found,
    }


def verdict_from_probs(probs: dict[str, float]) -> str:
    """The most probable verdict; ties go to the one earliest in VERDICTS order (worse first).

    `probs` maps some or all VERDICTS keys to probabilities (or any scores where higher is likelier);
    missing verdicts are not candidates.
    """
    unknown = set(probs) - set(VERDICTS)
    if unknown or not probs:
        raise ValueError(f"Probabilities must be keyed by some of {list(VERDICTS)}; got {sorted(probs)}.")
    if any(math.isnan(value) for value in probs.values()):
        raise ValueError(f"Verdict probabilities must be numbers, not NaN; got {probs}.")
    return max((v for v in VERDICTS if v in probs), key=probs.__getitem__)
