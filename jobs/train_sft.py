"""`rlff train --stage sft`: the counselor fine-tuned on ESConv replies, the cold start of the RL run;
`rlff train --stage seeker`: the seeker simulator fine-tuned on ESConv seekers' turns.

Loads the train split of `sft.data` (`seeker_sft.data`), builds prompt/completion examples in the
role's own format (the counselor's: `counselor.reasoning` decides plain or `<think>/<answer>`; the
seeker's: `learner.seeker_sft`; turns longer than `max_answer_tokens` keep their leading sentences),
trains (`learner.sft`), and saves a model folder plus `report.json` (the counselor's: one
`rlff evaluate --policy` can use).

The stage is cached like the reward model: the folder records a fingerprint of its inputs (the `sft`
settings that shape training, the role's model and prompt settings, the seed, the data file contents)
and a later call with the same inputs prints one line and returns. `cold_start` points a run's
counselor at runs/<name>/sft when `sft.cold_start` is on, and its seeker at runs/<name>/seeker_sft when
`seeker_sft.cold_start` is on.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

from esc.config import RunConfig
from esc.data import SPLITS, DataSpec, load_dialogues, parse_spec
from esc.models import slow_bf16_note
from esc.schemas import Dialogue
from jobs import UsageError
from jobs.fingerprint import FILE as FINGERPRINT_FILE
from jobs.fingerprint import fingerprint, is_current, mark
from jobs.progress import write_report

# Part of the fingerprint: raise it when the example format (learner.sft) changes, so cached models
# trained on the old format are retrained.
EXAMPLE_FORMAT = 2


ROLES = {"counselor": ("sft", "sft"), "seeker": ("seeker_sft", "seeker")}  # role: (section, --stage)


def settings(config: RunConfig, role: str):
    """The role's SFT section: `sft` for the counselor, `seeker_sft` for the seeker."""
    return getattr(config, ROLES[role][0])


def sft_dir(config: RunConfig, role: str = "counselor") -> Path:
    """Where the role's SFT model is saved by default: runs/<name>/sft, runs/<name>/seeker_sft."""
    return config.run_dir() / ROLES[role][0]


def cold_start(config: RunConfig, roles: tuple[str, ...] = tuple(ROLES)) -> RunConfig:
    """`config` with `counselor.model` set to the absolute path of runs/<name>/sft when `sft.cold_start`
    is on, and `seeker.model` to that of runs/<name>/seeker_sft when `seeker_sft.cold_start` is on
    (absolute because Ray Train workers run in another working folder); unchanged when both are off.
    `roles`: only these (e.g. the counselor alone, for a stage that never runs the seeker).

    Raises UsageError when cold start is on and the folder holds no finished SFT model.
    """
    for role, (section, stage) in ROLES.items():
        if role not in roles or not getattr(config, section).cold_start:
            continue
        folder = sft_dir(config, role).resolve()
        if not (folder / FINGERPRINT_FILE).is_file() or not (folder / "config.json").is_file():
            raise UsageError(
                f"{section}.cold_start is on but {folder} holds no trained SFT model; run `rlff train"
                f" --stage {stage}` with the same config first (or set {section}.cold_start=false)"
            )
        started = getattr(config, role).model_copy(update={"model": str(folder)})
        config = config.model_copy(update={role: started})
    return config


def data_files(spec: DataSpec) -> list[Path]:
    """The files loading `spec` reads (for the fingerprint); empty when its path does not exist."""
    path = spec.path
    if path is None or not path.exists():
        return []
    if path.is_file():
        return [path]
    split_files = [path / f"{name}.jsonl" for name in SPLITS if (path / f"{name}.jsonl").is_file()]
    if split_files:
        return [f for f in split_files if spec.split is None or f.stem == spec.split]
    return [f for f in (path / "ESConv.json",) if f.is_file()]


def inputs_fingerprint(config: RunConfig, spec: DataSpec, role: str = "counselor") -> str:
    """Fingerprint of everything the role's trained model depends on. The data path itself is left out
    (its files' contents count), and so is `cold_start`, which only says how `rlff run` uses the model."""
    inputs = {
        "sft": settings(config, role).model_dump(exclude={"data", "cold_start"}),
        "data": {"kind": spec.kind, "split": spec.split},
        "model": getattr(config, role).model,
        "history": getattr(config, role).max_history_turns,
        "seed": config.seed,
        "format": EXAMPLE_FORMAT,
    }
    files = data_files(spec)
    if role == "counselor":
        inputs["reasoning"] = config.counselor.reasoning
    else:  # the style examples in its prompt come from seeker.examples
        inputs["role"], inputs["num_examples"] = role, config.seeker.num_examples
        if config.seeker.num_examples and config.seeker.examples:
            inputs["examples"] = config.seeker.examples
            files += data_files(parse_spec(config.seeker.examples))
    return fingerprint(inputs, files)


def _data_spec(config: RunConfig, role: str = "counselor") -> tuple[str, DataSpec]:
    """`sft.data` (`seeker_sft.data`) as written, and parsed with the split it names, else its train split.

    Raises UsageError when it is not set or is 'builtin' (built-in scenarios have no dialogue turns).
    """
    section = ROLES[role][0]
    data = (settings(config, role).data or "").strip()
    if not data:
        raise UsageError(
            f"{section}.data is not set; pass --set {section}.data=esconv:PATH#train with your ESConv copy"
        )
    spec = parse_spec(data)
    if spec.kind == "builtin":
        raise UsageError(f"{section}.data must be ESConv-style dialogues with real turns, not 'builtin'")
    return data, replace(spec, split=spec.split or "train")


