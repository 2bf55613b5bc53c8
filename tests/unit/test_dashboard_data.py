"""What the dashboard reads from a run folder, and where metric events go besides metrics.jsonl; the
feed records that show malformed counselor outputs as malformed; seeker-role marks and run progress."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import types
from pathlib import Path

from actors.feed import episode_feed, group_feed
from actors.metric_sinks import TensorBoardSink, scalars
from actors.metrics_hub import MetricsHub
from esc.episode import Episode, TurnRecord
from esc.roles import FALLBACK_ANSWER, malformed_reason, used_fallback
from esc.schemas import Candidate, CandidateGroup, Dialogue, Scenario, Turn
from serve.dashboard import FileTail, SeekerMarks, event_stream, plotly_js, reward_model_summary, run_progress

SCENARIO = Scenario(id="s1", emotion_type="anxiety", problem_type="job crisis", situation="I lost my job.")
WELL = "<think>Reflect the loss.</think><answer>Losing a job is hard. What happened?</answer>"
CUT = "<think>The seeker lost a job and I should"  # ran out of tokens inside <think>
SALVAGED = "<think>Be warm.</think>That sounds really hard."  # no <answer>, but text to send


def test_file_tail_returns_only_complete_new_lines_and_restarts_on_a_new_file(tmp_path):
    path = tmp_path / "m.jsonl"
    tail = FileTail(path)
    assert tail.read() == []
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3')  # the last line is still being written
    assert tail.read() == [{"a": 1}, {"a": 2}]
    with path.open("a") as f:
        f.write('}\nnot json\n[1]\n{"a": 4}\n')
    assert tail.read() == [{"a": 3}, {"a": 4}]
    assert tail.read() == []
    path.write_text('{"b": 1}\n')  # a new run in the same folder: shorter than what was read
    assert tail.read() == [{"b": 1}]


def test_reward_model_summary_reads_held_out_ranking_and_correlation(tmp_path):
    assert reward_model_summary(tmp_path) is None
    folder = tmp_path / "reward_model"
    folder.mkdir()
    report = {
        "rank_real_vs_other": {"value": 0.74, "lo": 0.7, "hi": 0.78, "n": 250},
        "label_correlation": {"value": 0.12, "lo": 0.01, "hi": 0.2, "n": 250},
    }
    (folder / "report.json").write_text(json.dumps(report))
    assert reward_model_summary(tmp_path) == {"rank_real_vs_other": 0.74, "label_correlation": 0.12}
    (folder / "report.json").write_text(json.dumps({"rank_real_vs_other": {"value": 0.8}}))
    assert reward_model_summary(tmp_path) == {"rank_real_vs_other": 0.8, "label_correlation": None}


def test_scalars_flatten_numbers_and_maps():
    event = {"reward_mean": 0.5, "staleness_hist": {"0": 2, "1": 5}, "flag": True, "note": "x"}
    assert sorted(scalars(event)) == [
        ("flag", "", 1.0),
        ("reward_mean", "", 0.5),
        ("staleness_hist", "0", 2.0),
        ("staleness_hist", "1", 5.0),
    ]


def test_hub_writes_metrics_dialogues_and_tensorboard_events(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    hub = MetricsHub(tmp_path / "metrics.jsonl", tensorboard=True)
    for version, reward in ((1, 0.1), (2, 0.4)):
        hub.record("learner", {"weights_version": version, "reward_mean": reward, "staleness_hist": {"0": 2}})
    hub.dialogue("worker-0", {"kind": "group", "policy_version": 1})
    hub.close()
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [e["reward_mean"] for e in events] == [0.1, 0.4]
    feed = [json.loads(line) for line in (tmp_path / "dialogues.jsonl").read_text().splitlines()]
    assert feed[0]["kind"] == "group" and feed[0]["source"] == "worker-0"
    board = EventAccumulator(str(tmp_path / "tensorboard"))
    board.Reload()
    rewards = board.Scalars("reward_mean/learner")
    assert [(s.step, round(s.value, 3)) for s in rewards] == [(1, 0.1), (2, 0.4)]
    assert [s.value for s in board.Scalars("staleness_hist/learner/0")] == [2.0, 2.0]


def test_tensorboard_sink_counts_steps_per_tag(tmp_path):
    sink = TensorBoardSink(tmp_path)
    sink.write("worker-0", {"group_tokens": 10}, 1.0)
    sink.write("worker-1", {"group_tokens": 20}, 2.0)
    sink.write("worker-0", {"group_tokens": 30}, 3.0)
    assert dict(sink.steps) == {"group_tokens/worker-0": 2, "group_tokens/worker-1": 1}
    sink.close()


def test_plotly_is_served_from_the_installed_package():
    assert plotly_js().stat().st_size > 1_000_000


def test_prometheus_sink_makes_one_described_gauge_per_metric():
    from actors.metric_sinks import PrometheusSink
    from actors.metrics_hub import METRICS

    sink = PrometheusSink(METRICS)
    sink.write("learner", {"reward_mean": 0.5, "staleness_hist": {"0": 2, "1": 1}}, 0.0)
    sink.write("learner", {"reward_mean": 0.7}, 1.0)
    assert sorted(sink.gauges) == ["reward_mean", "staleness_hist"]
    info = sink.gauges["reward_mean"].info
    assert info["name"] == "rlff_reward_mean"
    assert info["description"].startswith(METRICS["reward_mean"].meaning)


def candidate(raw: str, text: str, well_formed: bool, future: tuple[Turn, ...] = ()) -> Candidate:
    return Candidate(text=text, raw=raw, well_formed=well_formed, policy_version=2, future=future)


def test_malformed_reasons_and_when_the_fallback_was_sent():
    assert malformed_reason(CUT) == "no <answer>: the output ran out inside <think>"
    assert malformed_reason(SALVAGED) == "no <answer> tag"
    assert malformed_reason("<think>a</think><answer>hi") == "<answer> never closed"
    assert malformed_reason("<think>a</think><answer> </answer>") == "empty <answer>"
    assert malformed_reason(WELL + " and more") == "text outside the <think>/<answer> tags"
    assert malformed_reason("<think>") == "empty output"
    assert used_fallback(CUT) and not used_fallback(SALVAGED) and not used_fallback(WELL)


def test_group_feed_shows_malformed_candidates_with_raw_text_never_as_the_fallback_sentence():
    future = (
        Turn(role="counselor", text=FALLBACK_ANSWER),
        Turn(role="seeker", text="I am scared I will not find another job."),
    )
    group = CandidateGroup(
        id="g",
        scenario=SCENARIO,
        context=(Turn(role="seeker", text="I lost my job today."),),
        candidates=(
            candidate(WELL, "Losing a job is hard. What happened?", True),
            candidate(CUT, FALLBACK_ANSWER, False, future),
            candidate(SALVAGED, "That sounds really hard.", False),
        ),
        policy_version=2,
        created_at=0.0,
    )
    feed = group_feed(group)
    well, cut, salvaged = feed["candidates"]
    assert well["well_formed"] and well["malformed"] is None and well["raw"] is None
    assert well["text"] == "Losing a job is hard. What happened?" and not well["fallback"]
    assert cut["fallback"] and cut["text"] is None and cut["raw"] == CUT
    assert cut["malformed"] == "no <answer>: the output ran out inside <think>"
    assert salvaged["text"] == "That sounds really hard." and not salvaged["fallback"]
    assert salvaged["malformed"] == "no <answer> tag" and salvaged["raw"] == SALVAGED
    assert FALLBACK_ANSWER not in json.dumps(feed)
    agent, seeker = cut["future"]
    assert agent["fallback"] and agent["text"] is None
    assert seeker["simulated"] and not seeker["fallback"]
    assert feed["context"][0]["simulated"] is False  # context turns come from the data


def test_episode_feed_marks_each_counselor_turn_from_its_record():
    turns = (
        Turn(role="seeker", text="I cannot sleep."),
        Turn(role="counselor", text=FALLBACK_ANSWER, reward=-0.5),
        Turn(role="seeker", text="It is the exams."),
        Turn(role="counselor", text="Exams are stressful. What worries you most?", reward=0.5),
    )
    records = [
        TurnRecord(turn=1, reward=-0.5, verdict="same", well_formed=False, crisis=False, raw=CUT),
        TurnRecord(turn=2, reward=0.5, verdict="better", well_formed=True, crisis=False, raw=WELL),
    ]
    dialogue = Dialogue(id="e", scenario=SCENARIO, turns=turns, source="simulated")
    episode = Episode(
        scenario_id="s1", success=False, turns=2, records=records, dialogue=dialogue, seconds=1.0,
        completion_tokens=10,
    )  # fmt: skip
    feed = episode_feed(episode, version=3)
    first, second = feed["turns"][1], feed["turns"][3]
    assert first["fallback"] and first["text"] is None and first["raw"] == CUT and not first["well_formed"]
    assert second["well_formed"] and second["text"].startswith("Exams") and second["raw"] is None
    assert [t["simulated"] for t in feed["turns"]] == [True, False, True, False]
    assert feed["verdicts"] == ["same", "better"] and feed["policy_version"] == 3


class StubChecker:
    """Reads a turn as a seeker's unless it offers support (the real one is esc.seeker_check)."""

    def seeker_probability(self, text: str) -> float:
        return 0.1 if "here to listen" in text else 0.9

    def in_role(self, text: str) -> bool:
        return self.seeker_probability(text) >= 0.5

    @classmethod
    def load(cls, path):
        json.loads(Path(path).read_text())  # a half-written file raises ValueError
        return cls()


