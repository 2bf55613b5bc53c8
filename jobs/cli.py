"""The `rlff` command line. Expected failures print one line (`error: ...`) and exit 2."""

from __future__ import annotations

import argparse
import json
import sys

from esc.config import ConfigError, RunConfig, load_config
from jobs import UsageError


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (default: built-in defaults)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, e.g. --set learner.lr=3e-6 (repeatable)",
    )


def _add_config(commands: argparse._SubParsersAction) -> None:
    config = commands.add_parser("config", help="inspect configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = config_commands.add_parser("show", help="print the resolved config as JSON")
    _add_config_args(show)
    config_commands.add_parser("reference", help="print the configuration reference (Markdown)")
    config_commands.add_parser("metrics", help="print the metrics glossary (Markdown)")


def _add_chat(commands: argparse._SubParsersAction) -> None:
    chat = commands.add_parser("chat", help="talk to the counselor in the terminal")
    _add_config_args(chat)
    chat.add_argument("--model", help="counselor model spec (overrides counselor.model)")
    chat.add_argument("--message", help="send one message, print the reply and exit")
    chat.add_argument("--demo", action="store_true", help="run a short scripted exchange")
    chat.add_argument("--show-reasoning", action="store_true", help="also print the counselor's reasoning")


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("evaluate", help="interactive SR/AT evaluation plus reference quality")
    _add_config_args(evaluate)
    evaluate.add_argument(
        "--policy", default="base", help="'base' (the config's counselor) or a model folder"
    )
    evaluate.add_argument(
        "--scenarios", help="builtin | esconv:PATH[#split] | extes:PATH[#split] (default: data.scenarios)"
    )
    evaluate.add_argument("--limit", type=int, default=5, help="number of scenarios (episodes)")
    evaluate.add_argument("--references", help="dialogues for BLEU/ROUGE/Distinct (default: the scenarios)")
    evaluate.add_argument("--out", help="write the JSON report here (default: runs/<name>/evaluate.json)")


def _add_judge_check(commands: argparse._SubParsersAction) -> None:
    check = commands.add_parser("judge-check", help="measure the judge against ESConv survey outcomes")
    _add_config_args(check)
    check.add_argument(
        "--data", required=True, action="append", help="esconv:PATH[#split] with seeker surveys (repeatable)"
    )
    check.add_argument(
        "--no-balance",
        dest="balance",
        action="store_false",
        help="take dialogues in order, not per survey class",
    )
    check.add_argument("--limit", type=int, default=50, help="number of dialogues")
    check.add_argument("--out", help="write the JSON report here (default: runs/<name>/judge-check.json)")


def _add_collect(commands: argparse._SubParsersAction) -> None:
    collect = commands.add_parser("collect", help="phase 1 on Ray: candidate groups with future rewards")
    _add_config_args(collect)
    collect.add_argument(
        "--data", help="contexts from builtin | esconv:PATH[#split] (default: data.scenarios)"
    )
    collect.add_argument("--limit", type=int, default=8, help="number of contexts")


def _add_run(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="the online loop: actors, store, learner on Ray Train")
    _add_config_args(run)
    run.add_argument(
        "--resume", metavar="RUN_DIR", help="continue runs/<name> (its saved config, store, checkpoint)"
    )


def _add_serve(commands: argparse._SubParsersAction) -> None:
    serving = commands.add_parser("serve", help="the OpenAI-compatible counselor endpoint and the dashboard")
    _add_config_args(serving)
    serving.add_argument(
        "--checkpoint", help="serve runs/<name>/weights/v<N>, a model folder or a learner checkpoint"
    )
    serving.add_argument(
        "--follow", action="store_true", help="switch to each version the run's learner publishes"
    )


def _add_train(commands: argparse._SubParsersAction) -> None:
    trainer = commands.add_parser(
        "train", help="offline phases: reward model, SFT of the counselor or the seeker, GRPO on the store"
    )
    _add_config_args(trainer)
    trainer.add_argument(
        "--stage",
        required=True,
        choices=["rm", "rm-report", "sft", "seeker", "heldout", "policy"],
        help="what to train: rm-report writes the held-out report of a reward model trained with"
        " --defer-report; heldout computes the run's version-0 held-out point ahead of it",
    )
    trainer.add_argument(
        "--out",
        help="output folder (default runs/<name>/reward_model, runs/<name>/sft, runs/<name>/seeker_sft)",
    )
    trainer.add_argument(
        "--defer-report",
        action="store_true",
        help="--stage rm: save the model without its held-out report (--stage rm-report writes it)",
    )
    trainer.add_argument(
        "--beside",
        type=int,
        metavar="PID",
        help="--stage heldout: the process training beside it; decode on every core once it exits,"
        " and score with the reward model it leaves",
    )


def _add_report(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report", help="docs/results.md from a run: base model vs SFT vs RLFF on held-out contexts"
    )
    report.add_argument("run_dir", metavar="RUN_DIR", help="runs/<name> of a finished `rlff run`")
    report.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override of the run's config, e.g. --set evaluation.heldout=esconv:PATH#valid",
    )
    report.add_argument("--out", help="write the Markdown here (default: docs/results.md)")
    report.add_argument(
        "--base", help="base model spec to compare (default: the model the run's counselor started from)"
    )
    report.add_argument(
        "--interactive", nargs="+", default=[], metavar="FILE", help="`rlff evaluate` report JSONs for SR/AT"
    )
    report.add_argument(
        "--episodes", type=int, default=0, help="also run N interactive episodes for base and final"
    )


