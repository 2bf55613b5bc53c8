"""Reference metrics, PPDPP interactive summaries and the judge-vs-survey check (esc/metrics.py)."""

from __future__ import annotations

import math

import pytest

from esc.metrics import (
    CHANCE_ACCURACY,
    QUALITY_KEYS,
    bleu_n,
    distinct_n,
    interactive_summary,
    judge_agreement,
    judge_class,
    quality_scores,
    rouge_l,
    survey_verdict,
    verdict_from_probs,
)

HYP = "the cat sat on the mat"
REF = "the cat is on the mat"


# --- reference-based quality -------------------------------------------------------------------


def test_distinct_n_by_hand():
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)  # {a, b} of a b a b
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # {ab, ba} of ab ba ab
    # Pooled over texts, lower-cased, never across text boundaries: "b c" is not a bigram here.
    assert distinct_n(["A b", "c a"], 1) == pytest.approx(3 / 4)
    assert distinct_n(["A b", "c a"], 2) == pytest.approx(2 / 2)
    assert distinct_n(["x y", "x y"], 2) == pytest.approx(1 / 2)


def test_distinct_n_without_ngrams_is_zero():
    assert distinct_n([], 1) == 0.0
    assert distinct_n(["one", ""], 2) == 0.0


def test_identical_texts_score_100():
    texts = ["I hear how hard this week has been for you.", "What would help most right now?"]
    assert bleu_n(texts, texts, 4) == pytest.approx(100.0)
    assert rouge_l(texts, texts) == pytest.approx(100.0)


def test_bleu_partial_overlap_by_hand():
    # Equal lengths (6 tokens), so brevity penalty 1.
    # unigrams: the, cat, on, the, mat match -> p1 = 5/6
    # bigrams: "the cat", "on the", "the mat" match of 5 -> p2 = 3/5
    # trigrams: "on the mat" of 4 -> p3 = 1/4; 4-grams: 0 of 3 -> exp smoothing gives 1/(2*3)
    assert bleu_n([HYP], [REF], 1) == pytest.approx(100 * 5 / 6)
    assert bleu_n([HYP], [REF], 2) == pytest.approx(100 * math.sqrt(5 / 6 * 3 / 5))  # 70.71
    assert bleu_n([HYP], [REF], 4) == pytest.approx(100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25)  # 37.99


def test_bleu_brevity_penalty_and_case():
    # "The Cat" is lower-cased; every unigram matches but hyp 2 vs ref 6 tokens: BP = exp(1 - 6/2).
    assert bleu_n(["The Cat"], [REF.replace("is", "sat")], 1) == pytest.approx(100 * math.exp(-2))


def test_rouge_l_partial_overlap_by_hand():
    # LCS = "the cat on the mat" = 5 tokens; P = R = 5/6, so F1 = 5/6.
    assert rouge_l([HYP], [REF]) == pytest.approx(100 * 5 / 6)
    # Mean over pairs: (5/6 + 1) / 2; the stemmer makes "listening" match "listen".
    assert rouge_l([HYP, "I am listening"], [REF, "I am listen"]) == pytest.approx(100 * (5 / 6 + 1) / 2)


def test_quality_scores_keys_and_values():
    scores = quality_scores([HYP], [REF])
    assert tuple(scores) == QUALITY_KEYS
    assert scores["bleu1"] == pytest.approx(100 * 5 / 6)
    assert scores["rouge_l"] == pytest.approx(100 * 5 / 6)
    assert scores["distinct1"] == pytest.approx(5 / 6)  # "the" repeats
    assert scores["distinct2"] == pytest.approx(1.0)


@pytest.mark.parametrize("fn", [quality_scores, rouge_l, lambda h, r: bleu_n(h, r, 2)])
@pytest.mark.parametrize("hyps,refs", [([], []), (["a"], ["a", "b"])])
def test_quality_rejects_empty_or_mismatched(fn, hyps, refs):
    with pytest.raises(ValueError, match="same, non-zero number"):
        fn(hyps, refs)


def test_bad_ngram_order():
    with pytest.raises(ValueError):
        bleu_n(["a"], ["a"], 0)
    with pytest.raises(ValueError):
        distinct_n(["a"], 0)


# --- interactive evaluation ---------------------------------------------------------------------


def test_interactive_summary_by_hand():
    summary = interactive_summary([(True, 2), (False, 8), (True, 5), (False, 8)], max_turns=8)
    assert summary["n"] == 4
    assert summary["sr"] == pytest.approx(0.5)
    assert summary["at"] == pytest.approx((2 + 8 + 5 + 8) / 4)  # 5.75
    assert summary["success_curve"] == pytest.approx([0, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.5])


def test_interactive_summary_counts_failures_at_max_turns():
    # A failure that stopped early (e.g. the seeker left at turn 3) still costs max_turns.
    summary = interactive_summary([(False, 3), (True, 1)], max_turns=5)
    assert summary["at"] == pytest.approx((5 + 1) / 2)
    assert summary["success_curve"] == pytest.approx([0.5] * 5)
    assert summary["success_curve"][-1] == summary["sr"]