def _examples(config: RunConfig, dialogues: list[Dialogue], role: str) -> list[dict]:
    """The role's prompt/completion examples from `dialogues` (`learner.sft.sft_examples`,
    `learner.seeker_sft.seeker_examples`), each turn cut to the leading sentences that fit the section's
    `max_answer_tokens` of the role model's tokenizer."""
    from esc.models import load_tokenizer
    from learner.seeker_sft import seeker_examples
    from learner.sft import cap_reply, sft_examples

    section, model = settings(config, role), getattr(config, role)
    tokenizer = load_tokenizer(model.model)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def cap(text: str) -> str | None:
        return cap_reply(text, count, section.max_answer_tokens)

    if role == "counselor":
        return sft_examples(
            dialogues, model.reasoning, section.max_examples, config.seed, cap, model.max_history_turns
        )
    style = None
    if model.examples and model.num_examples:  # the real seekers' turns its prompt shows, as at run time
        from esc.seeker_check import SeekerGrounding

        pool = SeekerGrounding.from_spec(model.examples).examples

        def style(scenario):
            return pool.pick(scenario, model.num_examples)

    return seeker_examples(dialogues, section.max_examples, config.seed, cap, model.max_history_turns, style)


def _clear_output(out_dir: Path) -> None:
    """Create `out_dir` and remove its fingerprint, so an interrupted retrain is never "current"."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create output folder {out_dir}: {error.strerror}") from None
    (out_dir / FINGERPRINT_FILE).unlink(missing_ok=True)


def _print_summary(
    config: RunConfig, spec: DataSpec, result: dict[str, Any], out_dir: Path, role: str
) -> None:
    """Print the example counts, steps, loss and time of `result`, and how to use the saved model (the
    counselor's: the `rlff evaluate` command that scores it, on the data's test split for ESConv)."""
    if role == "counselor":
        evaluate = ["rlff", "evaluate", "--policy", str(out_dir)]
        if spec.kind == "esconv" and spec.path is not None:
            evaluate += ["--scenarios", f"esconv:{spec.path}#test"]
        if not config.counselor.reasoning:
            evaluate += ["--set", "counselor.reasoning=false"]
        use = f"evaluate it with: {shlex.join(evaluate)}"
    else:
        use = f"measure its role consistency with: bench/seeker_role.py --seeker-sft {out_dir}"
    print(
        f"examples {result['examples']} ({result['examples_trimmed']} with history trimmed to"
        f" {settings(config, role).max_tokens} tokens, {result['examples_dropped']} dropped)\n"
        f"steps {result['steps']}, loss {result['first_loss']:.3f} -> {result['last_loss']:.3f},"
        f" {result['seconds']:.1f} s ({result['seconds_per_step']:.2f} s/step)\n"
        f"model saved to {out_dir}\n{use}"
    )


def run_train_sft(config: RunConfig, out: str | None = None, role: str = "counselor") -> int:
    """CLI body: train the role's SFT model and save it to `out` (default runs/<name>/sft, or
    runs/<name>/seeker_sft), or skip when that folder already holds the model for the same inputs;
    returns 0. The data spec's own split is used when it names one, else its train split.
    """
    data, spec = _data_spec(config, role)
    out_dir = Path(out) if out else sft_dir(config, role)
    inputs = inputs_fingerprint(config, spec, role)
    name = "SFT model" if role == "counselor" else "seeker SFT model"
    if is_current(out_dir, inputs) and (out_dir / "config.json").is_file():
        print(f"{name} in {out_dir} is up to date (same settings and data); not retraining")
        return 0
    dialogues = load_dialogues(spec, seed=config.seed)
    examples = _examples(config, dialogues, role)
    if not examples:
        raise UsageError(f"no {role} turn to learn from in the {spec.split} split of {data}")
    _clear_output(out_dir)
    section, model = settings(config, role), getattr(config, role).model
    shape = "seeker turns" if role == "seeker" else "replies"
    if role == "counselor":
        shape += f" ({'reasoning' if config.counselor.reasoning else 'plain'} format)"
    print(
        f"SFT of {model} on {len(examples)} {shape} from {len(dialogues)} {spec.split} dialogues,"
        f" {section.max_steps} steps"
    )
    import torch

    name = "sft" if role == "counselor" else "seeker_sft"
    note = slow_bf16_note(f"{name}.bf16") if section.bf16 is True and not torch.cuda.is_available() else None
    if note:  # CUDA always autocasts
        print(note)
    from learner.sft import ExamplesDontFitError, train_sft

    try:
        result = train_sft(config, examples, out_dir, role)
    except ExamplesDontFitError as error:
        raise UsageError(str(error)) from None
    report = {
        **result,
        "role": role,
        "data": data,
        "split": spec.split,
        "dialogues": len(dialogues),
        "base_model": model,
        ROLES[role][0]: section.model_dump(),
        "seed": config.seed,
    }
    if role == "counselor":
        report["reasoning"] = config.counselor.reasoning
    write_report(out_dir / "report.json", report)
    mark(out_dir, inputs)
    _print_summary(config, spec, result, out_dir, role)
    return 0