def feed_records() -> list[dict]:
    future = [
        {"role": "counselor", "text": "Go on.", "fallback": False},
        {"role": "seeker", "text": "I'm here to listen, take your time.", "simulated": True},
    ]
    return [
        {"kind": "group", "context": [{"role": "seeker", "text": "I'm here to listen", "simulated": False}],
         "candidates": [{"future": future}]},
        {"kind": "evaluation", "turns": [{"role": "seeker", "text": "I feel lost.", "simulated": True}]},
    ]  # fmt: skip


def test_seeker_marks_use_the_run_folder_checker_once_it_appears(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "esc.seeker_check", types.SimpleNamespace(RoleChecker=StubChecker))
    marks = SeekerMarks(tmp_path)
    records = feed_records()
    marks.mark(records)
    assert marks.summary() == {"checker": False, "in_role": 0, "turns": 0}
    assert "in_role" not in records[1]["turns"][0]
    (tmp_path / "seeker_checker.json").write_text("{")  # still being written
    marks.mark(feed_records())
    assert marks.summary()["checker"] is False
    (tmp_path / "seeker_checker.json").write_text("{}")
    os.utime(tmp_path / "seeker_checker.json", ns=(1, 2_000_000_000))
    records = feed_records()
    marks.mark(records)
    assert marks.summary() == {"checker": True, "in_role": 1, "turns": 2}
    agent, seeker = records[0]["candidates"][0]["future"]
    assert (seeker["in_role"], seeker["seeker_p"]) == (False, 0.1) and "in_role" not in agent
    assert records[1]["turns"][0]["in_role"] is True
    assert "in_role" not in records[0]["context"][0]  # from the data, not simulated