def _add_crisis_probe(commands: argparse._SubParsersAction) -> None:
    probe = commands.add_parser("crisis-probe", help="build or measure the crisis probe (docs/safety.md)")
    probe.add_argument(
        "crisis_probe_command", choices=["train", "measure"], metavar="ACTION", help="train | measure"
    )
    probe.add_argument(
        "files", nargs="*", metavar="FILE", help="labelled JSON-lines files (train: default the shipped set)"
    )
    probe.add_argument(
        "--out", help="the probe file written (train) or read (measure); default the shipped one"
    )
    probe.add_argument(
        "--max-false-alarm",
        type=float,
        default=0.02,
        help="train: the share of ordinary messages the probe may flag in cross-validation (default 0.02)",
    )


def _add_prepare(commands: argparse._SubParsersAction) -> None:
    prepare = commands.add_parser("prepare", help="cache the embedded model as safetensors (once)")
    prepare.add_argument("--model", default="smollm2-135m", help="model spec to prepare")


def _add_data(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="inspect datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    stats = data_commands.add_parser("stats", help="dialogue counts per split, emotions, problems")
    stats.add_argument("spec", help="builtin | esconv:PATH[#split] | extes:PATH[#split]")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")


def build_parser() -> argparse.ArgumentParser:
    """The `rlff` parser: one subcommand per `_add_*` function, listed in `--help` in this order."""
    parser = argparse.ArgumentParser(prog="rlff", description="RLFF-ESC: train and serve ESC counselors.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_config,
        _add_chat,
        _add_evaluate,
        _add_judge_check,
        _add_collect,
        _add_run,
        _add_serve,
        _add_train,
        _add_report,
        _add_crisis_probe,
        _add_prepare,
        _add_data,
    ):
        add(commands)
    return parser


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

    config = resume_config(args.resume, args.overrides) if args.resume else _config(args)
    if args.resume and args.config:
        raise UsageError("give either --config or --resume, not both (a resumed run keeps its config)")
    return run_online(config, resume=bool(args.resume))


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `rlff report` writes it into its output
    action = getattr(args, f"{args.command}_command", None)
    handler = HANDLERS[(args.command, action)]
    from esc.backends.base import BackendError
    from esc.data import DataError
    from esc.models import ModelNotFoundError

    try:
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
