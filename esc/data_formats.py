"""Readers for the on-disk dataset formats: ESConv (split and original schema) and ExTES.

Owns: turning one file into `Dialogue`s, checking every record on the way, and `DataError`, the one
exception for malformed input. Every message names the file and the JSONL line (1-based) or the
JSON-list record (0-based index) and says what is wrong.

Does not know: data specs, where files live, or how splits are chosen; callers pass `split_for`, which
maps a dialogue id to its split (`esc.data` decides between a fixed split and a seeded hash split).
Plain Python: no Ray, no torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from esc.schemas import Dialogue, Scenario, Survey, Turn

SplitFor = Callable[[str], str]

_SPLIT_ROLES = {"usr": "seeker", "sys": "counselor"}
_ORIGINAL_ROLES = {"seeker": "seeker", "speaker": "seeker", "supporter": "counselor", "listener": "counselor"}


class DataError(ValueError):
    """A dataset file or spec is malformed or missing; the message says where and what, in one sentence."""


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start}).") from None


def iter_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield `(where, record)` per non-blank line of a JSONL file; `where` reads e.g. 'x.jsonl line 3'."""
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}).") from None
        # The Hugging Face copy of ESConv wraps each dialogue as {"text": "<the dialogue as JSON>"}.
        if isinstance(record, dict) and set(record) == {"text"} and isinstance(record["text"], str):
            try:
                record = json.loads(record["text"])
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: field 'text' is not a JSON dialogue ({exc.msg}).") from None
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}.")
        yield where, record


