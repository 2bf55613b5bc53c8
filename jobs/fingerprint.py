"""Cached stages (the reward model, the cold-start SFT) are rebuilt only when their inputs change.

A stage's inputs are its settings (a JSON-able dict: the config section, seed, model spec) and the data
files it reads. `fingerprint` hashes both (file contents, not dates, so a fresh clone or a copied
dataset does not trigger a rebuild); the stage writes it beside its output with `mark`, and `is_current`
compares before the next run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

FILE = "inputs.sha256"


def fingerprint(settings: dict, files: Iterable[Path] = ()) -> str:
    """sha256 over the settings (canonical JSON) and the name and bytes of each file, in sorted order."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in sorted(Path(f) for f in files):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def is_current(folder: Path, value: str) -> bool:
    """True when `folder` holds the output of a finished stage whose inputs had fingerprint `value`."""
    path = Path(folder) / FILE
    return path.is_file() and path.read_text().strip() == value


def mark(folder: Path, value: str) -> None:
    """Record that `folder` now holds the output for inputs `value` (call after the output is complete)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / FILE).write_text(value + "\n")
