"""`rlff train --stage sft`: the counselor fine-tuned on ESConv replies, the cold start of the RL run.

Loads the train split of `sft.data`, builds prompt/completion examples in the counselor's own format
(`counselor.reasoning` decides plain or `<think>/<answer>`; replies longer than `sft.max_answer_tokens`
keep their leading sentences), trains with TRL's SFTTrainer (`learner.sft`), and saves a model folder
plus `report.json` that `rlff evaluate --policy` can use.

The stage is cached like the reward model: the folder records a fingerprint of its inputs (the `sft`
settings that shape training, the counselor's model and format, the seed, the data file contents) and
a later call with the same inputs prints one line and returns. `cold_start` points a run's counselor at
that folder when `sft.cold_start` is on.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

from esc.config import RunConfig
from esc.data import SPLITS, DataSpec, load_dialogues, parse_spec
from esc.schemas import Dialogue
from jobs import UsageError
from jobs.fingerprint import FILE as FINGERPRINT_FILE
from jobs.fingerprint import fingerprint, is_current, mark
from jobs.progress import write_report

# Part of the fingerprint: raise it when the example format (learner.sft) changes, so cached models
# trained on the old format are retrained.
EXAMPLE_FORMAT = 2


def sft_dir(config: RunConfig) -> Path:
    """Where `rlff train --stage sft` saves the run's model by default: runs/<name>/sft."""
    return config.run_dir() / "sft"


def cold_start(config: RunConfig) -> RunConfig:
    """`config` with `counselor.model` set to the absolute path of runs/<name>/sft when `sft.cold_start`
    is on (absolute because Ray Train workers run in another working folder); unchanged when it is off.

    Raises UsageError when cold start is on and that folder holds no finished SFT model.
    """
    if not config.sft.cold_start:
        return config
    folder = sft_dir(config).resolve()
    if not (folder / FINGERPRINT_FILE).is_file() or not (folder / "config.json").is_file():
        raise UsageError(
            f"sft.cold_start is on but {folder} holds no trained SFT model; run `rlff train --stage sft`"
            " with the same config first (or set sft.cold_start=false)"
        )
    counselor = config.counselor.model_copy(update={"model": str(folder)})
    return config.model_copy(update={"counselor": counselor})


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


def inputs_fingerprint(config: RunConfig, spec: DataSpec) -> str:
    """Fingerprint of everything the trained model depends on. The data path itself is left out (its
    files' contents count), and so is `sft.cold_start`, which only says how `rlff run` uses the model."""
    settings = {
        "sft": config.sft.model_dump(exclude={"data", "cold_start"}),
        "data": {"kind": spec.kind, "split": spec.split},
        "model": config.counselor.model,
        "reasoning": config.counselor.reasoning,
        "history": config.counselor.max_history_turns,
        "seed": config.seed,
        "format": EXAMPLE_FORMAT,
    }
    return fingerprint(settings, data_files(spec))


def _data_spec(config: RunConfig) -> tuple[str, DataSpec]:
    """`sft.data` as written, and parsed with the split it names, else its train split.

    Raises UsageError when it is not set or is 'builtin' (built-in scenarios have no counselor replies).
    """
    data = (config.sft.data or "").strip()
    if not data:
        raise UsageError("sft.data is not set; pass --set sft.data=esconv:PATH#train with your ESConv copy")
    spec = parse_spec(data)
    if spec.kind == "builtin":
        raise UsageError("sft.data must be ESConv-style dialogues with counselor replies, not 'builtin'")
    return data, replace(spec, split=spec.split or "train")


def _examples(config: RunConfig, dialogues: list[Dialogue]) -> list[dict]:
    """Prompt/completion examples from `dialogues` (`learner.sft.sft_examples`), each reply cut to the
    leading sentences that fit `sft.max_answer_tokens` of the counselor's tokenizer."""
    from esc.models import load_tokenizer
    from learner.sft import cap_reply, sft_examples

    tokenizer = load_tokenizer(config.counselor.model)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def cap(text: str) -> str | None:
        return cap_reply(text, count, config.sft.max_answer_tokens)

    return sft_examples(
        dialogues,
        config.counselor.reasoning,
        config.sft.max_examples,
        config.seed,
        cap=cap,
        max_turns=config.counselor.max_history_turns,
    )


def _clear_output(out_dir: Path) -> None:
    """Create `out_dir` and remove its fingerprint, so an interrupted retrain is never "current"."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create output folder {out_dir}: {error.strerror}") from None
    (out_dir / FINGERPRINT_FILE).unlink(missing_ok=True)


def _print_summary(config: RunConfig, spec: DataSpec, result: dict[str, Any], out_dir: Path) -> None:
    """Print the example counts, steps, loss and time of `result`, and the `rlff evaluate` command
    that scores the saved model (on the data's test split where the data is ESConv)."""
    evaluate = ["rlff", "evaluate", "--policy", str(out_dir)]
    if spec.kind == "esconv" and spec.path is not None:
        evaluate += ["--scenarios", f"esconv:{spec.path}#test"]
    if not config.counselor.reasoning:
        evaluate += ["--set", "counselor.reasoning=false"]
    print(
        f"examples {result['examples']} ({result['examples_trimmed']} with history trimmed to"
        f" {config.sft.max_tokens} tokens, {result['examples_dropped']} dropped)\n"
        f"steps {result['steps']}, loss {result['first_loss']:.3f} -> {result['last_loss']:.3f},"
        f" {result['seconds']:.1f} s ({result['seconds_per_step']:.2f} s/step)\n"
        f"model saved to {out_dir}\n"
        f"evaluate it with: {shlex.join(evaluate)}"
    )


def run_train_sft(config: RunConfig, out: str | None = None) -> int:
    """CLI body: train the SFT model and save it to `out` (default runs/<name>/sft), or skip when that
    folder already holds the model for the same inputs; returns 0.

    The data spec's own split is used when it names one, else its train split.
    """
    data, spec = _data_spec(config)
    out_dir = Path(out) if out else sft_dir(config)
    inputs = inputs_fingerprint(config, spec)
    if is_current(out_dir, inputs) and (out_dir / "config.json").is_file():
        print(f"SFT model in {out_dir} is up to date (same settings and data); not retraining")
        return 0
    dialogues = load_dialogues(spec, seed=config.seed)
    examples = _examples(config, dialogues)
    if not examples:
        raise UsageError(f"no counselor reply follows a seeker turn in the {spec.split} split of {data}")
    _clear_output(out_dir)
    reasoning = config.counselor.reasoning
    print(
        f"SFT of {config.counselor.model} on {len(examples)} replies from {len(dialogues)} {spec.split}"
        f" dialogues ({'reasoning' if reasoning else 'plain'} format), {config.sft.max_steps} steps"
    )
    from learner.sft import ExamplesDontFitError, train_sft

    try:
        result = train_sft(config, examples, out_dir)
    except ExamplesDontFitError as error:
        raise UsageError(str(error)) from None
    report = {
        **result,
        "data": data,
        "split": spec.split,
        "dialogues": len(dialogues),
        "base_model": config.counselor.model,
        "reasoning": reasoning,
        "sft": config.sft.model_dump(),
        "seed": config.seed,
    }
    write_report(out_dir / "report.json", report)
    mark(out_dir, inputs)
    _print_summary(config, spec, result, out_dir)
    return 0
