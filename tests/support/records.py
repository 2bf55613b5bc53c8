"""Store records for tests that build token rows by hand."""

from __future__ import annotations

from esc.schemas import Candidate


def tokens_only(prompt: list[int], completion: list[int], logprobs: list[float]) -> Candidate:
    """A candidate that is only its tokens: no text (the learner's rows read tokens, never text)."""
    return Candidate(
        text="",
        raw="",
        well_formed=False,
        policy_version=0,
        prompt_ids=tuple(prompt),
        token_ids=tuple(completion),
        token_logprobs=tuple(logprobs),
    )
