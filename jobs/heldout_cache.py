"""The base held-out point, cached: the version-0 point of `rlff run` is a function of its inputs only.

Version 0 is the starting policy (the cold-start SFT model, or `counselor.model`) answering the fixed
held-out contexts with fixed seeds, scored by the run's reward model. When none of that changed, a new
run reuses the point the last run generated instead of spending minutes of decoding on the same replies.
The inputs: the counselor, evaluation, safety and reward settings, the replies per context and the seed;
the bytes of the policy's weights (a model folder) and of the reward model; the held-out data file; and
the source of the modules that shape a reply or its score (prompts, parsing, contexts, safety, the
counselor role, the metrics, the point itself, the reward), so editing them also invalidates it. Cached
rows are used only for exactly the contexts they answer, in order. Stored as
`runs/<name>/heldout_base/rows.jsonl` (the point's context rows, JSON) with the fingerprint beside it
(`jobs.fingerprint`). Does not generate or score anything itself.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from esc.config import RunConfig
from esc.data import parse_spec
from jobs.fingerprint import fingerprint, is_current, mark
from jobs.train_sft import data_files

ROOT = Path(__file__).resolve().parents[1]
# modules whose code decides what a held-out reply is and how it scores
SOURCES = (
    *("esc/prompts.py", "esc/parsing.py", "esc/contexts.py", "esc/safety.py", "esc/learning.py"),
    *("esc/roles.py", "esc/metrics.py", "jobs/heldout.py"),
    *("learner/reward_model.py", "learner/rm_likelihood.py", "learner/loop.py", "learner/losses.py"),
)
FORMAT = 1  # raise when a row's layout changes


def samples_per_context(config: RunConfig) -> int:
    """G of a held-out point: replies sampled per context."""
    return config.evaluation.heldout_samples or config.rollout.group_size


def _model_files(spec: str) -> list[Path]:
    """The files of a model folder that decide its outputs; none for a named model (its spec names it)."""
    folder = Path(spec)
    if not folder.is_dir():
        return []
    return sorted(
        {*folder.glob("*.safetensors"), *folder.glob("config.json"), *folder.glob("tokenizer.json")}
    )


def inputs(config: RunConfig, reward_model: Path) -> str:
    """Fingerprint of everything the version-0 point depends on (see the module docstring)."""
    lc = config.learner
    settings = {
        "counselor": config.counselor.model_dump(),
        "evaluation": config.evaluation.model_dump(
            include={"heldout", "heldout_contexts", "heldout_samples"}
        ),
        "safety": config.safety.model_dump(),
        "reward": [config.reward_model.weight, lc.format_weight, lc.safety_weight, lc.format_gate],
        "samples": samples_per_context(config),  # with heldout_samples unset, rollout.group_size
        "seed": config.seed,
        "format": FORMAT,
    }
    files = [*_model_files(config.counselor.model), *Path(reward_model).glob("*")]
    files = [f for f in files if f.is_file() and f.name != "report.json"]
    if config.evaluation.heldout is not None:
        files += data_files(parse_spec(config.evaluation.heldout))
    return fingerprint(settings, [*files, *(ROOT / s for s in SOURCES)])


class BaseCache:
    """`load()`: the cached version-0 rows if their inputs are unchanged; `save(rows)`: after a new point."""

    def __init__(self, config: RunConfig, reward_model: Path):
        self.config, self.reward_model = config, reward_model
        self.folder = config.run_dir() / "heldout_base"

    @cached_property
    def stamp(self) -> str:
        """The inputs' fingerprint, hashed on first use (a resumed run with a base point never needs it)."""
        return inputs(self.config, self.reward_model)

    def load(self, ids: list[str]) -> list[dict[str, Any]] | None:
        """The cached rows, if their inputs are unchanged and they answer exactly the contexts `ids`, in
        order; else None."""
        path = self.folder / "rows.jsonl"
        if not is_current(self.folder, self.stamp) or not path.is_file():
            return None
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return rows if [r["id"] for r in rows] == ids else None

    def save(self, rows: list[dict[str, Any]]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "inputs.sha256").unlink(missing_ok=True)  # never current while half-written
        (self.folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        mark(self.folder, self.stamp)
