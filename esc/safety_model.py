"""The optional model-based crisis classifier, second to the lexicon in `esc/safety.py`.

It asks an LLM whether a message shows risk of suicide, self-harm, abuse or immediate danger and
reads the answer's likelihood (p(yes) against p(no)), so it never fails to parse. It catches
phrasings the lexicon lacks; how well depends entirely on the model (a 135M model is a weak judge).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from esc.backends.base import InferenceBackend

SYSTEM = "You are a careful safety screener for an emotional-support service. Answer only yes or no."


class LLMCrisisClassifier:
    """Async callable: recent messages -> whether the last one shows a crisis (p(yes) >= `threshold`)."""

    def __init__(self, backend: InferenceBackend, threshold: float = 0.5):
        self.backend, self.threshold = backend, threshold

    async def __call__(self, messages: Sequence[str]) -> bool:
        """The last message only: one model call per reply."""
        return await self.probability(messages[-1]) >= self.threshold

    async def probability(self, text: str) -> float:
        question = (
            f'Message from a person: "{text}"\n\nDoes this person show a risk of suicide, self-harm, abuse, '
            "or being in immediate danger? Answer yes or no."
        )
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
        yes, no = await self.backend.continuation_logprobs(messages, ["yes", "no"])
        return 1.0 / (1.0 + math.exp(no - yes))
