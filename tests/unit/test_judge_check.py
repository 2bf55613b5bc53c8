"""Dialogue selection of `rlff judge-check` (pure logic)."""

from esc.schemas import Dialogue, Scenario, Survey, Turn
from jobs.judge_check import pick_dialogues

SCENARIO = Scenario(id="s1", emotion_type="sadness", problem_type="breakup", situation="My partner left me.")


def test_judge_check_balances_survey_classes():
    def dialogue(i, initial, final):
        turns = (Turn(role="seeker", text="hi"),)
        survey = Survey(initial_intensity=initial, final_intensity=final)
        return Dialogue(id=f"d{i}", scenario=SCENARIO, turns=turns, survey=survey)

    data = [dialogue(i, 5, 2) for i in range(6)] + [
        dialogue(10, 3, 3),
        dialogue(11, 2, 4),
        dialogue(12, 3, 3),
    ]
    assert [d.id for d in pick_dialogues(data, 5, balance=True)] == ["d0", "d10", "d11", "d1", "d12"]
    assert [d.id for d in pick_dialogues(data, 3, balance=False)] == ["d0", "d1", "d2"]
