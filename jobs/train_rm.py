"""`rlff train --stage rm`: train the future-oriented reward model offline and report held-out metrics.

Labels come from `reward_model.labels`:
- `data`: ESConv (`reward_model.data`): context groups of every labelled reply (future-oriented labels,
  `esc.future_labels`) with replies from other dialogues and degraded replies
  (`learner.rm_data.data_grounded_examples`); the source's train split trains, its valid split is held
  out for the report, which also relates the labels to the seekers' own surveys (`label_vs_survey`).
- `simulated`: the run's replay store (candidate groups with future-simulation labels from
  `rlff collect`), split 80/20 by a seeded hash of the group id so a context never sits on both sides.

Writes the model, `report.json` and the inputs' fingerprint (`jobs.fingerprint`) to `--out` or
`runs/<name>/reward_model/`; when that folder already holds a model for unchanged inputs (the
reward_model section, the seed, the data files' contents) it says so in one line and trains nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

from esc.config import RunConfig
from esc.data import SPLITS, DataError, DataSpec, hash_split, load_dialogues, parse_spec
from esc.future_labels import future_labels
from esc.models import cpu_lacks_bf16
from esc.schemas import CandidateGroup, Dialogue
from esc.stats import correlation_ci
from jobs import UsageError, fingerprint
from jobs.progress import write_report
from learner.rm_data import NEGATIVE_KINDS, RMExample, data_grounded_examples, simulated_examples

# in the fingerprint: bump it when learner/reward_model.py's features, training or the context groups
# change, so `rlff train --stage rm` retrains a model cached by an older version
MODEL_FORMAT = 4


def _esconv_spec(config: RunConfig) -> DataSpec:
    cfg = config.reward_model
    if not cfg.data:
        raise UsageError("reward_model.labels 'data' needs ESConv: set reward_model.data=esconv:PATH")
    spec = parse_spec(cfg.data)
    if spec.kind != "esconv":
        raise UsageError(f"reward_model.data {cfg.data!r} is not ESConv; give esconv:PATH")
    return spec


def load_splits(config: RunConfig) -> tuple[list[Dialogue], list[Dialogue]]:
    """(train, valid) ESConv dialogues of `reward_model.data`."""
    spec = _esconv_spec(config)
    return tuple(  # type: ignore[return-value]
        load_dialogues(dataclasses.replace(spec, split=split), seed=config.seed)
        for split in ("train", "valid")
    )


def label_vs_survey(dialogues: list[Dialogue], future_turns: int, seed: int) -> dict[str, Any] | None:
    """Pearson correlation (bootstrap 95% CI) over surveyed dialogues with at least one labelled reply:
    the mean `future` part of their reply labels (without any survey blend) vs initial - final intensity."""
    means, improvements = [], []
    for dialogue in dialogues:
        labels = future_labels(dialogue, future_turns)
        if dialogue.survey is None or not labels:
            continue
        means.append(sum(label.future for label in labels) / len(labels))
        improvements.append(dialogue.survey.initial_intensity - dialogue.survey.final_intensity)
    if len(means) < 3:
        return None
    return correlation_ci(means, improvements, seed=seed).as_dict()


def store_examples(config: RunConfig) -> tuple[list[RMExample], list[RMExample]]:
    """(train, valid) examples from the run's replay store, 80/20 by a seeded hash of the group id."""
    from actors.replay_store import ReplayStore

    folder = config.store_dir()
    if not (folder / "store.sqlite").is_file():
        raise UsageError(
            f"no replay store at {folder}; run `rlff collect` first or use reward_model.labels=data"
        )
    store = ReplayStore(folder)
    try:
        groups = [CandidateGroup.model_validate(r) for r in store.iter_records(kind="group")]
    finally:
        store.close()
    train: list[RMExample] = []
    valid: list[RMExample] = []
    for group in groups:
        side = hash_split(group.id, config.seed, (0.8, 0.2, 0.0))
        (train if side == "train" else valid).extend(simulated_examples([group]))
    if not train:
        raise UsageError(f"the replay store at {folder} has no candidates with future-simulation labels")
    return train, valid


def settings(config: RunConfig) -> dict:
    """What, besides the input files' contents, the trained model depends on. The data path is left
    out (its files count), so the same ESConv under another path spelling needs no retraining."""
    cfg = config.reward_model
    data = None
    if cfg.labels == "data" and cfg.data:
        spec = _esconv_spec(config)
        data = {"kind": spec.kind, "split": spec.split}
    return {
        "reward_model": cfg.model_dump(exclude={"data"}),
        "data": data,
        "seed": config.seed,
        "format": MODEL_FORMAT,
    }


