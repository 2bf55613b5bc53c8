"""What the dashboard's dialogue feed shows of the rollout workers' work: a stored candidate group
(`group_feed`) and a periodic-evaluation episode (`episode_feed`), as plain dicts for the metrics hub.
Texts are cut to FEED_CHARS; the fallback line that stood in for a malformed output is never shown as
if a model wrote it."""

from __future__ import annotations

from typing import Any

from esc.roles import FALLBACK_ANSWER, malformed_reason, used_fallback
from esc.schemas import CandidateGroup

FEED_CHARS = 600  # longest text of one turn in the dashboard's feed


def _turns(turns, keep: int | None = None, simulated: bool = False) -> list[dict[str, Any]]:
    """Turns for the feed. `simulated`: the seeker turns came from the user simulator (the dashboard
    checks those for role consistency). A counselor turn reading FALLBACK_ANSWER is flagged `fallback`
    with no text: it stood in for a malformed output, it is not what a model wrote."""
    kept = list(turns)[-keep:] if keep else list(turns)
    shown = []
    for t in kept:
        fallback = t.role == "counselor" and t.text == FALLBACK_ANSWER
        shown.append(
            {
                "role": t.role,
                "text": None if fallback else t.text[:FEED_CHARS],
                "reward": t.reward,
                "simulated": simulated and t.role == "seeker",
                "fallback": fallback,
            }
        )
    return shown


def _output(text: str, raw: str, well_formed: bool) -> dict[str, Any]:
    """How a counselor output is shown: a malformed one carries its raw text and why it is malformed;
    `fallback` says the seeker was sent FALLBACK_ANSWER in its place, and then `text` is None."""
    fallback = not well_formed and used_fallback(raw)
    return {
        "text": None if fallback else text[:FEED_CHARS],
        "well_formed": well_formed,
        "fallback": fallback,
        "malformed": None if well_formed else malformed_reason(raw),
        "raw": None if well_formed else raw[:FEED_CHARS],
    }


def group_feed(group: CandidateGroup) -> dict[str, Any]:
    """A stored group as the dashboard's feed shows it: the context's last turns (from the data, not
    simulated) and each candidate answer (see `_output`) with its simulated future and the judge's
    verdict where it was simulated."""
    return {
        "kind": "group",
        "id": group.id,
        "policy_version": group.policy_version,
        "problem": group.scenario.problem_type,
        "emotion": group.scenario.emotion_type,
        "context": _turns(group.context, keep=3),
        "candidates": [
            {
                **_output(c.text, c.raw, c.well_formed),
                "verdict": c.verdict,
                "future_reward": c.future_reward,
                "future": _turns(c.future or (), simulated=True),
            }
            for c in group.candidates
        ],
    }


def episode_feed(episode, version: int) -> dict[str, Any]:
    """A periodic-evaluation episode as the dashboard's feed shows it: every turn (the i-th counselor
    turn with its output as `_output` shows it), the judge's verdict per counselor turn, and whether
    it succeeded."""
    records = iter(episode.records)
    turns = _turns(episode.dialogue.turns, simulated=True)
    for turn, shown in zip(episode.dialogue.turns, turns, strict=True):
        if turn.role == "counselor":
            record = next(records)
            shown.update(_output(turn.text, record.raw, record.well_formed))
    return {
        "kind": "evaluation",
        "policy_version": version,
        "problem": episode.dialogue.scenario.problem_type,
        "emotion": episode.dialogue.scenario.emotion_type,
        "turns": turns,
        "verdicts": [r.verdict for r in episode.records],
        "success": episode.success,
    }