def iter_json_list(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield `(where, record)` per element of a file holding a JSON list; `where` reads 'x.json record 0'."""
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})."
        ) from None
    if not isinstance(data, list):
        raise DataError(f"{path} must hold a JSON list of dialogues, got a {type(data).__name__}.")
    for index, record in enumerate(data):
        where = f"{path} record {index}"
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}.")
        yield where, record


def _text(record: dict[str, Any], field: str, where: str) -> str:
    if field not in record:
        raise DataError(f"{where}: missing field '{field}'.")
    value = record[field]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field '{field}' must be a non-empty string.")
    return value.strip()


def _turn_list(record: dict[str, Any], field: str, where: str) -> list[Any]:
    if field not in record:
        raise DataError(f"{where}: missing field '{field}'.")
    if not isinstance(record[field], list):
        raise DataError(f"{where}: field '{field}' must be a list of turns.")
    return record[field]


def _rating(value: Any) -> int | None:
    """A survey rating ("1".."5" or 1..5) as an int, or None when absent or out of range."""
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if 1 <= number <= 5 else None


def parse_intensities(record: dict[str, Any]) -> tuple[int | None, Survey | None]:
    """The seeker's initial intensity and the full `Survey` (None unless both ends are valid 1..5)."""
    survey = record.get("survey_score")
    seeker = survey.get("seeker") if isinstance(survey, dict) else None
    if not isinstance(seeker, dict):
        return None, None
    initial = _rating(seeker.get("initial_emotion_intensity"))
    final = _rating(seeker.get("final_emotion_intensity"))
    both = Survey(initial_intensity=initial, final_intensity=final) if initial and final else None
    return initial, both


def _dialogue(where: str, **fields: Any) -> Dialogue:
    try:
        return Dialogue(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise DataError(f"{where}: {location}: {first['msg']}.") from None


def esconv_dialogue(
    record: dict[str, Any], where: str, dialogue_id: str, split: str, *, original: bool
) -> Dialogue:
    """One ESConv record in the split schema (`original=False`) or the original schema (`original=True`)."""
    scenario_fields = {
        "emotion_type": _text(record, "emotion_type", where),
        "problem_type": _text(record, "problem_type", where),
        "situation": _text(record, "situation", where),
    }
    turns = []
    for index, raw in enumerate(_turn_list(record, "dialog", where)):
        at = f"{where}: dialog turn {index}"
        turns.append(_original_turn(raw, at) if original else _split_turn(raw, at))
    initial, survey = parse_intensities(record)
    scenario = Scenario(id=dialogue_id, initial_intensity=initial, **scenario_fields)
    return _dialogue(
        where,
        id=dialogue_id,
        scenario=scenario,
        turns=tuple(turns),
        split=split,
        survey=survey,
        source="esconv",
    )


def _split_turn(raw: Any, at: str) -> Turn:
    if not isinstance(raw, dict):
        raise DataError(f"{at} must be a JSON object.")
    speaker, text, strategy = raw.get("speaker"), raw.get("text"), raw.get("strategy")
    if speaker not in _SPLIT_ROLES:
        raise DataError(f"{at} has speaker {speaker!r}; expected 'usr' or 'sys'.")
    if not isinstance(text, str):
        raise DataError(f"{at} needs a string field 'text'.")
    if strategy is not None and not isinstance(strategy, str):
        raise DataError(f"{at} has a non-string 'strategy'.")
    return Turn(role=_SPLIT_ROLES[speaker], text=text.strip(), strategy=strategy)


def _original_turn(raw: Any, at: str) -> Turn:
    if not isinstance(raw, dict):
        raise DataError(f"{at} must be a JSON object.")
    speaker, content, annotation = raw.get("speaker"), raw.get("content"), raw.get("annotation", {})
    if speaker not in _ORIGINAL_ROLES:
        raise DataError(
            f"{at} has speaker {speaker!r}; expected 'seeker', 'supporter', 'speaker' or 'listener'."
        )
    if not isinstance(content, str):
        raise DataError(f"{at} needs a string field 'content'.")
    if not isinstance(annotation, dict):
        raise DataError(f"{at} has an 'annotation' that is not a JSON object.")
    strategy = annotation.get("strategy")
    if strategy is not None and not isinstance(strategy, str):
        raise DataError(f"{at} has a non-string annotation 'strategy'.")
    return Turn(role=_ORIGINAL_ROLES[speaker], text=content.strip(), strategy=strategy)


def read_esconv_jsonl(path: Path, id_prefix: str, split_for: SplitFor) -> list[Dialogue]:
    """ESConv split schema, one dialogue per line; ids are f'{id_prefix}-{i}' with i the 0-based record."""
    dialogues = []
    for index, (where, record) in enumerate(iter_jsonl(path)):
        dialogue_id = f"{id_prefix}-{index}"
        dialogues.append(esconv_dialogue(record, where, dialogue_id, split_for(dialogue_id), original=False))
    return dialogues


def read_esconv_json(path: Path, id_prefix: str, split_for: SplitFor) -> list[Dialogue]:
    """ESConv original schema (`ESConv.json`, `FailedESConv.json`): one JSON list of dialogues."""
    dialogues = []
    for index, (where, record) in enumerate(iter_json_list(path)):
        dialogue_id = f"{id_prefix}-{index}"
        dialogues.append(esconv_dialogue(record, where, dialogue_id, split_for(dialogue_id), original=True))
    return dialogues


def read_extes(path: Path, split_for: SplitFor) -> list[Dialogue]:
    """ExTES: a JSON list of {scene, description, content: [{User} | {AI, AI Strategy}]}; ids 'extes-<i>'.

    ExTES labels no emotion, so `emotion_type` is 'unspecified'; `scene` becomes the problem type.
    """
    dialogues = []
    for index, (where, record) in enumerate(iter_json_list(path)):
        dialogue_id = f"extes-{index}"
        scenario = Scenario(
            id=dialogue_id,
            emotion_type="unspecified",
            problem_type=_text(record, "scene", where),
            situation=_text(record, "description", where),
        )
        turns = [
            _extes_turn(raw, f"{where}: content turn {i}")
            for i, raw in enumerate(_turn_list(record, "content", where))
        ]
        dialogues.append(
            _dialogue(
                where,
                id=dialogue_id,
                scenario=scenario,
                turns=tuple(turns),
                split=split_for(dialogue_id),
                source="extes",
            )
        )
    return dialogues


def _extes_turn(raw: Any, at: str) -> Turn:
    if not isinstance(raw, dict):
        raise DataError(f"{at} must be a JSON object.")
    if isinstance(raw.get("User"), str):
        return Turn(role="seeker", text=raw["User"].strip())
    if isinstance(raw.get("AI"), str):
        strategy = raw.get("AI Strategy")
        if strategy is not None and not isinstance(strategy, str):
            raise DataError(f"{at} has a non-string 'AI Strategy'.")
        return Turn(role="counselor", text=raw["AI"].strip(), strategy=strategy)
    raise DataError(f"{at} needs a string field 'User' or 'AI', got keys {sorted(raw)}.")
