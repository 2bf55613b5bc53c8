"""`rlff judge-check`: measure a judge against ESConv seekers' own survey outcomes.

For each real dialogue with a survey, the configured judge reads the whole conversation and says how
the seeker feels at the end compared with the start. The seekers' own emotion intensity before and
after (1-5, lower is better) gives the truth: final < initial is 'better', equal is 'same', final >
initial is 'worse'; the judge's 'solved' counts as 'better'. A judge sample that names no verdict
(sample scorer) counts as 'same' with reward 0.0, and is reported as unparsed.

Every ESConv split dialogue with a survey improved (final < initial); the dialogues that did not are
in FailedESConv.json. So a check that can tell a good judge from a constant one combines both
(`--data esconv:PATH#valid --data esconv:PATH/FailedESConv.json`); by default dialogues are taken
round-robin across the three survey classes so each class is represented as far as the data allows.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from esc.backends import BackendPool
from esc.config import RunConfig
from esc.data import load_dialogues
from esc.metrics import judge_agreement, survey_verdict
from esc.roles import Judge
from esc.schemas import Dialogue
from jobs import UsageError
from jobs.progress import gather_with_progress, writable_output, write_report


def pick_dialogues(dialogues: list[Dialogue], limit: int, balance: bool) -> list[Dialogue]:
    """Up to `limit` surveyed dialogues; with `balance`, round-robin over the survey classes."""
    surveyed = [d for d in dialogues if d.survey and d.turns]
    if not balance:
        return surveyed[:limit]
    by_class: dict[str, list[Dialogue]] = {}
    for d in surveyed:
        by_class.setdefault(survey_verdict(d.survey.initial_intensity, d.survey.final_intensity), []).append(
            d
        )
    picked: list[Dialogue] = []
    queues = [list(reversed(q)) for q in by_class.values()]
    while len(picked) < limit and any(queues):
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop())
    return picked


async def judge_check(
    config: RunConfig, data_specs: list[str], limit: int, balance: bool = True
) -> dict[str, Any]:
    pool_of_dialogues = [d for spec in data_specs for d in load_dialogues(spec, seed=config.seed)]
    dialogues = pick_dialogues(pool_of_dialogues, limit, balance)
    if not dialogues:
        raise UsageError(f"{', '.join(data_specs)} has no dialogues with a seeker survey; use ESConv data")
    pool = BackendPool(seed=config.seed)
    judge = Judge(pool.get(config.judge), config.judge)
    started = time.perf_counter()
    ratings = await gather_with_progress(
        [judge.rate(d.scenario, list(d.turns), seed=config.seed + i) for i, d in enumerate(dialogues)],
        "judging",
    )
    await pool.close()
    verdicts = [r.verdict or "same" for r in ratings]
    report = judge_agreement(
        verdicts,
        [r.reward for r in ratings],
        [(d.survey.initial_intensity, d.survey.final_intensity) for d in dialogues],
    )
    classes = {survey_verdict(d.survey.initial_intensity, d.survey.final_intensity) for d in dialogues}
    if len(classes) == 1:
        report["warnings"].append(
            f"every survey outcome here is '{classes.pop()}', so accuracy cannot tell a good judge from a"
            " constant one; add dialogues that did not improve (e.g. FailedESConv.json) or read the Spearman"
            " figure"
        )
    report.update(
        data=data_specs,
        balanced=balance,
        judge={"backend": config.judge.backend, "model": config.judge.model, "scorer": config.judge.scorer},
        unparsed=sum(r.verdict is None for r in ratings),
        seconds=round(time.perf_counter() - started, 1),
        items=[
            {
                "id": d.id,
                "survey": [d.survey.initial_intensity, d.survey.final_intensity],
                "verdict": r.verdict,
                "reward": r.reward,
                "probs": r.probs,
            }
            for d, r in zip(dialogues, ratings)
        ],
    )
    return report


def print_judge_report(report: dict[str, Any]) -> None:
    judge = report["judge"]
    print(f"judge {judge['model']} ({judge['backend']}, scorer {judge['scorer']}) on {report['n']} dialogues")
    print(
        f"accuracy            {report['accuracy']:.3f}  (majority baseline {report['majority_baseline']:.3f},"
        f" chance {report['chance_accuracy']:.3f})"
    )
    rho = report["spearman"]
    spearman = "n/a" if rho is None else f"{rho:.3f} (p={report['spearman_p']:.3g})"
    print(f"spearman            {spearman}")
    print(
        "verdicts            " + "  ".join(f"{k} {v:.2f}" for k, v in report["verdict_distribution"].items())
    )
    print(
        "survey outcomes     " + "  ".join(f"{k} {v:.2f}" for k, v in report["survey_distribution"].items())
    )
    for warning in report["warnings"]:
        print(f"WARNING: {warning}")


def run_judge_check(
    config: RunConfig, data_specs: list[str], limit: int, out: str | None, balance: bool
) -> int:
    """CLI body: judge, print, write JSON (to --out, else to runs/<name>/judge-check.json)."""
    if limit <= 0:
        raise UsageError("--limit must be a positive number of dialogues")
    out_path = writable_output(out or config.run_dir() / "judge-check.json")
    config.write_resolved()
    report = asyncio.run(judge_check(config, data_specs, limit, balance))
    print_judge_report(report)
    write_report(out_path, report)
    return 0