def test_run_progress_and_the_first_event_of_the_stream(tmp_path):
    assert run_progress(tmp_path) == {"planned_updates": None, "heldout": False, "started": None}
    config = {"learner": {"max_updates": 8}, "evaluation": {"heldout": "esconv:data#valid"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    os.utime(tmp_path / "config.json", (2000.0, 2000.0))
    lines = [{"time": 1500.0, "source": "heldout", "weights_version": 0, "heldout_reward": 0.1}]
    lines.append({"time": 1600.0, "source": "learner", "weights_version": 1, "reward_mean": 0.2})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    (tmp_path / "dialogues.jsonl").write_text("".join(json.dumps(r) + "\n" for r in feed_records()))
    assert run_progress(tmp_path) == {"planned_updates": 8, "heldout": True, "started": 1500.0}

    async def first() -> dict:
        stream = event_stream(tmp_path, lambda: {"weights_version": 1, "run": "r"}, feed_size=1)
        message = await anext(stream)
        await stream.aclose()
        return json.loads(message.removeprefix("data: "))

    payload = asyncio.run(first())
    assert [e["source"] for e in payload["metrics"]] == ["heldout", "learner"]
    assert [d["kind"] for d in payload["dialogues"]] == ["evaluation"]
    status = payload["status"]
    assert status["progress"] == {"planned_updates": 8, "heldout": True, "started": 1500.0}
    assert status["seeker_role"] == {"checker": False, "in_role": 0, "turns": 0}
    assert status["weights_version"] == 1 and status["run"] == "r" and status["now"] > 2000.0


def test_a_nan_metric_reaches_the_stream_as_null_that_strict_json_parses(tmp_path):
    lines = [{"time": 1.0, "source": "learner", "weights_version": 1, "grad_norm": float("nan")}]
    lines.append(
        {"time": 2.0, "source": "learner", "weights_version": 2, "grad_norm": 0.5, "kl": float("inf")}
    )
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))  # Python writes NaN

    async def first() -> str:
        stream = event_stream(tmp_path, lambda: {"weights_version": 2, "run": "r"}, feed_size=1)
        message = await anext(stream)
        await stream.aclose()
        return message.removeprefix("data: ")

    def refuse(word: str):  # what a browser's JSON.parse does with NaN and Infinity
        raise ValueError(f"not JSON: {word}")

    payload = json.loads(asyncio.run(first()), parse_constant=refuse)
    assert [(e["grad_norm"], e.get("kl", 0)) for e in payload["metrics"]] == [(None, 0), (0.5, None)]