def input_files(config: RunConfig) -> list[Path]:
    """The files whose contents the trained model depends on (hashed by `jobs.fingerprint`)."""
    if config.reward_model.labels == "simulated":
        store = config.store_dir() / "store.sqlite"
        return [store] if store.is_file() else []
    path = _esconv_spec(config).path
    assert path is not None
    if path.is_dir():
        return [path / f"{split}.jsonl" for split in SPLITS if (path / f"{split}.jsonl").is_file()]
    return [path] if path.is_file() else []


def kind_counts(examples: list[RMExample]) -> dict[str, int]:
    return dict(sorted(Counter(e.kind for e in examples).items()))


def _fmt(estimate: dict[str, Any] | None) -> str:
    if not estimate:
        return "n/a"
    return f"{estimate['value']:.3f} [{estimate['lo']:.3f}, {estimate['hi']:.3f}] n={estimate['n']}"


def print_summary(report: dict[str, Any]) -> None:
    print(
        f"reward model (labels {report['labels']}, backbone {report['backbone']}):"
        f" {report['n_train']} train / {report['n_valid']} held-out examples"
    )
    for key in [f"rank_real_vs_{kind}" for kind in NEGATIVE_KINDS]:
        if report.get(key):
            print(f"{key:<22} {_fmt(report[key])}  (pairs {report[key]['n_pairs']})")
    print(f"{'label_correlation':<22} {_fmt(report.get('label_correlation'))}")
    print(f"{'label_vs_seeker_affect':<22} {_fmt(report.get('label_vs_seeker_affect'))}")
    print(f"{'label_vs_survey':<22} {_fmt(report.get('label_vs_survey'))}")
    print(f"{'seconds':<22} {report['seconds']:.1f} (features {report['fit']['feature_seconds']:.1f})")


def run_train_rm(config: RunConfig, out: str | None = None) -> int:
    """Build examples, fit, save the model and report.json to `out` (default runs/<name>/reward_model),
    unless that folder already holds the model of unchanged inputs."""
    started = time.perf_counter()
    cfg = config.reward_model
    folder = Path(out) if out else config.run_dir() / "reward_model"
    try:
        stamp = fingerprint.fingerprint(settings(config), input_files(config))
        if fingerprint.is_current(folder, stamp) and (folder / "reward_model.json").is_file():
            print(f"reward model in {folder} is up to date (same config, seed and data); not retraining")
            return 0
        survey = None
        if cfg.labels == "data":
            train_dialogues, valid_dialogues = load_splits(config)
            train = data_grounded_examples(train_dialogues, cfg, config.seed, cfg.max_contexts)
            valid = data_grounded_examples(valid_dialogues, cfg, config.seed, cfg.valid_contexts)
            survey = label_vs_survey(valid_dialogues, cfg.future_turns, config.seed)
        else:
            train, valid = store_examples(config)
    except DataError as error:
        raise UsageError(str(error)) from None
    if not train:
        raise UsageError(f"{cfg.data or 'the replay store'} gave no reward-model examples; check the data")
    from learner.reward_model import RewardModel

    groups = len({e.group for e in train}), len({e.group for e in valid})
    per_context = "0.9 s with bf16 autocast" if cfg.bf16 else "1.7 s in float32"  # make run, 2026-12-03
    if cfg.bf16 and cpu_lacks_bf16():
        print(
            "note: this CPU has no bf16 instructions, so reward_model.bf16 may be slower; try --set"
            " reward_model.bf16=false"
        )
    pace = f"; about {per_context} a context on one CPU core" if cfg.likelihood_turns else ""
    print(
        f"reward model: training on {groups[0]} contexts, reporting on {groups[1]} held out"
        f" ({len(train) + len(valid)} replies{pace})",
        flush=True,
    )
    model = RewardModel.from_config(cfg, seed=config.seed)
    fit = model.fit(train, valid)
    model.save(folder)
    held_out = fit["valid"]
    report = {
        "labels": cfg.labels,
        "backbone": cfg.backbone,
        "n_train": len(train),
        "n_valid": len(valid),
        "kinds": {"train": kind_counts(train), "valid": kind_counts(valid)},
        **{key: held_out.get(key) for key in held_out if key.startswith("rank_real_vs_")},
        "label_correlation": held_out.get("label_correlation"),
        "label_vs_seeker_affect": held_out.get("label_vs_seeker_affect"),
        "label_vs_survey": survey,
        "fit": fit,
        "seconds": time.perf_counter() - started,
        "config": cfg.model_dump(),
        "out": str(folder),
    }
    write_report(folder / "report.json", report)
    fingerprint.mark(folder, stamp)
    print_summary(report)
    return 0
