"""What a rollout worker keeps of a candidate's simulated future: a judge that named no verdict (every
sample of the 'sample' scorer unparsable, which scores 0.0) gives no label and no future reward, so the
reward model never learns that 0.0 as a neutral state; the simulated turns stay for inspection."""

from actors.rollout_worker import RolloutWorker
from esc.episode import FutureReward
from esc.roles import CounselorOutput
from esc.schemas import CandidateGroup, Scenario, Turn
from learner.rm_data import simulated_examples

SCENARIO = Scenario(id="s1", emotion_type="anxiety", problem_type="job crisis", situation="I lost my job.")
SEEKER = Turn(role="seeker", text="I lost my job and I can't sleep.")
FUTURE = (Turn(role="seeker", text="Maybe."), Turn(role="counselor", text="Tell me more."))


def output(text: str) -> CounselorOutput:
    raw = f"<think>Be warm.</think><answer>{text}</answer>"
    return CounselorOutput(Turn(role="counselor", text=text), raw, True, 9, weights_version=2)


def test_a_future_without_a_verdict_gives_no_label_and_the_reward_model_skips_it():
    judged = FutureReward(reward=0.5, label=2, verdict="better", future=list(FUTURE))
    unjudged = FutureReward(reward=0.0, label=1, verdict=None, future=list(FUTURE))
    kept = RolloutWorker._candidate(output("That sounds hard."), judged)
    dropped = RolloutWorker._candidate(output("Why not just relax?"), unjudged)
    assert (kept.future_reward, kept.label, kept.verdict) == (0.5, 2, "better")
    assert (dropped.future_reward, dropped.label, dropped.verdict) == (None, None, None)
    assert dropped.future == kept.future == FUTURE
    group = CandidateGroup(
        id="g",
        scenario=SCENARIO,
        context=(SEEKER,),
        candidates=(kept, dropped),
        policy_version=2,
        created_at=0.0,
    )
    assert [e.reply for e in simulated_examples([group])] == ["That sounds hard."]
