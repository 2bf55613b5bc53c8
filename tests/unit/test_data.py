"""Unit tests for esc.data and esc.data_formats: specs, ESConv/ExTES readers, splits, built-ins, stats."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from esc.data import (
    DataError,
    DataSpec,
    builtin_scenarios,
    dataset_stats,
    hash_split,
    load_dialogues,
    parse_spec,
)
from esc.schemas import Survey

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SPLIT_DIR = FIXTURES / "esconv_split"
ORIGINAL = FIXTURES / "esconv_original.json"
EXTES = FIXTURES / "extes.json"
REAL_ESCONV = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "esconv"

GOOD_RECORD = {
    "emotion_type": "fear",
    "problem_type": "job crisis",
    "situation": "I might be fired.",
    "dialog": [{"text": "hi", "speaker": "usr"}],
}


def _write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- specs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("builtin", DataSpec("builtin", None, None)),
        ("builtin#test", DataSpec("builtin", None, "test")),
        ("esconv:data/esconv", DataSpec("esconv", Path("data/esconv"), None)),
        ("esconv:data/esconv#valid", DataSpec("esconv", Path("data/esconv"), "valid")),
        ("extes:/x/ExTES.json", DataSpec("extes", Path("/x/ExTES.json"), None)),
        ("extes:/x/ExTES.json#train", DataSpec("extes", Path("/x/ExTES.json"), "train")),
    ],
)
def test_parse_spec_accepts_documented_forms(spec: str, expected: DataSpec) -> None:
    assert parse_spec(spec) == expected


@pytest.mark.parametrize(
    "spec",
    ["esconv", "esconv:", "extes:#train", "ecsonv:x", "", "builtin#dev", "builtin:foo", "esconv:p#training"],
)
def test_parse_spec_rejects_bad_forms_with_the_accepted_forms(spec: str) -> None:
    with pytest.raises(DataError, match="accepted forms are 'builtin', 'esconv:PATH' or 'extes:PATH'"):
        parse_spec(spec)


def test_load_dialogues_accepts_a_dataspec_and_rejects_a_bad_split() -> None:
    assert len(load_dialogues(DataSpec("esconv", SPLIT_DIR, "test"))) == 2
    with pytest.raises(DataError, match="'dev' is unknown"):
        load_dialogues(DataSpec("esconv", SPLIT_DIR, "dev"))


# --- ESConv split schema -------------------------------------------------------------------------


def test_esconv_folder_uses_its_split_files() -> None:
    dialogues = load_dialogues(f"esconv:{SPLIT_DIR}")
    assert [d.id for d in dialogues] == [
        "esconv-train-0",
        "esconv-train-1",
        "esconv-train-2",
        "esconv-valid-0",
        "esconv-valid-1",
        "esconv-test-0",
        "esconv-test-1",
    ]
    assert [d.split for d in dialogues] == ["train"] * 3 + ["valid"] * 2 + ["test"] * 2
    assert all(d.source == "esconv" and d.scenario.id == d.id for d in dialogues)
    assert [d.id for d in load_dialogues(f"esconv:{SPLIT_DIR}#valid")] == ["esconv-valid-0", "esconv-valid-1"]


def test_esconv_split_schema_maps_roles_and_keeps_strategies() -> None:
    first = load_dialogues(f"esconv:{SPLIT_DIR}#train")[0]
    assert [t.role for t in first.turns] == ["seeker", "counselor", "seeker", "counselor"]
    assert [t.strategy for t in first.turns] == [None, "Question", None, "Reflection of feelings"]
    assert first.turns[0].text == "Hi, I'm really on edge today."
    assert first.scenario.emotion_type == "anxiety"
    assert first.scenario.problem_type == "job crisis"
    assert (
        first.scenario.situation == "My contract ends next month and nobody has said if it will be renewed."
    )
    # Same role twice in a row is kept as is.
    assert [t.role for t in load_dialogues(f"esconv:{SPLIT_DIR}#train")[1].turns] == [
        "seeker",
        "seeker",
        "counselor",
    ]


def test_esconv_survey_is_parsed_only_when_both_intensities_are_valid() -> None:
    train = load_dialogues(f"esconv:{SPLIT_DIR}#train")
    assert train[0].survey == Survey(initial_intensity=4, final_intensity=2)
    assert train[0].scenario.initial_intensity == 4
    assert train[2].survey is None  # no final intensity
    assert train[2].scenario.initial_intensity == 3
    valid = load_dialogues(f"esconv:{SPLIT_DIR}#valid")
    assert valid[1].survey is None  # initial intensity "x"
    assert valid[1].scenario.initial_intensity is None


def test_single_jsonl_named_like_a_split_takes_that_split() -> None:
    dialogues = load_dialogues(f"esconv:{SPLIT_DIR / 'valid.jsonl'}")
    assert [(d.id, d.split) for d in dialogues] == [("esconv-valid-0", "valid"), ("esconv-valid-1", "valid")]
    assert load_dialogues(f"esconv:{SPLIT_DIR / 'valid.jsonl'}#train") == []


def test_other_single_jsonl_gets_a_seeded_hash_split(tmp_path: Path) -> None:
    path = tmp_path / "my_dialogues.jsonl"
    shutil.copy(SPLIT_DIR / "train.jsonl", path)
    dialogues = load_dialogues(f"esconv:{path}", seed=3)
    assert [d.id for d in dialogues] == [
        "esconv-my-dialogues-0",
        "esconv-my-dialogues-1",
        "esconv-my-dialogues-2",
    ]
    assert [d.split for d in dialogues] == [hash_split(d.id, 3) for d in dialogues]
    assert [d.split for d in load_dialogues(f"esconv:{path}", seed=3)] == [d.split for d in dialogues]


def test_hugging_face_wrapped_lines_are_unwrapped(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "test.jsonl", [json.dumps({"text": json.dumps(GOOD_RECORD)})])
    (dialogue,) = load_dialogues(f"esconv:{path}")
    assert dialogue.id == "esconv-test-0"
    assert dialogue.scenario.emotion_type == "fear"
    assert dialogue.turns[0].role == "seeker"


def test_blank_lines_are_skipped_but_counted_in_line_numbers(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "train.jsonl", [json.dumps(GOOD_RECORD), "", "{oops"])
    with pytest.raises(DataError, match=r"train\.jsonl line 3: not valid JSON"):
        load_dialogues(f"esconv:{path}")


def test_malformed_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "broken.jsonl", [json.dumps(GOOD_RECORD), '{"emotion_type": "fear",'])
    with pytest.raises(DataError) as info:
        load_dialogues(f"esconv:{path}")
    assert "broken.jsonl" in str(info.value)
    assert "line 2" in str(info.value)


def test_missing_field_is_reported(tmp_path: Path) -> None:
    record = {k: v for k, v in GOOD_RECORD.items() if k != "dialog"}
    path = _write_jsonl(tmp_path / "train.jsonl", [json.dumps(record)])
    with pytest.raises(DataError, match=r"train\.jsonl line 1: missing field 'dialog'\.$"):
        load_dialogues(f"esconv:{path}")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"dialog": [{"text": "hi", "speaker": "bot"}]},
            "dialog turn 0 has speaker 'bot'; expected 'usr' or 'sys'",
        ),
        ({"dialog": [{"speaker": "usr"}]}, "dialog turn 0 needs a string field 'text'"),
        ({"dialog": "hello"}, "field 'dialog' must be a list of turns"),
        ({"situation": "   "}, "field 'situation' must be a non-empty string"),
        ({"emotion_type": 3}, "field 'emotion_type' must be a non-empty string"),
    ],
)
def test_bad_split_schema_records_are_reported(tmp_path: Path, change: dict, message: str) -> None:
    path = _write_jsonl(
        tmp_path / "valid.jsonl", [json.dumps(GOOD_RECORD), json.dumps({**GOOD_RECORD, **change})]
    )
    with pytest.raises(DataError, match="valid.jsonl line 2: " + message):
        load_dialogues(f"esconv:{path}")


def test_non_object_line_is_reported(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "train.jsonl", ["[1, 2]"])
    with pytest.raises(DataError, match="train.jsonl line 1: expected a JSON object, got list"):
        load_dialogues(f"esconv:{path}")


# --- ESConv original schema ----------------------------------------------------------------------


def test_esconv_original_schema_maps_both_speaker_variants() -> None:
    dialogues = load_dialogues(f"esconv:{ORIGINAL}")
    assert [d.id for d in dialogues] == ["esconv-original-0", "esconv-original-1", "esconv-original-2"]
    assert [d.split for d in dialogues] == [hash_split(d.id, 0) for d in dialogues]
    first, second, third = dialogues
    assert [t.role for t in first.turns] == ["seeker", "counselor", "seeker", "counselor"]
    assert [t.strategy for t in first.turns] == [None, "Question", None, "Reflection of feelings"]
    assert [t.text for t in first.turns][:3] == [
        "Hello there",
        "Hi! How are you doing today?",
        "Lonely, honestly.",
    ]
    assert [t.role for t in second.turns] == ["seeker", "counselor", "counselor"]
    assert [t.strategy for t in second.turns] == [None, "Others", "Questions"]
    assert first.survey == Survey(initial_intensity=4, final_intensity=3)
    assert third.survey is None  # final intensity ""
    assert third.scenario.initial_intensity == 5
    assert third.turns[1].strategy is None and third.turns[1].role == "counselor"


def test_folder_with_esconv_json_uses_the_original_schema(tmp_path: Path) -> None:
    shutil.copy(ORIGINAL, tmp_path / "ESConv.json")
    dialogues = load_dialogues(f"esconv:{tmp_path}")
    assert [d.id for d in dialogues] == ["esconv-0", "esconv-1", "esconv-2"]
    assert dialogues[1].scenario.emotion_type == "guilt"


def test_original_schema_errors_name_the_record(tmp_path: Path) -> None:
    records = json.loads(ORIGINAL.read_text())
    records[1]["dialog"][2]["speaker"] = "helper"
    path = tmp_path / "Mine.json"
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match=r"Mine\.json record 1: dialog turn 2 has speaker 'helper'; expected"):
        load_dialogues(f"esconv:{path}")
    path.write_text(json.dumps({"dialog": []}))
    with pytest.raises(DataError, match=r"Mine\.json must hold a JSON list of dialogues, got a dict"):
        load_dialogues(f"esconv:{path}")
    path.write_text("[{")
    with pytest.raises(DataError, match=r"Mine\.json is not valid JSON \(.* at line 1 column 3\)"):
        load_dialogues(f"esconv:{path}")


# --- ExTES -------------------------------------------------------------------------------------


def test_extes_maps_scene_description_and_turns() -> None:
    dialogues = load_dialogues(f"extes:{EXTES}", seed=1)
    assert [d.id for d in dialogues] == ["extes-0", "extes-1", "extes-2"]
    assert [d.split for d in dialogues] == [hash_split(d.id, 1) for d in dialogues]
    first = dialogues[0]
    assert first.source == "extes"
    assert first.scenario.problem_type == "Career Setback"
    assert first.scenario.emotion_type == "unspecified"
    assert first.scenario.situation == "I was passed over for a promotion I worked hard for."
    assert [t.role for t in first.turns] == ["seeker", "counselor", "seeker", "counselor"]
    assert [t.strategy for t in first.turns] == [None, "Emotional Validation", None, "Suggest Options"]
    assert [len(d.turns) for d in dialogues] == [4, 2, 3]


def test_extes_bad_turn_is_reported(tmp_path: Path) -> None:
    records = json.loads(EXTES.read_text())
    records[2]["content"][1] = {"Bot": "hello"}
    path = tmp_path / "ExTES.json"
    path.write_text(json.dumps(records))
    with pytest.raises(
        DataError, match=r"ExTES\.json record 2: content turn 1 needs a string field 'User' or 'AI'"
    ):
        load_dialogues(f"extes:{path}")
    del records[2]["scene"]
    path.write_text(json.dumps(records))
    with pytest.raises(DataError, match=r"ExTES\.json record 2: missing field 'scene'"):
        load_dialogues(f"extes:{path}")


# --- missing paths -------------------------------------------------------------------------------


def test_missing_esconv_path_says_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dialogues(f"esconv:{tmp_path / 'nope'}")
    message = str(info.value)
    assert str(tmp_path / "nope") in message
    assert "does not exist" in message
    assert "thu-coai" in message and "CC BY-NC 4.0" in message


def test_missing_extes_path_and_unusable_esconv_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="ExTES file .* does not exist"):
        load_dialogues(f"extes:{tmp_path / 'ExTES.json'}")
    with pytest.raises(DataError, match="holds neither train/valid/test.jsonl nor ESConv.json"):
        load_dialogues(f"esconv:{tmp_path}")
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(DataError, match=r"must end in \.jsonl .* or \.json"):
        load_dialogues(f"esconv:{tmp_path / 'data.txt'}")
    shutil.copy(SPLIT_DIR / "train.jsonl", tmp_path / "train.jsonl")
    with pytest.raises(DataError, match="has no test.jsonl"):
        load_dialogues(f"esconv:{tmp_path}#test")


# --- hash split ----------------------------------------------------------------------------------


def test_hash_split_is_pinned_and_process_independent() -> None:
    keys = [f"k{i}" for i in range(6)]
    here = [hash_split(k, 0) for k in keys]
    code = f"from esc.data import hash_split; print(','.join(hash_split(k, 0) for k in {keys!r}))"
    for hash_seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": hash_seed, "PATH": ""},
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert out.stdout.strip().split(",") == here


def test_hash_split_is_roughly_proportional_and_seed_dependent() -> None:
    keys = [f"dialogue-{i}" for i in range(1000)]
    splits = [hash_split(k, 0) for k in keys]
    assert splits == [hash_split(k, 0) for k in keys]
    assert 750 <= splits.count("train") <= 850
    assert 60 <= splits.count("valid") <= 140
    assert 60 <= splits.count("test") <= 140
    other = [hash_split(k, 1) for k in keys]
    assert sum(a != b for a, b in zip(splits, other)) > 200
    halves = [hash_split(k, 0, (0.5, 0.5, 0.0)) for k in keys]
    assert set(halves) == {"train", "valid"}
    with pytest.raises(ValueError, match="sum"):
        hash_split("x", 0, (0.5, 0.5, 0.5))


# --- built-ins and stats -------------------------------------------------------------------------


def test_builtin_scenarios_are_varied_and_well_formed() -> None:
    scenarios = builtin_scenarios()
    assert 25 <= len(scenarios) <= 35
    assert [s.id for s in scenarios] == [f"builtin-{i:02d}" for i in range(1, len(scenarios) + 1)]
    assert len({s.emotion_type for s in scenarios}) >= 8
    assert len({s.problem_type for s in scenarios}) >= 8
    assert all(s.initial_intensity is not None and 2 <= s.initial_intensity <= 5 for s in scenarios)
    # First person, one or two sentences.
    assert all(re.search(r"\b(I|my|My|me)\b", s.situation) for s in scenarios)
    assert all(1 <= len(re.findall(r"[.!?](\s|$)", s.situation)) <= 2 for s in scenarios)


def test_load_builtin_gives_turnless_dialogues_with_hash_splits() -> None:
    dialogues = load_dialogues("builtin", seed=5)
    assert [d.id for d in dialogues] == [s.id for s in builtin_scenarios()]
    assert all(d.turns == () and d.source == "builtin" and d.scenario.id == d.id for d in dialogues)
    assert [d.split for d in dialogues] == [hash_split(d.id, 5) for d in dialogues]
    tests = load_dialogues("builtin#test", seed=5)
    assert [d.id for d in tests] == [d.id for d in dialogues if d.split == "test"]


def test_dataset_stats_counts_the_fixture_folder() -> None:
    stats = dataset_stats(load_dialogues(f"esconv:{SPLIT_DIR}"))
    assert stats["total"] == 7
    assert stats["splits"] == {"train": 3, "valid": 2, "test": 2}
    assert len(stats["emotions"]) == 7 and set(stats["emotions"].values()) == {1}
    assert list(stats["problems"].items())[:2] == [("job crisis", 2), ("academic pressure", 2)]
    assert sum(stats["problems"].values()) == 7
    assert stats["turns_mean"] == pytest.approx(19 / 7)
    assert dataset_stats([]) == {"total": 0, "splits": {}, "emotions": {}, "problems": {}, "turns_mean": 0.0}


def test_data_modules_import_neither_ray_nor_torch() -> None:
    code = "import sys, esc.data; assert not {'ray', 'torch'} & set(sys.modules), sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


# --- the real ESConv copy on this team's machines ------------------------------------------------

needs_real_esconv = pytest.mark.skipif(not REAL_ESCONV.is_dir(), reason=f"ESConv not found at {REAL_ESCONV}")


@needs_real_esconv
def test_real_esconv_folder_has_the_published_split_sizes() -> None:
    stats = dataset_stats(load_dialogues(f"esconv:{REAL_ESCONV}"))
    assert stats["splits"] == {"train": 910, "valid": 195, "test": 195}
    assert len(load_dialogues(f"esconv:{REAL_ESCONV}#test")) == 195


@needs_real_esconv
def test_real_failed_esconv_has_196_dialogues_in_the_original_schema() -> None:
    dialogues = load_dialogues(f"esconv:{REAL_ESCONV / 'FailedESConv.json'}")
    assert len(dialogues) == 196
    assert dialogues[0].id == "esconv-failed-0"
    assert {t.role for d in dialogues for t in d.turns} == {"seeker", "counselor"}
