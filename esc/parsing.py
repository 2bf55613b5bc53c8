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
        orphan = _rfind(answer, "</think>")
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


def _find(text: str, tag: str, start: int = 0) -> int:
    """Index of the first `tag` in `text` from `start`, in any case, or -1. Searched on the text itself:
    indices into `text.lower()` can be off, as lower-casing changes the length of some characters
    ('\u0130' becomes two)."""
    match = re.compile(re.escape(tag), re.IGNORECASE).search(text, start)
    return match.start() if match else -1


def _rfind(text: str, tag: str) -> int:
    """Index of the last `tag` in `text`, in any case, or -1 (see `_find`)."""
    found = [m.start() for m in re.finditer(re.escape(tag), text, re.IGNORECASE)]
    return found[-1] if found else -1


def _settled(region: str) -> str:
    """What of a growing text region can no longer change once stripped: from its first non-blank
    character up to the last one before any '<' (a tag may be starting) or trailing blanks."""
    return region.split("<", 1)[0].strip()


class AnswerStream:
    """Turns a counselor's growing raw text into the pieces of its answer (and reasoning) that may be
    shown already, so that the pieces add up to what `parse_counselor` makes of the finished text.

    `feed(raw)` takes the whole text so far and returns the new (reasoning, answer) pieces. Text is held
    back while it could still change: trailing blanks, anything after a '<', an answer not yet opened.
    `finish(reasoning, answer)` takes the final parsed texts and returns what is left to send; if the
    finished answer does not extend what was sent (a broken format), nothing more is sent and
    `diverged` is set.
    """

    def __init__(self, reasoning: bool, stops: tuple[str, ...] = ()):
        self.reasoning, self.stops = reasoning, stops
        self.sent_reasoning = self.sent_answer = ""
        self.diverged = False

    def _cut(self, answer: str) -> str:
        hits = [answer.index(s) for s in self.stops if s in answer]
        return answer[: min(hits)] if hits else answer

    def feed(self, raw: str) -> tuple[str, str]:
        thought, answer = "", ""
        if not self.reasoning:
            answer = _settled(raw)
        else:
            start = _find(raw, "<think>")
            if start >= 0:
                end = _find(raw, "</think>", start)
                thought = _settled(raw[start + 7 : end if end >= 0 else len(raw)])
            opened = _find(raw, "<answer>")
            if opened >= 0:
                answer = _settled(raw[opened + 8 :])
        answer = self._cut(answer)
        if self.stops:  # a stop string may be starting at the end: hold back its longest partial match
            longest = max(
                (n for s in self.stops for n in range(1, len(s)) if answer.endswith(s[:n])), default=0
            )
            answer = answer[: len(answer) - longest].rstrip()
        return self._advance(thought, answer)

    def finish(self, reasoning: str | None, answer: str) -> tuple[str, str]:
        return self._advance(reasoning or "", self._cut(answer).strip(), final=True)

    def _advance(self, thought: str, answer: str, final: bool = False) -> tuple[str, str]:
        pieces = []
        for sent, now in ((self.sent_reasoning, thought), (self.sent_answer, answer)):
            if now.startswith(sent):
                pieces.append(now[len(sent) :])
            else:
                pieces.append("")
                self.diverged = self.diverged or final
        self.sent_reasoning += pieces[0]
        self.sent_answer += pieces[1]
        return pieces[0], pieces[1]
