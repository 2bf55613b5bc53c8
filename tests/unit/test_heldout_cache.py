"""The cached base held-out point: reused only while everything it depends on is unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from esc.config import RunConfig, build_config
from esc.learning import context_row
from jobs.heldout_cache import BaseCache, inputs

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "esconv_split"
ROWS = [{"id": "c1", "versions": [0], "reward": 0.5}, {"id": "c2", "versions": [0], "reward": -0.25}]
IDS = ["c1", "c2"]


def setup(tmp_path: Path, *overrides: str) -> tuple[RunConfig, Path]:
    """A run whose counselor is a model folder and whose reward model and held-out data are files."""
    policy, rm = tmp_path / "sft", tmp_path / "rm"
    for folder in (policy, rm, tmp_path / "data"):
        folder.mkdir(exist_ok=True)
    for path, text in [
        (policy / "model.safetensors", "weights"),
        (policy / "config.json", "{}"),
        (rm / "head.safetensors", "head"),
        (rm / "reward_model.json", "{}"),
        (rm / "report.json", '{"seconds": 1}'),
        (tmp_path / "data" / "valid.jsonl", "{}\n"),
    ]:
        if not path.exists():
            path.write_text(text)
    sets = [f"counselor.model={policy}", f"evaluation.heldout=esconv:{tmp_path / 'data'}#valid", *overrides]
    return build_config({"runs_dir": str(tmp_path / "runs"), "name": "x"}, sets), rm


def test_saved_rows_come_back_while_the_inputs_are_the_same(tmp_path):
    config, rm = setup(tmp_path)
    assert BaseCache(config, rm).load(IDS) is None  # nothing cached yet
    BaseCache(config, rm).save(ROWS)
    assert BaseCache(config, rm).load(IDS) == ROWS
    assert BaseCache(config, rm).load(["c1"]) is None  # rows of other contexts do not stand in
    assert BaseCache(config, rm).load(["c2", "c1"]) is None
    assert (config.run_dir() / "heldout_base" / "rows.jsonl").read_text().count("\n") == 2


def test_any_input_of_the_point_invalidates_it(tmp_path):
    config, rm = setup(tmp_path)
    before = inputs(config, rm)
    for change in [
        "counselor.temperature=0.9",
        "counselor.max_new_tokens=40",
        "evaluation.heldout_contexts=12",
        "evaluation.heldout_samples=2",
        "rollout.group_size=8",  # G of the point while evaluation.heldout_samples is unset
        "learner.format_weight=0.25",
        "reward_model.weight=0.5",
        "seed=3",
    ]:
        assert inputs(setup(tmp_path, change)[0], rm) != before, change
    (tmp_path / "sft" / "model.safetensors").write_text("trained again")
    assert inputs(config, rm) != before
    after_policy = inputs(config, rm)
    (rm / "head.safetensors").write_text("retrained")
    assert inputs(config, rm) != after_policy
    after_rm = inputs(config, rm)
    (tmp_path / "data" / "valid.jsonl").write_text('{"other": 1}\n')
    assert inputs(config, rm) != after_rm


def test_what_does_not_shape_the_point_keeps_it(tmp_path):
    config, rm = setup(tmp_path)
    before = inputs(config, rm)
    for change in ["learner.lr=1e-3", "learner.max_updates=3", "evaluation.every=4", "evaluation.episodes=5"]:
        assert inputs(setup(tmp_path, change)[0], rm) == before, change
    (rm / "report.json").write_text('{"seconds": 2}')  # timings of the reward model's training
    assert inputs(config, rm) == before
    fixed = inputs(setup(tmp_path, "evaluation.heldout_samples=4")[0], rm)  # G set: group_size is not G
    assert inputs(setup(tmp_path, "evaluation.heldout_samples=4", "rollout.group_size=8")[0], rm) == fixed


def test_a_stale_cache_is_not_loaded(tmp_path):
    config, rm = setup(tmp_path)
    BaseCache(config, rm).save(ROWS)
    assert BaseCache(setup(tmp_path, "counselor.temperature=0.9")[0], rm).load(IDS) is None


class Remote:
    """An actor method's stand-in: `.remote(...)` returns the value (jobs.heldout.get is patched to
    return what it is given) and records the call."""

    def __init__(self, value=None):
        self.value, self.calls = value, []

    def remote(self, *args, **kwargs):
        self.calls.append(args)
        return self.value


class System:
    def __init__(self):
        counselor = type("Counselor", (), {"weights_version": Remote(0)})()
        self.counselor, self.hub = [counselor], type("Hub", (), {"record": Remote()})()


def base_point(ids: list[str]) -> list[dict]:
    answer = {"version": 0, "well_formed": True, "rm_score": 0.1, "format_reward": 1.0, "answer_tokens": 5}
    return [
        context_row(
            context,
            [{**answer, "answer": f"reply {i} {j}", "reward": 0.1 * j, "rouge_l": 1.0} for j in (0, 1)],
        )
        for i, context in enumerate(ids)
    ]


def recorded_rows(heldout, path: Path) -> dict[int, list[dict]]:
    """heldout.jsonl's rows by point, without the fields `append_point` adds."""
    added = {"point", "time", "single_version", "first"}
    points = heldout.read_points(path)
    return {v: [{k: x for k, x in r.items() if k not in added} for r in rows] for v, rows in points.items()}


