"""The learner learns: a tiny model, a rule-based reward, a fixed seed, and the mean reward rises.

Generation runs in-process on the same decode loop the counselor actors use, so every candidate
carries real prompt ids, sampled token ids and behaviour log-probs. The decode loop and the learner
share one model object, so every update's weights generate the next batch (fully on-policy).
"""

import pytest
import torch

from esc.backends.base import SamplingParams
from esc.backends.hf_decode import CausalLM
from esc.config import LearnerConfig
from esc.models import load_model
from esc.parsing import parse_counselor
from esc.prompts import counselor_messages
from esc.schemas import CandidateGroup, Scenario, Turn
from learner.loop import Learner
from learner.policy import candidate

pytestmark = pytest.mark.slow

CONTEXTS = [(Turn(role="seeker", text=t),) for t in ("I feel lonely since I moved.", "Work stresses me out.")]
GROUP = 8
SCENARIO = Scenario(id="toy", emotion_type="sadness", problem_type="moving", situation="I moved.")


def opens_like_a_sentence(_contexts, answers, _intensities):
    """Rule-based reward: 1 when the answer opens with a capital letter, as a sentence does, else 0. The
    random model opens with one of thousands of word pieces; GRPO has to find and keep the right ones."""
    return [float(a.strip()[:1].isupper()) for a in answers]


def test_mean_reward_rises_with_a_fixed_seed():
    torch.manual_seed(0)
    model, tokenizer = load_model("tiny-random", seed=0)
    lm = CausalLM(model, tokenizer)
    learner = Learner(
        # a random tiny model moves little per update: at lr 3e-3 twelve updates were noise. At 0.1 the
        # mean rose by 0.2 within 12 updates for 8 of 11 model seeds, and within 24 for 10 of 11 (the
        # other collapsed to lowercase openings); which seeds rise moved with 1e-7 changes in the decode
        # loop's logits (2026-12-06), so the test takes 24 updates
        LearnerConfig(lr=1e-1, format_weight=0.0, safety_weight=0.0, format_gate=False, max_tokens=256),
        model,
        tokenizer.pad_token_id,
        opens_like_a_sentence,
    )
    prompts = [
        tokenizer(
            tokenizer.apply_chat_template(
                counselor_messages(list(c)), tokenize=False, add_generation_prompt=True
            ),
            add_special_tokens=False,
        )["input_ids"]
        for c in CONTEXTS
    ]
    means, step = [], 0

    def sample(n):
        nonlocal step
        step += 1
        records = []
        for k, (context, prompt) in enumerate(zip(CONTEXTS, prompts)):
            params = [
                SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=12, seed=step * 100 + k * 10 + i)
                for i in range(GROUP)
            ]
            outs = lm.decode([prompt] * GROUP, params)
            candidates = [candidate(o, parse_counselor(o.text).answer, learner.version) for o in outs]
            records.append(
                CandidateGroup(
                    id=f"{step}-{k}",
                    scenario=SCENARIO,
                    context=context,
                    candidates=tuple(candidates),
                    policy_version=learner.version,
                    created_at=0.0,
                )
            )
        return records[:n]

    for _ in range(24):
        metrics = learner.update(sample, lambda version, state: None, groups_wanted=2)
        means.append(metrics["rm_score_mean"])
        assert metrics["groups_used"] == 2 and metrics["weights_version"] == len(means)
        # on-policy samples: the behaviour log-probs match the weights that sampled them
        assert metrics["is_weight_mean"] == pytest.approx(1.0, abs=1e-3)
    first, last = sum(means[:3]) / 3, sum(means[-3:]) / 3
    assert last > first + 0.2, means
