"""Parsing of model text: the counselor's `<think>/<answer>` format and the judge's verdicts."""

from __future__ import annotations

import re
from dataclasses import dataclass

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
_WELL_FORMED = re.compile(
    r"^\s*<think>(?P<think>.+?)</think>\s*<answer>(?P<answer>.+?)</answer>\s*$", re.DOTALL | re.IGNORECASE
)
_TAG = re.compile(r"</?\s*(?:think|answer)\s*>", re.IGNORECASE)
_CUT_TAG = re.compile(r"<(?:/?\s*[a-z]*)?$", re.IGNORECASE)  # a tag the token budget cut in half, at the end

# PPDPP verdict -> reward. Order matters for the likelihood scorer (label index = class index).
VERDICTS: dict[str, float] = {"worse": -1.0, "same": -0.5, "better": 0.5, "solved": 1.0}
_VERDICT_WORD = re.compile(r"\b(worse|same|better|solved)\b", re.IGNORECASE)


@dataclass(frozen=True)
class CounselorReply:
    """A parsed counselor output.

    `answer` is the only text ever shown to a seeker or user; it never contains reasoning or tags.
    `well_formed` is True exactly when the text is `<think>R</think><answer>A</answer>` with
    non-blank R and A and nothing else around them.
    """

    reasoning: str
    answer: str
    well_formed: bool


def parse_counselor(text: str) -> CounselorReply:
    """Split counselor text into reasoning and answer, tolerating the ways small models break format.

    Fallbacks when the format is broken: an unclosed `<answer>` runs to the end; without an answer
    tag, the answer is the text with every think block (closed or not) removed. Stray tags are
    stripped from the answer, so reasoning never leaks through a malformed reply.
    """
    match = _WELL_FORMED.match(text)
    if match and all(part.strip() and not _TAG.search(part) for part in (match["think"], match["answer"])):
        return CounselorReply(match["think"].strip(), match["answer"].strip(), True)
    reasoning = " ".join(m.strip() for m in _THINK.findall(text))
    answer_match = _ANSWER.search(text)
    if answer_match:
        answer = _THINK.sub("", answer_match.group(1))
    else:
        answer = _THINK.sub("", text)
        orphan = answer.lower().rfind("</think>")
        if orphan >= 0:  # a close without an open (the prompt was prefilled, or the model skipped it)
            reasoning = (reasoning + " " + _TAG.sub("", answer[:orphan])).strip()
            answer = answer[orphan + len("</think>") :]
        unclosed = re.search(r"<think>", answer, re.IGNORECASE)
        if unclosed:  # everything after an unclosed <think> is reasoning
            reasoning = (reasoning + " " + answer[unclosed.end() :]).strip()
            answer = answer[: unclosed.start()]
    return CounselorReply(reasoning, _CUT_TAG.sub("", _TAG.sub("", answer).strip()).strip(), False)


def parse_verdict_word(text: str) -> str | None:
    """The first PPDPP verdict word in a judge's text (lower-cased), or None when there is none."""
    match = _VERDICT_WORD.search(text)
    return match.group(1).lower() if match else None


def parse_verdict(text: str) -> float | None:
    """Reward of the first PPDPP verdict word in a judge's text, or None when there is none."""
    word = parse_verdict_word(text)
    return None if word is None else VERDICTS[word]