def test_the_first_point_of_a_run_reuses_the_cached_base_and_a_new_one_is_cached(tmp_path, monkeypatch):
    import jobs.heldout as heldout

    monkeypatch.setattr(heldout, "Scorer", lambda config, rm: None)  # no model: nothing is scored here
    monkeypatch.setattr(heldout, "get", lambda value: value)
    config, rm = setup(tmp_path, f"evaluation.heldout=esconv:{FIXTURE}#valid", "evaluation.heldout_samples=2")
    config.run_dir().mkdir(parents=True)  # `rlff run` writes its resolved config there first
    generated = []

    def point(self, expect_version=None, alone=False):
        generated.append((expect_version, alone))
        self._record(0, base_point(ids), True, "generated")
        return 0, base_point(ids)

    monkeypatch.setattr(heldout.Heldout, "point", point)
    first = heldout.Heldout(config, rm)
    ids = [c.id for c in first.contexts]
    assert len(ids) == 2
    system = System()
    first.first(system)  # nothing cached: the point is generated, then cached
    assert generated == [(0, True)] and BaseCache(config, rm).load(ids) == base_point(ids)
    assert recorded_rows(heldout, first.path) == {0: base_point(ids)}

    again = heldout.Heldout(config, rm)  # a new run (not resumed) with the same inputs
    assert heldout.read_points(again.path) == {}
    system = System()
    again.first(system)
    assert generated == [(0, True)]  # not generated again
    assert recorded_rows(heldout, again.path) == {0: base_point(ids)}
    recorded = system.hub.record.calls
    assert len(recorded) == 1 and recorded[0][0] == "heldout" and recorded[0][1]["weights_version"] == 0

    changed, rm = setup(tmp_path, f"evaluation.heldout=esconv:{FIXTURE}#valid", "counselor.temperature=0.9")
    heldout.Heldout(changed, rm).first(System())  # another input: generated again
    assert len(generated) == 2


def test_a_last_line_torn_by_a_kill_is_left_out_and_a_bad_line_before_it_raises(tmp_path):
    import jobs.heldout as heldout

    path = tmp_path / "heldout.jsonl"
    heldout.append_point(path, 0, base_point(["a", "b"]), single=True)
    heldout.append_point(path, 4, base_point(["a", "b"]), single=True)
    whole = path.read_text()
    cut = len(whole.splitlines()[-1]) // 2 + 1
    path.write_text(whole[:-cut])  # half of the last line is on disk, without its newline
    points = heldout.read_points(path)
    assert [r["id"] for r in points[0]] == ["a", "b"] and [r["id"] for r in points[4]] == ["a"]
    heldout.append_point(path, 8, base_point(["a", "b"]), single=True)  # a resumed run's next point
    points = heldout.read_points(path)
    assert {v: [r["id"] for r in rows] for v, rows in points.items()} == {
        0: ["a", "b"],
        4: ["a"],
        8: ["a", "b"],
    }
    path.write_text("{torn\n" + whole)
    with pytest.raises(ValueError):
        heldout.read_points(path)
