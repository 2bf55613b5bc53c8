"""The `rlff` command line. Expected failures print one line (`error: ...`) and exit 2."""

from __future__ import annotations

import argparse
import json
import sys

from esc.config import ConfigError, RunConfig, load_config
from jobs import UsageError
from jobs.cli_parser import build_parser


def _config(args: argparse.Namespace, extra: list[str] | None = None) -> RunConfig:
    return load_config(args.config, [*args.overrides, *(extra or [])])


def cmd_config_show(args: argparse.Namespace) -> int:
    print(json.dumps(_config(args).model_dump(), indent=2))
    return 0


def cmd_config_reference(args: argparse.Namespace) -> int:
    from jobs.reference import config_reference

    print(config_reference(), end="")
    return 0


def cmd_config_metrics(args: argparse.Namespace) -> int:
    from jobs.reference import metrics_glossary

    print(metrics_glossary(), end="")
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    from esc.data import dataset_stats, load_dialogues

    stats = dataset_stats(load_dialogues(args.spec))
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"{args.spec}: {stats['total']} dialogues, {stats['turns_mean']:.1f} turns on average")
    for split, count in stats["splits"].items():
        print(f"  split {split:<6} {count:>6}")
    for title in ("emotions", "problems"):
        print(f"{title}:")
        for name, count in stats[title].items():
            print(f"  {name:<28} {count:>6}")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from jobs.chat import run_chat

    config = _config(args, [f"counselor.model={args.model}"] if args.model else None)
    return run_chat(config, message=args.message, demo=args.demo, show_reasoning=args.show_reasoning)


def cmd_prepare(args: argparse.Namespace) -> int:
    import time

    from esc.models import ensure_embedded_cached, load_model

    started = time.perf_counter()
    if args.model == "smollm2-135m":
        print(f"embedded model cached at {ensure_embedded_cached()}")
    else:
        load_model(args.model)
        print(f"model {args.model} loads")
    print(f"took {time.perf_counter() - started:.1f} s")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from jobs.evaluate import run_evaluate

    return run_evaluate(_config(args), args.policy, args.scenarios, args.limit, args.out, args.references)


def cmd_judge_check(args: argparse.Namespace) -> int:
    from jobs.judge_check import run_judge_check

    return run_judge_check(_config(args), args.data, args.limit, args.out, args.balance)


def cmd_collect(args: argparse.Namespace) -> int:
    from jobs.collect import run_collect

    return run_collect(_config(args), args.data, args.limit)


def cmd_run(args: argparse.Namespace) -> int:
    from jobs.run import resume_config, run_online

    resume = args.resume is not None
    if resume and args.config is not None:
        raise UsageError("give either --config or --resume, not both (a resumed run keeps its config)")
    config = resume_config(args.resume, args.overrides) if resume else _config(args)
    return run_online(config, resume=resume)


def cmd_report(args: argparse.Namespace) -> int:
    import shlex

    from jobs.report import run_report

    if args.episodes < 0:
        raise UsageError("--episodes must be 0 or a positive number of episodes")
    command = shlex.join(["rlff", *args.argv])
    return run_report(
        args.run_dir, args.overrides, args.out, args.base, args.interactive, args.episodes, command
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from jobs.serve import run_serve

    return run_serve(_config(args), args.checkpoint, args.follow)


def cmd_train(args: argparse.Namespace) -> int:
    if args.defer_report and args.stage != "rm":
        raise UsageError("--defer-report goes with --stage rm only")
    if args.beside is not None and args.stage != "heldout":
        raise UsageError("--beside goes with --stage heldout only")
    if args.beside is not None and args.beside <= 0:
        raise UsageError(f"--beside takes a process id (a positive number), got {args.beside}")
    config = _config(args)
    if args.stage == "rm":
        from jobs.train_rm import run_train_rm

        return run_train_rm(config, args.out, args.defer_report)
    if args.stage == "rm-report":
        from jobs.train_rm import run_rm_report

        return run_rm_report(config, args.out)
    if args.stage == "heldout":
        if args.out:
            raise UsageError("--out is not used by --stage heldout (it saves to runs/<name>/heldout_base)")
        from jobs.base_point import run_base_point

        return run_base_point(config, args.beside)
    if args.stage in ("sft", "seeker"):
        from jobs.train_sft import run_train_sft

        return run_train_sft(config, args.out, "counselor" if args.stage == "sft" else "seeker")
    if args.out:
        raise UsageError("--out is not used by --stage policy (weights go to runs/<name>/weights)")
    from jobs.run import run_offline_policy

    return run_offline_policy(config)


def cmd_crisis_probe(args: argparse.Namespace) -> int:
    from jobs.crisis_probe import run_crisis_probe

    if args.crisis_probe_command == "measure" and not args.files:
        raise UsageError("measure needs labelled files, e.g. tests/fixtures/crisis_probes_blind.jsonl")
    if not 0.0 <= args.max_false_alarm < 1.0:
        raise UsageError(f"--max-false-alarm must be from 0 to below 1, got {args.max_false_alarm}")
    return run_crisis_probe(args.crisis_probe_command, args.files, args.out, args.max_false_alarm)


HANDLERS = {
    ("run", None): cmd_run,
    ("train", None): cmd_train,
    ("serve", None): cmd_serve,
    ("collect", None): cmd_collect,
    ("judge-check", None): cmd_judge_check,
    ("evaluate", None): cmd_evaluate,
    ("prepare", None): cmd_prepare,
    ("crisis-probe", None): cmd_crisis_probe,
    ("report", None): cmd_report,
    ("config", "show"): cmd_config_show,
    ("config", "reference"): cmd_config_reference,
    ("config", "metrics"): cmd_config_metrics,
    ("data", "stats"): cmd_data_stats,
    ("chat", None): cmd_chat,
}


# Options whose empty value would otherwise fall back to the default silently (an unset shell variable)
PATH_LIKE = ("model", "out", "references", "base", "checkpoint", "policy", "scenarios", "data")


def _no_empty_values(args: argparse.Namespace) -> None:
    for name in PATH_LIKE:
        value = getattr(args, name, None)
        if isinstance(value, str) and not value.strip():
            raise UsageError(f"--{name} needs a value, not an empty string")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `rlff report` writes it into its output
    action = getattr(args, f"{args.command}_command", None)
    handler = HANDLERS[(args.command, action)]
    from esc.backends.base import BackendError
    from esc.data import DataError
    from esc.models import ModelNotFoundError

    try:
        _no_empty_values(args)
        return handler(args)
    except (ConfigError, DataError, ModelNotFoundError, BackendError, UsageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `rlff data stats ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
