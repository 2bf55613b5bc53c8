"""`rlff report runs/<name>`: docs/results.md from a run folder: base model vs SFT vs RLFF.

SFT (the run's version 0: the cold start once the run has one) and RLFF (its final version) come from
the run's held-out learning report (`learning.json`, `heldout.jsonl`); the raw base model (the model
the run's SFT started from, else its `counselor.model`, or `--base`) answers the same held-out contexts
with the same seeds here, in process without Ray, and is scored the same way (`jobs/heldout.py`). The
interactive SR/AT table comes from `rlff evaluate` report files (`--interactive`) or from small
evaluations run here (`--episodes`).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from esc.backends import BackendPool
from esc.config import ConfigError, RunConfig, load_config
from esc.learning import METRIC_KEYS, point_estimates, pooled_distinct2
from esc.roles import Counselor, CounselorOutput
from esc.schemas import Context
from esc.stats import Estimate, mean_ci, paired_difference_ci
from jobs import UsageError
from jobs.heldout import Scorer, heldout_contexts, read_points, sample_seed, samples_per_context
from jobs.progress import writable_output

JUDGE_CAVEAT = (
    "SR/AT here are judged by the run's judge model. `docs/judges.md` measured the embedded judge"
    ' (SmolLM2-135M) against ESConv seekers\' own surveys: it says "better" about every conversation'
    " (accuracy 0.333 on a balanced set, chance level; Spearman rho 0.013, p = 0.92), so with it SR/AT"
    " measure the plumbing, not the counselor. Use a large judge before reading anything into them."
)


async def base_replies(
    config: RunConfig, contexts: list[Context], pool: BackendPool | None = None
) -> list[CounselorOutput]:
    """The config's counselor, in process, on every (context, sample) with the held-out seeds; each
    reply as the counselor actor returns it (version 0). On `pool`'s backends if given (left open)."""
    own = pool is None
    pool = BackendPool(seed=config.seed) if pool is None else pool
    counselor = Counselor.from_config(config, pool)
    g = samples_per_context(config)
    outputs = await asyncio.gather(
        *(
            counselor.respond(list(c.turns), seed=sample_seed(config, i, j))
            for i, c in enumerate(contexts)
            for j in range(g)
        )
    )
    if own:
        await pool.close()
    return [replace(o, weights_version=0) for o in outputs]


def _cell(est: Estimate | dict[str, float], fmt: str, sign: bool = False) -> str:
    e = est if isinstance(est, Estimate) else Estimate(**est)
    spec = ("+" if sign else "") + fmt
    mark = " *" if sign and e.excludes_zero() else ""
    return f"{e.value:{spec}} [{e.lo:{spec}}, {e.hi:{spec}}]{mark}"


