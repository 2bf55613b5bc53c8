"""`rlff train --stage sft`: the supervised baseline, the counselor fine-tuned on ESConv replies.

Loads the train split of `sft.data`, builds prompt/completion examples in the counselor's own format
(`counselor.reasoning` decides plain or `<think>/<answer>`), trains with TRL's SFTTrainer
(`learner.sft`), and saves a model folder plus `report.json` that `rlff evaluate --policy` can use.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

from esc.config import RunConfig
from esc.data import load_dialogues, parse_spec
from jobs import UsageError
from jobs.progress import write_report


def run_train_sft(config: RunConfig, out: str | None = None) -> int:
    """CLI body: train the SFT baseline and save it to `out` (default runs/<name>/sft); returns 0.

    The data spec's own split is used when it names one, else its train split.
    """
    data = (config.sft.data or "").strip()
    if not data:
        raise UsageError("sft.data is not set; pass --set sft.data=esconv:PATH#train with your ESConv copy")
    spec = parse_spec(data)
    if spec.kind == "builtin":
        raise UsageError("sft.data must be ESConv-style dialogues with counselor replies, not 'builtin'")
    spec = replace(spec, split=spec.split or "train")
    dialogues = load_dialogues(spec, seed=config.seed)

    from learner.sft import ExamplesDontFitError, sft_examples, train_sft

    reasoning = config.counselor.reasoning
    examples = sft_examples(dialogues, reasoning, config.sft.max_examples, config.seed)
    if not examples:
        raise UsageError(f"no counselor reply follows a seeker turn in the {spec.split} split of {data}")
    out_dir = Path(out) if out else config.run_dir() / "sft"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create output folder {out_dir}: {error.strerror}") from None
    print(
        f"SFT of {config.counselor.model} on {len(examples)} replies from {len(dialogues)} {spec.split}"
        f" dialogues ({'reasoning' if reasoning else 'plain'} format), {config.sft.max_steps} steps"
    )
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
    evaluate = ["rlff", "evaluate", "--policy", str(out_dir)]
    if spec.kind == "esconv" and spec.path is not None:
        evaluate += ["--scenarios", f"esconv:{spec.path}#test"]
    if not reasoning:
        evaluate += ["--set", "counselor.reasoning=false"]
    print(
        f"examples {result['examples']} ({result['examples_trimmed']} with history trimmed to"
        f" {config.sft.max_tokens} tokens, {result['examples_dropped']} dropped)\n"
        f"steps {result['steps']}, loss {result['first_loss']:.3f} -> {result['last_loss']:.3f},"
        f" {result['seconds']:.1f} s ({result['seconds_per_step']:.2f} s/step)\n"
        f"model saved to {out_dir}\n"
        f"evaluate it with: {shlex.join(evaluate)}"
    )
    return 0
