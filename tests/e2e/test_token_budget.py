"""`make run`'s counselor budget fits a well-formed reply: the cold-start SFT targets (think + answer +
closing tag, as the counselor generates them after the prefilled `<think>`) fit counselor.max_new_tokens.

Measured with the embedded model's tokenizer on the real ESConv train split when it is present, else
on the repository's ESConv fixture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import ESCONV, FIXTURES, REPO

from esc.config import load_config
from esc.data import load_dialogues
from esc.models import EMBEDDED, load_tokenizer
from learner.sft import cap_reply, generated_tokens, sft_examples


@pytest.fixture(scope="module")
def budget():
    config = load_config(REPO / "configs" / "local.yaml")
    tokenizer = load_tokenizer(EMBEDDED)
    data = ESCONV if (ESCONV / "train.jsonl").is_file() else FIXTURES / "esconv_split"
    dialogues = load_dialogues(f"esconv:{Path(data)}#train")

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def cap(text: str) -> str | None:
        return cap_reply(text, count, config.sft.max_answer_tokens)

    # Every reply of the split (not the sft.max_examples subset): the budget must hold for the data.
    examples = sft_examples(dialogues, config.counselor.reasoning, 100_000, config.seed, cap=cap)
    # What follows the generation prompt tokenizes the same whatever came before it (the template's
    # special tokens split the text), so the last message stands in for the whole prompt: much faster.
    lengths = np.array([generated_tokens(tokenizer, {**e, "prompt": e["prompt"][-1:]}) for e in examples])
    return config, lengths


def test_local_config_trains_the_format_it_generates():
    config = load_config(REPO / "configs" / "local.yaml")
    assert config.counselor.reasoning and config.sft.cold_start
    assert config.counselor.model == EMBEDDED  # `rlff run` swaps in runs/<name>/sft (jobs.train_sft)


def test_a_well_formed_reply_fits_the_counselor_budget(budget):
    config, lengths = budget
    assert len(lengths) > 0
    p95 = float(np.percentile(lengths, 95))
    assert p95 <= config.counselor.max_new_tokens, (
        f"95% of SFT targets need up to {p95:.0f} tokens, more than counselor.max_new_tokens"
        f"={config.counselor.max_new_tokens}; raise it or lower sft.max_answer_tokens"
    )
    # Long replies are cut to whole sentences within sft.max_answer_tokens, so every target fits.
    assert lengths.max() <= config.counselor.max_new_tokens


def test_capped_answers_stay_within_the_answer_budget(budget):
    config, lengths = budget
    # think (~15 tokens) + tags + at most max_answer_tokens of reply
    assert lengths.max() <= config.sft.max_answer_tokens + 32
