"""The `rlff` command line's parser: one `_add_*` function a subcommand, `build_parser` puts them
together; jobs/cli.py runs what it parses."""

from __future__ import annotations

import argparse


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
    one_shot = chat.add_mutually_exclusive_group()
    one_shot.add_argument("--message", help="send one message, print the reply and exit")
    one_shot.add_argument("--demo", action="store_true", help="run a short scripted exchange")
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
