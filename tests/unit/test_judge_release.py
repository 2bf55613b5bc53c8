"""The judge actor's class (no Ray) on the tiny model: `release` drops its model, the next rating
loads it again and rates as before, and the dashboard's token count goes on from where it was."""

from __future__ import annotations

import asyncio
import gc
import weakref

from actors.judge import Judge
from esc.config import load_config
from esc.schemas import Scenario, Turn

SCENARIO = Scenario(id="j1", emotion_type="anxiety", problem_type="exams", situation="I failed my exam.")
HISTORY = [
    Turn(role="seeker", text="I failed my exam."),
    Turn(role="counselor", text="That sounds hard."),
    Turn(role="seeker", text="It is."),
]


def test_a_released_judge_frees_its_model_and_reloads_it_to_rate_the_same():
    config = load_config("configs/local.yaml", ["judge.model=tiny-random"]).model_dump()
    judge = Judge(config)

    async def scenario():
        first = await judge.rate(SCENARIO, HISTORY, seed=1)
        counted = judge.throughput()["tokens"]
        model = weakref.ref(judge.judge.backend.model)
        assert await judge.release() is True
        gc.collect()
        assert judge.judge is None and model() is None  # nothing holds the weights any more
        assert judge.throughput()["tokens"] == counted
        again = await judge.rate(SCENARIO, HISTORY, seed=1)
        assert judge.throughput()["tokens"] > counted  # the new model's tokens add to the old ones'
        # gather starts the rating first: it is waiting on the model when release is asked
        _, kept = await asyncio.gather(judge.rate(SCENARIO, HISTORY, seed=2), judge.release())
        await judge.judge.backend.close()
        return first, again, kept

    first, again, kept = asyncio.run(scenario())
    assert again == first  # the same weights (the tiny model is seeded), the same verdict probabilities
    assert kept is False  # a rating under way keeps the model