@pytest.mark.parametrize(
    "episodes,max_turns", [([], 8), ([(True, 0)], 8), ([(True, 9)], 8), ([(True, 1)], 0)]
)
def test_interactive_summary_rejects_bad_input(episodes, max_turns):
    with pytest.raises(ValueError):
        interactive_summary(episodes, max_turns)


# --- judge vs ESConv survey ---------------------------------------------------------------------


def test_survey_verdict_mapping():
    assert survey_verdict(4, 2) == "better"  # intensity went down
    assert survey_verdict(3, 3) == "same"
    assert survey_verdict(2, 5) == "worse"
    with pytest.raises(ValueError, match="1..5"):
        survey_verdict(0, 3)
    with pytest.raises(ValueError, match="1..5"):
        survey_verdict(3, 6)


def test_judge_class():
    assert [judge_class(v) for v in ("worse", "same", "better", "solved")] == [
        "worse",
        "same",
        "better",
        "better",
    ]
    with pytest.raises(ValueError, match="Unknown verdict"):
        judge_class("great")


def test_judge_agreement_by_hand():
    verdicts = ["solved", "better", "same", "worse", "better"]
    rewards = [1.0, 0.5, -0.5, -1.0, 0.5]
    surveys = [(5, 2), (4, 4), (3, 3), (2, 4), (3, 4)]  # better, same, same, worse, worse
    report = judge_agreement(verdicts, rewards, surveys)
    assert report["n"] == 5
    assert report["accuracy"] == pytest.approx(3 / 5)  # items 1, 3, 4 agree
    assert report["majority_baseline"] == pytest.approx(2 / 5)
    assert report["chance_accuracy"] == pytest.approx(CHANCE_ACCURACY) == pytest.approx(1 / 3)
    assert report["verdict_distribution"] == pytest.approx(
        {"worse": 0.2, "same": 0.2, "better": 0.4, "solved": 0.2}
    )
    assert report["survey_distribution"] == pytest.approx({"worse": 0.4, "same": 0.4, "better": 0.2})
    # Ranks: rewards [5, 3.5, 2, 1, 3.5], improvements [3, 0, 0, -2, -1] -> [5, 3.5, 3.5, 1, 2];
    # centred products sum 7.25, each sum of squares 9.5 -> rho = 29/38 (p ~ 0.13 at n = 5).
    assert report["spearman"] == pytest.approx(29 / 38)
    assert report["spearman_p"] > 0.05
    # Accuracy beats the baseline, but the correlation is not significant: only that reason fires.
    [warning] = report["warnings"]
    assert warning.startswith("no better than chance") and "Spearman" in warning
    assert "accuracy" not in warning


def test_judge_agreement_all_better_judge_warns():
    surveys = [(5, 2), (4, 3), (3, 1), (3, 3)]  # better x3, same
    report = judge_agreement(["better"] * 4, [0.5] * 4, surveys)
    assert report["accuracy"] == pytest.approx(0.75) == report["majority_baseline"]
    assert report["spearman"] is None and report["spearman_p"] is None  # constant judge reward
    assert report["verdict_distribution"]["better"] == 1.0
    assert any(w.startswith("degenerate judge") for w in report["warnings"])
    [chance] = [w for w in report["warnings"] if w.startswith("no better than chance")]
    assert "accuracy" in chance and "undefined" in chance


def test_judge_agreement_perfect_judge_on_balanced_set_is_clean():
    verdicts = ["solved", "better", "same", "same", "worse", "worse"]
    rewards = [1.0, 0.5, -0.5, -0.5, -1.0, -1.0]
    surveys = [(5, 2), (4, 3), (3, 3), (2, 2), (2, 3), (1, 4)]
    report = judge_agreement(verdicts, rewards, surveys)
    assert report["accuracy"] == 1.0
    assert report["majority_baseline"] == pytest.approx(1 / 3)
    assert report["spearman"] > 0.9 and report["spearman_p"] < 0.05
    assert report["warnings"] == []


@pytest.mark.parametrize(
    "verdicts,rewards,surveys",
    [([], [], []), (["same"], [0.0, 1.0], [(3, 3)]), (["same", "worse"], [0.0, 1.0], [(3, 3)])],
)
def test_judge_agreement_rejects_mismatched_or_empty(verdicts, rewards, surveys):
    with pytest.raises(ValueError, match="same, non-zero number"):
        judge_agreement(verdicts, rewards, surveys)


def test_verdict_from_probs():
    assert verdict_from_probs({"worse": 0.1, "same": 0.2, "better": 0.6, "solved": 0.1}) == "better"
    assert verdict_from_probs({"worse": 0.25, "same": 0.25, "better": 0.25, "solved": 0.25}) == "worse"
    assert verdict_from_probs({"solved": 0.4, "better": 0.4, "same": 0.2}) == "better"  # tie: VERDICTS order
    with pytest.raises(ValueError):
        verdict_from_probs({})
    with pytest.raises(ValueError):
        verdict_from_probs({"great": 1.0})
    with pytest.raises(ValueError):
        verdict_from_probs({"same": float("nan"), "worse": 0.1})