def heldout_table(columns: dict[str, list[dict]], seed: int) -> list[str]:
    """Markdown: each metric per policy (mean [95% CI] over contexts) and RLFF minus each other policy
    (paired bootstrap over contexts). `columns`: label -> context rows in the same context order; the
    last column is RLFF."""
    labels = list(columns)
    final = labels[-1]
    estimates = {label: point_estimates(rows, seed) for label, rows in columns.items()}
    diffs = labels[:-1]
    head = ["metric", *labels, *(f"{final} - {d}" for d in diffs)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, (_, fmt) in METRIC_KEYS.items():
        cells = [_cell(estimates[label][key], fmt) for label in labels]
        for d in diffs:
            after, before = [r[key] for r in columns[final]], [r[key] for r in columns[d]]
            cells.append(_cell(paired_difference_ci(after, before, seed=seed), fmt, sign=True))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    pooled = [f"{pooled_distinct2(columns[label]):.3f}" for label in labels]
    lines.append("| distinct2, all answers pooled (no CI) | " + " | ".join(pooled) + " |" + " |" * len(diffs))
    return lines


def interactive_rows(reports: list[tuple[str, dict[str, Any]]], seed: int) -> list[str]:
    """Markdown rows of SR/AT (bootstrap CI over episodes where the report lists them) per report."""
    lines = ["| policy | episodes | SR | AT | format compliance |", "|---|---|---|---|---|"]
    for label, report in reports:
        episodes = report.get("episodes") or []
        max_turns = report.get("config", {}).get("episode", {}).get("max_turns")
        if episodes and max_turns:
            sr = _cell(mean_ci([float(e["success"]) for e in episodes], seed), ".2f")
            turns = [e["turns"] if e["success"] else max_turns for e in episodes]
            at = _cell(mean_ci(turns, seed), ".2f")
        else:
            sr, at = f"{report['sr']:.2f}", f"{report['at']:.2f}"
        rate = report.get("format_rate")
        lines.append(
            f"| {label} | {report['n']} | {sr} | {at} | {'n/a' if rate is None else f'{rate:.3f}'} |"
        )
    return lines


def _evaluate(config: RunConfig, policy: str, episodes: int) -> dict[str, Any]:
    from jobs.evaluate import evaluate

    if policy != "base":
        config = config.replace("counselor", model=str(policy))
    spec = config.evaluation.heldout or config.data.scenarios
    return asyncio.run(evaluate(config, spec, episodes, []))


def _load_run(run: Path, overrides: list[str]) -> tuple[RunConfig, dict[str, Any], list[dict], list[dict]]:
    """(the run's config with `overrides`, its learning.json, the held-out rows of its SFT version and
    of its final version). Raises UsageError when a file is missing or lacks those versions."""
    if not (run / "config.json").is_file():
        raise UsageError(f"{run} is not a run folder (no config.json); give runs/<name>")
    try:
        config = load_config(run / "config.json", overrides)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    learning_path = run / "learning.json"
    if not learning_path.is_file():
        raise UsageError(f"{run} has no learning.json; run `rlff run` with evaluation.heldout set first")
    if not (run / "reward_model" / "reward_model.json").is_file():
        raise UsageError(f"{run} has no reward model (reward_model/) to score the base model's replies with")
    try:
        learning = json.loads(learning_path.read_text(encoding="utf-8"))
        versions = int(learning["base_version"]), int(learning["final_version"])
        points = read_points(run / "heldout.jsonl")
    except (ValueError, KeyError, TypeError) as error:
        raise UsageError(
            f"{run}'s learning.json or heldout.jsonl is not as `rlff run` writes it"
            f" ({type(error).__name__}: {error})"
        ) from None
    sft, final = points.get(versions[0]), points.get(versions[1])
    if not sft or not final:
        raise UsageError(f"{run / 'heldout.jsonl'} lacks the points learning.json names")
    return config, learning, sft, final


def _in_context_order(
    config: RunConfig, contexts: list[Context], sft: list[dict], final: list[dict]
) -> tuple[list[dict], list[dict]]:
    """`sft` and `final` rows sorted in the order of `contexts`, SFT rows of other contexts left out.
    Raises UsageError when a final row's context is not among `contexts` (evaluation.heldout changed)."""
    order = {c.id: k for k, c in enumerate(contexts)}
    if any(r["id"] not in order for r in final):
        raise UsageError(
            f"evaluation.heldout {config.evaluation.heldout!r} no longer gives the run's held-out contexts;"
            " point it at the same data with --set evaluation.heldout=SPEC"
        )
    sft = sorted((r for r in sft if r["id"] in order), key=lambda r: order[r["id"]])
    return sft, sorted(final, key=lambda r: order[r["id"]])


def _base_rows(
    run: Path,
    config: RunConfig,
    base_config: RunConfig,
    base_spec: str,
    contexts: list[Context],
    ids: list[str],
) -> list[dict]:
    """The base model (`base_config`'s counselor, `base_spec`) answers every context here, in process;
    its replies are scored like the run's and the rows of the contexts in `ids` are returned."""
    started = time.perf_counter()
    print(
        f"base model {base_spec}: {len(contexts)} contexts x {samples_per_context(config)} samples",
        flush=True,
    )
    replies = asyncio.run(base_replies(base_config, contexts))
    rows = [r for r in Scorer(config, run / "reward_model").rows(contexts, replies) if r["id"] in ids]
    print(f"base model answered and was scored in {time.perf_counter() - started:.0f} s", flush=True)
    return rows


def _interactive_episodes(
    run: Path, base_config: RunConfig, policies: dict[str, str], episodes: int
) -> list[tuple[str, dict[str, Any]]]:
    """(label, report) of `episodes` interactive episodes per policy (label -> model spec or folder);
    each report is also saved as interactive-<first word of the label>.json in the run folder."""
    reports = []
    for label, policy in policies.items():
        print(f"interactive evaluation of {label}: {episodes} episodes", flush=True)
        report = _evaluate(base_config, policy, episodes)
        (run / f"interactive-{label.split()[0]}.json").write_text(json.dumps(report, indent=2) + "\n")
        reports.append((label, report))
    return reports


def run_report(
    folder: str,
    overrides: list[str],
    out: str | None,
    base: str | None,
    interactive: list[str],
    episodes: int,
    command: str,
) -> int:
    """CLI body: see the module docstring. Writes `out` (default docs/results.md)."""
    run = Path(folder)
    config, learning, sft, final = _load_run(run, overrides)
    out_path = writable_output(out or "docs/results.md")
    reports = [(Path(p).stem, _read_report(p)) for p in interactive]  # before the base model's long pass
    base_spec = base or _base_model(run, config.counselor.model)
    base_config = config.replace("counselor", model=str(base_spec))
    contexts = heldout_contexts(base_config)
    sft, final = _in_context_order(config, contexts, sft, final)
    base_rows = _base_rows(run, config, base_config, base_spec, contexts, [r["id"] for r in final])
    columns = {
        f"base model ({base_spec})": base_rows,
        f"SFT cold start (v{learning['base_version']})": sft,
        f"RLFF final (v{learning['final_version']})": final,
    }
    if episodes:
        final_weights = config.weights_dir() / f"v{learning['final_version']}"
        policies = {f"base model ({base_spec})": base_spec, "RLFF final": str(final_weights)}
        reports += _interactive_episodes(run, base_config, policies, episodes)
    text = results_markdown(command, config, learning, columns, reports)
    out_path.write_text(text)
    print(f"wrote {out_path}")
    return 0


def _base_model(run: Path, counselor: str) -> str:
    """The model a run's counselor started from: with a cold start (the counselor is the run's SFT
    folder), the model that SFT fine-tuned; else the counselor itself."""
    sft = run / "sft" / "report.json"
    if sft.is_file() and Path(counselor).resolve() == sft.parent.resolve():
        return json.loads(sft.read_text()).get("base_model", counselor)
    return counselor


def _read_report(path: str) -> dict[str, Any]:
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"--interactive {path} is not a readable `rlff evaluate` report ({error})") from None
    if not {"n", "sr", "at"} <= set(report):
        raise UsageError(f"--interactive {path} is not an `rlff evaluate` report (no n/sr/at)")
    return report


