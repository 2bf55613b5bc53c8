"""Dataset loading: data specs, splits, the built-in scenarios and dataset statistics.

Owns: the spec strings users type (`builtin`, `esconv:PATH#valid`, ...), where each source's files are
looked up, how splits are assigned (the source's own split files, else a seeded sha256 hash of the
dialogue id), the built-in scenarios in `esc/data/builtin_scenarios.json`, and `dataset_stats`.
Parsing of the file formats lives in `esc.data_formats`. ESConv and ExTES are never shipped with the
project: users pass a path to their own copy. Plain Python: no Ray, no torch.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

from esc.data_formats import DataError, read_esconv_json, read_esconv_jsonl, read_extes
from esc.schemas import Dialogue, Scenario

__all__ = [
    "SPLITS",
    "DataError",
    "DataSpec",
    "builtin_scenarios",
    "dataset_stats",
    "hash_split",
    "load_dialogues",
    "parse_spec",
]

SPLITS = ("train", "valid", "test")
KINDS = ("builtin", "esconv", "extes")
_FORMS = (
    "accepted forms are 'builtin', 'esconv:PATH' or 'extes:PATH', "
    "each optionally followed by '#train', '#valid' or '#test'"
)
_ESCONV_HELP = (
    "ESConv is not shipped with this project: obtain it yourself from the thu-coai ESConv repository "
    "(github.com/thu-coai/Emotional-Support-Conversation) or the thu-coai/esconv dataset (CC BY-NC 4.0) "
    "and pass its folder or file as esconv:PATH"
)


@dataclass(frozen=True)
class DataSpec:
    """Which dialogues to load.

    kind: 'builtin', 'esconv' or 'extes'. path: the file or folder (None exactly for 'builtin').
    split: 'train', 'valid' or 'test' to keep only that split, or None for all.
    """

    kind: str
    path: Path | None = None
    split: str | None = None


def parse_spec(spec: str) -> DataSpec:
    """Parse 'builtin', 'builtin#test', 'esconv:PATH', 'esconv:PATH#valid', 'extes:PATH#train', ..."""
    text = spec.strip()
    split = None
    if "#" in text:
        text, _, split = text.rpartition("#")
        if split not in SPLITS:
            raise DataError(f"Data spec {spec!r} names unknown split {split!r}; {_FORMS}.")
    kind, colon, path = text.partition(":")
    if kind not in KINDS:
        raise DataError(f"Data spec {spec!r} has unknown kind {kind!r}; {_FORMS}.")
    if kind == "builtin" and colon:
        raise DataError(f"Data spec {spec!r}: 'builtin' takes no path; {_FORMS}.")
    if kind != "builtin" and not path.strip():
        raise DataError(f"Data spec {spec!r} is missing the path after '{kind}:'; {_FORMS}.")
    return DataSpec(kind=kind, path=Path(path.strip()).expanduser() if path.strip() else None, split=split)


def hash_split(key: str, seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """Deterministic split for `key`: sha256 of f'{seed}:{key}' read as a uniform number in [0, 1).

    Same answer in every process and on every machine (unlike Python's salted `hash()`).
    `fractions` are the train/valid/test shares; they must be non-negative and sum to 1.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}.")
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    if point < fractions[0]:
        return "train"
    if point < fractions[0] + fractions[1]:
        return "valid"
    return "test"


def builtin_scenarios() -> list[Scenario]:
    """The ~30 built-in scenarios written for this project (ids 'builtin-01'...), in file order."""
    raw = resources.files("esc").joinpath("data", "builtin_scenarios.json").read_text(encoding="utf-8")
    return [Scenario(**record) for record in json.loads(raw)]


def load_dialogues(spec: str | DataSpec, seed: int = 0) -> list[Dialogue]:
    """Load the dialogues a spec names, each with `split` set; only `spec.split` when the spec has one.

    `seed` only matters where a hash split is used (built-ins, ExTES, a single ESConv file that is not
    itself named train/valid/test.jsonl). Raises DataError for a bad spec, a missing path or bad records.
    """
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if spec.split is not None and spec.split not in SPLITS:
        raise DataError(f"Data split {spec.split!r} is unknown; use 'train', 'valid' or 'test'.")
    by_hash = partial(hash_split, seed=seed)
    if spec.kind == "builtin":
        dialogues = [
            Dialogue(id=s.id, scenario=s, split=by_hash(s.id), source="builtin") for s in builtin_scenarios()
        ]
    elif spec.kind == "esconv" and spec.path is not None:
        dialogues = _load_esconv(spec.path, spec.split, seed)
    elif spec.kind == "extes" and spec.path is not None:
        if not spec.path.is_file():
            raise DataError(
                f"ExTES file {spec.path} does not exist; pass the path of your copy of the ExTES JSON file "
                "as extes:PATH."
            )
        dialogues = read_extes(spec.path, by_hash)
    else:
        raise DataError(f"Data spec {spec} is not valid; {_FORMS}.")
    return [d for d in dialogues if spec.split is None or d.split == spec.split]


def _load_esconv(path: Path, split: str | None, seed: int) -> list[Dialogue]:
    if not path.exists():
        raise DataError(f"ESConv path {path} does not exist; {_ESCONV_HELP}.")
    if path.is_dir():
        present = [name for name in SPLITS if (path / f"{name}.jsonl").is_file()]
        if present:
            if split is not None and split not in present:
                raise DataError(f"ESConv folder {path} has no {split}.jsonl (it has {', '.join(present)}).")
            wanted = [split] if split is not None else present
            return [d for name in wanted for d in _load_esconv_file(path / f"{name}.jsonl", seed)]
        if (path / "ESConv.json").is_file():
            return _load_esconv_file(path / "ESConv.json", seed)
        raise DataError(
            f"ESConv folder {path} holds neither train/valid/test.jsonl nor ESConv.json; {_ESCONV_HELP}."
        )
    return _load_esconv_file(path, seed)


def _load_esconv_file(path: Path, seed: int) -> list[Dialogue]:
    """One ESConv file; the schema follows the extension: .jsonl = split schema, .json = original schema."""
    stem = path.stem.lower()
    by_hash = partial(hash_split, seed=seed)
    if path.suffix == ".jsonl":
        if stem in SPLITS:
            return read_esconv_jsonl(path, f"esconv-{stem}", lambda _id: stem)
        return read_esconv_jsonl(path, _esconv_prefix(stem), by_hash)
    if path.suffix == ".json":
        return read_esconv_json(path, _esconv_prefix(stem), by_hash)
    raise DataError(
        f"ESConv file {path} must end in .jsonl (split schema) or .json (original schema, a JSON list)."
    )


def _esconv_prefix(stem: str) -> str:
    """Id prefix from a file stem: 'FailedESConv' -> 'esconv-failed', 'ESConv' -> 'esconv'."""
    name = re.sub(r"[^a-z0-9]+", "-", stem.replace("esconv", "")).strip("-")
    return f"esconv-{name}" if name else "esconv"


def dataset_stats(dialogues: Iterable[Dialogue]) -> dict[str, Any]:
    """Counts for a report: total, per split ('none' for unsplit), per emotion and problem, mean turns.

    `emotions` and `problems` are ordered most common first (ties by first appearance).
    """
    items = list(dialogues)
    return {
        "total": len(items),
        "splits": dict(Counter(d.split or "none" for d in items)),
        "emotions": dict(Counter(d.scenario.emotion_type for d in items).most_common()),
        "problems": dict(Counter(d.scenario.problem_type for d in items).most_common()),
        "turns_mean": sum(len(d.turns) for d in items) / len(items) if items else 0.0,
    }
