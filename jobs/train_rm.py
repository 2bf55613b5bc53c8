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
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from esc.config import RunConfig
from esc.data import SPLITS, DataError, DataSpec, hash_split, load_dialogues, parse_spec
from esc.future_labels import future_labels
from esc.models import slow_bf16_note, use_bf16
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
    seconds = f"{'seconds':<22} {report['seconds']:.1f} (features {report['fit']['feature_seconds']:.1f})"
    if report.get("held_out") == "pending":
        print(
            f"reward model (labels {report['labels']}, backbone {report['backbone']}):"
            f" {report['n_train']} train examples; held-out report pending (rlff train --stage rm-report)"
        )
        print(seconds)
        return
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
    print(
        seconds + (f"; held-out report {report['report_seconds']:.1f}" if "report_seconds" in report else "")
    )


def rm_folder(config: RunConfig, out: str | None = None) -> Path:
    if out and Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out} is a file; the reward model is saved to a folder")
    return Path(out) if out else config.run_dir() / "reward_model"


def stamp(config: RunConfig) -> str:
    """Fingerprint of the trained model's inputs (`settings` and `input_files`)."""
    try:
        return fingerprint.fingerprint(settings(config), input_files(config))
    except DataError as error:
        raise UsageError(str(error)) from None


def is_trained(config: RunConfig, folder: Path, inputs: str | None = None) -> bool:
    """Whether `folder` holds the model of the current inputs (`inputs`: their `stamp`), completely
    written (the fingerprint is marked after the model's files): what a stage waiting on it checks."""
    current = fingerprint.is_current(folder, inputs or stamp(config))
    return current and (folder / "reward_model.json").is_file()


def load_examples(config: RunConfig) -> tuple[list[RMExample], list[RMExample], dict[str, Any] | None]:
    """(train, valid, label_vs_survey) for `reward_model.labels`; UsageError on bad data."""
    cfg = config.reward_model
    try:
        if cfg.labels == "data":
            train_dialogues, valid_dialogues = load_splits(config)
            train = data_grounded_examples(train_dialogues, cfg, config.seed, cfg.max_contexts)
            valid = data_grounded_examples(valid_dialogues, cfg, config.seed, cfg.valid_contexts)
            return train, valid, label_vs_survey(valid_dialogues, cfg.future_turns, config.seed)
        return (*store_examples(config), None)
    except DataError as error:
        raise UsageError(str(error)) from None


def run_train_rm(config: RunConfig, out: str | None = None, defer_report: bool = False) -> int:
    """Build examples, fit, save the model and report.json to `out` (default runs/<name>/reward_model),
    unless that folder already holds the model of unchanged inputs. `defer_report`: save the model
    without its held-out report (about 40% of the stage on ESConv), so that stages waiting on the model
    start sooner; `rlff train --stage rm-report` writes it later (so does this stage without the flag)."""
    started = time.perf_counter()
    cfg = config.reward_model
    folder, inputs = rm_folder(config, out), stamp(config)
    if is_trained(config, folder, inputs):
        print(f"reward model in {folder} is up to date (same config, seed and data); not retraining")
        return 0 if defer_report or not report_pending(folder) else run_rm_report(config, out)
    train, valid, survey = load_examples(config)
    if not train:
        raise UsageError(f"{cfg.data or 'the replay store'} gave no reward-model examples; check the data")
    from learner.reward_model import RewardModel

    groups = len({e.group for e in train}), len({e.group for e in valid})
    on = use_bf16(cfg.bf16)
    per_context = "0.9 s with bf16 autocast" if on else "1.7 s in float32"  # make run, 2026-12-03
    note = slow_bf16_note("reward_model.bf16") if cfg.bf16 is True else None
    if note:
        print(note)
    pace = f"; about {per_context} a context on one CPU core" if cfg.likelihood_turns else ""
    reporting = "its held-out report later" if defer_report else f"reporting on {groups[1]} held out"
    print(
        f"reward model: training on {groups[0]} contexts, {reporting}"
        f" ({len(train) + (0 if defer_report else len(valid))} replies{pace})",
        flush=True,
    )
    model = RewardModel.from_config(cfg, seed=config.seed)
    fit = model.fit(train, [] if defer_report else valid)
    model.save(folder)
    report = {
        "labels": cfg.labels,
        "backbone": cfg.backbone,
        "n_train": len(train),
        "kinds": {"train": kind_counts(train)},
        "fit": fit,
        "seconds": time.perf_counter() - started,
        "config": cfg.model_dump(),
        "out": str(folder),
        "held_out": "pending",
    }
    if not defer_report:  # fit() evaluated `valid` already
        report.update(held_out_part(fit["valid"], valid, survey))
        report["kinds"]["valid"] = kind_counts(valid)
    write_report(folder / "report.json", report)
    fingerprint.mark(folder, inputs)
    print_summary(report)
    return 0


def held_out_part(
    held_out: dict[str, Any], valid: list[RMExample], survey: dict[str, Any] | None
) -> dict[str, Any]:
    """The report's held-out keys from `RewardModel.evaluate(valid)`."""
    return {
        "held_out": "done",
        "n_valid": len(valid),
        **{key: held_out.get(key) for key in held_out if key.startswith("rank_real_vs_")},
        "label_correlation": held_out.get("label_correlation"),
        "label_vs_seeker_affect": held_out.get("label_vs_seeker_affect"),
        "label_vs_survey": survey,
    }


def report_pending(folder: Path) -> bool:
    """Whether the report.json in `folder` still lacks its held-out part (`--defer-report`)."""
    try:
        return json.loads((folder / "report.json").read_text()).get("held_out") == "pending"
    except (OSError, ValueError, AttributeError):
        return False


def run_rm_report(config: RunConfig, out: str | None = None) -> int:
    """`rlff train --stage rm-report`: the held-out part of the report of a model trained with
    `--defer-report` (nothing to do when it has one); UsageError when the folder holds no model of the
    current inputs."""
    folder = rm_folder(config, out)
    if not is_trained(config, folder):
        raise UsageError(
            f"no reward model for these settings in {folder}; train it with `rlff train --stage rm`"
        )
    if not report_pending(folder):
        print(f"reward model report in {folder} is complete")
        return 0
    started = time.perf_counter()
    _, valid, survey = load_examples(config)
    from learner.reward_model import RewardModel

    print(f"reward model: reporting on {len({e.group for e in valid})} held-out contexts", flush=True)
    report = json.loads((folder / "report.json").read_text())
    held_out = RewardModel.load(folder).evaluate(valid) if valid else {}
    report.update(held_out_part(held_out, valid, survey), report_seconds=time.perf_counter() - started)
    report["kinds"]["valid"], report["fit"]["valid"] = kind_counts(valid), held_out
    write_report(folder / "report.json", report)
    print_summary(report)
    return 0
