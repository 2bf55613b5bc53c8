"""`rlff train --stage rm`: train the future-oriented reward model offline and report held-out metrics.

Labels come from `reward_model.labels`:
- `data`: ESConv dialogues with seeker surveys (`reward_model.data`), the source's train split for
  training and its valid split held out (`learner.rm_data.data_grounded_examples`).
- `simulated`: the run's replay store (candidate groups with future-simulation labels from
  `rlff collect`), split 80/20 by a seeded hash of the group id so a context never sits on both sides.

Writes the model and `report.json` to `--out` or `runs/<name>/reward_model/`.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

from esc.config import RunConfig
from esc.data import DataError, hash_split, load_dialogues, parse_spec
from jobs import UsageError
from jobs.progress import write_report
from learner.rm_data import RMExample, data_grounded_examples, simulated_examples


def data_examples(config: RunConfig) -> tuple[list[RMExample], list[RMExample]]:
    """(train, valid) examples with data-grounded labels from `reward_model.data`'s train/valid splits."""
    cfg = config.reward_model
    if not cfg.data:
        raise UsageError(
            "reward_model.labels 'data' needs ESConv with seeker surveys: set reward_model.data=esconv:PATH"
        )
    spec = parse_spec(cfg.data)
    if spec.kind != "esconv":
        raise UsageError(f"reward_model.data {cfg.data!r} has no seeker surveys; give esconv:PATH")
    splits = []
    for split in ("train", "valid"):
        dialogues = load_dialogues(dataclasses.replace(spec, split=split), seed=config.seed)
        if not any(d.survey for d in dialogues):
            raise UsageError(f"{cfg.data} has no {split} dialogues with a seeker survey; use ESConv data")
        splits.append(data_grounded_examples(dialogues, cfg, seed=config.seed))
    return splits[0], splits[1]


def store_examples(config: RunConfig) -> tuple[list[RMExample], list[RMExample]]:
    """(train, valid) examples from the run's replay store, 80/20 by a seeded hash of the group id."""
    from actors.replay_store import ReplayStore

    cfg = config.reward_model
    if len(config.future.class_edges) + 1 != len(cfg.values()):
        raise UsageError(
            f"simulated labels have {len(config.future.class_edges) + 1} classes (future.class_edges) but"
            f" the reward model has {len(cfg.values())} (reward_model.improvement_edges); make them match"
        )
    folder = config.store_dir()
    if not (folder / "store.sqlite").is_file():
        raise UsageError(
            f"no replay store at {folder}; run `rlff collect` first or use reward_model.labels=data"
        )
    store = ReplayStore(folder)
    try:
        records = list(store.iter_records(kind="group"))
    finally:
        store.close()
    train: list[RMExample] = []
    valid: list[RMExample] = []
    for record in records:
        side = hash_split(str(record["id"]), config.seed, (0.8, 0.2, 0.0))
        (train if side == "train" else valid).extend(simulated_examples([record]))
    if not train:
        raise UsageError(f"the replay store at {folder} has no candidates with future-simulation labels")
    return train[: cfg.max_examples], valid


def label_counts(examples: list[RMExample]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(Counter(e.label for e in examples if e.label is not None).items())}


def print_summary(report: dict[str, Any]) -> None:
    valid = report["fit"]["valid"]
    print(
        f"reward model ({report['formulation']}, labels {report['labels']}, backbone {report['backbone']}):"
        f" {report['n_train']} train / {report['n_valid']} held-out examples"
    )
    counts = report["label_counts"]
    print(f"label counts        train {counts['train']}  valid {counts['valid']}")
    if report["formulation"] == "classification" and valid:
        print(
            f"held-out accuracy   {valid['accuracy']:.3f}  macro-F1 {valid['macro_f1']:.3f}"
            f"  (majority baseline {valid['majority_baseline']:.3f}, n={valid['n']})"
        )
    elif valid:
        print(f"pairwise accuracy   {valid['pairwise_accuracy']}  (n_pairs={valid['n_pairs']})")
    print(f"seconds             {report['seconds']:.1f} (features {report['fit']['feature_seconds']:.1f})")


def run_train_rm(config: RunConfig, out: str | None = None) -> int:
    """Build examples, fit, save the model and report.json to `out` (default runs/<name>/reward_model)."""
    from learner.reward_model import RewardModel

    started = time.perf_counter()
    cfg = config.reward_model
    try:
        train, valid = data_examples(config) if cfg.labels == "data" else store_examples(config)
    except DataError as error:
        raise UsageError(str(error)) from None
    folder = Path(out) if out else config.run_dir() / "reward_model"
    model = RewardModel.from_config(cfg, seed=config.seed)
    fit = model.fit(train, valid)
    model.save(folder)
    report = {
        "formulation": cfg.formulation,
        "labels": cfg.labels,
        "backbone": cfg.backbone,
        "train": cfg.train,
        "n_train": len(train),
        "n_valid": len(valid),
        "label_counts": {"train": label_counts(train), "valid": label_counts(valid)},
        "fit": fit,
        "seconds": time.perf_counter() - started,
        "config": cfg.model_dump(),
        "out": str(folder),
    }
    write_report(folder / "report.json", report)
    print_summary(report)
    return 0