def results_markdown(
    command: str,
    config: RunConfig,
    learning: dict[str, Any],
    columns: dict[str, list[dict]],
    reports: list[tuple[str, dict[str, Any]]],
) -> str:
    n, g = learning["contexts"], learning["samples"]
    lines = [
        "# Results: base model vs SFT cold start vs RLFF",
        "",
        f"Generated by `{command}` from `{config.run_dir()}`; do not edit by hand.",
        "",
        "## Held-out contexts",
        "",
        f"{n} held-out contexts from `{config.evaluation.heldout}` (one per dialogue; never trained on),"
        f" {g} sampled replies each, the same seeds for every policy. Each cell: mean over contexts"
        " (a context's G replies averaged first) [95% percentile-bootstrap CI over contexts]; the"
        " differences are paired over contexts, and * marks a CI that excludes 0. The SFT column is the"
        " run's version 0 (the base model when the run had no cold start); metrics are defined in"
        " `docs/evaluation.md`.",
        "",
        *heldout_table(columns, config.seed),
        "",
        "## Interactive (PPDPP protocol)",
        "",
    ]
    if reports:
        lines += [*interactive_rows(reports, config.seed), ""]
    else:
        lines += ["Not measured: give `--interactive FILE...` or `--episodes N`.", ""]
    lines += [f"**Caveat.** {JUDGE_CAVEAT}", ""]
    return "\n".join(lines)
