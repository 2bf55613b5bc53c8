"""What the dashboard reads from a run folder, and where metric events go besides metrics.jsonl."""

from __future__ import annotations

import json

from actors.metric_sinks import TensorBoardSink, scalars
from actors.metrics_hub import MetricsHub
from serve.dashboard import FileTail, plotly_js, reward_model_summary


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


def test_reward_model_summary_reads_held_out_accuracy(tmp_path):
    assert reward_model_summary(tmp_path) is None
    folder = tmp_path / "reward_model"
    folder.mkdir()
    valid = {"accuracy": 0.44, "macro_f1": 0.43, "majority_baseline": 0.36, "n": 174}
    (folder / "report.json").write_text(
        json.dumps({"formulation": "classification", "fit": {"valid": valid}})
    )
    assert reward_model_summary(tmp_path) == {"formulation": "classification", **valid}


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
