"""`rlff evaluate`: interactive PPDPP evaluation (SR, AT, success curve, format rate) plus
reference-based quality (BLEU-1/2/4, ROUGE-L, Distinct-1/2) on real counselor replies."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from esc.backends import BackendPool
from esc.config import RunConfig
from esc.contexts import dialogue_context
from esc.data import load_dialogues, parse_spec
from esc.episode import Episode, Roles, run_episode
from esc.metrics import interactive_summary, quality_scores
from esc.schemas import Dialogue
from jobs import UsageError
from jobs.progress import gather_with_progress, writable_output, write_report


async def evaluate(
    config: RunConfig, scenario_spec: str, limit: int, references: list[Dialogue]
) -> dict[str, Any]:
    """Run the evaluation and return the JSON-ready report (see `rlff evaluate --help`)."""
    dialogues = load_dialogues(scenario_spec, seed=config.seed)[:limit]
    if not dialogues:
        raise UsageError(f"no scenarios in {scenario_spec}")
    pool = BackendPool(seed=config.seed)
    roles = Roles.from_config(config, pool)
    started = time.perf_counter()
    max_turns = config.episode.max_turns
    with tqdm(total=len(dialogues) * max_turns, desc="counselor turns", file=sys.stderr) as bar:
        episodes: list[Episode] = await asyncio.gather(
            *(
                run_episode(
                    d.scenario, roles, config.episode, seed=config.seed + i, on_turn=lambda: bar.update(1)
                )
                for i, d in enumerate(dialogues)
            )
        )
        bar.update(bar.total - bar.n)  # turns an early success did not need
    contexts = [c for c in (dialogue_context(d, config.seed) for d in references) if c.reference is not None]
    replies = await gather_with_progress(
        [roles.counselor.respond(list(c.turns), seed=config.seed + i) for i, c in enumerate(contexts)],
        "quality",
    )
    backends = pool.report()
    await pool.close()
    records = [r for e in episodes for r in e.records if not r.crisis]
    summary = interactive_summary([(e.success, e.turns) for e in episodes], config.episode.max_turns)
    tokens = sum(e.completion_tokens for e in episodes)
    seconds = time.perf_counter() - started
    return {
        **summary,
        "format_rate": sum(r.well_formed for r in records) / len(records) if records else None,
        "quality": quality_scores([r.turn.text for r in replies], [c.reference.text for c in contexts])
        if contexts
        else {},
        "quality_n": len(contexts),
        "scenarios": scenario_spec,
        "seconds": round(seconds, 1),
        "counselor_tokens_per_s": round(tokens / seconds, 2) if seconds else None,
        "backends": backends,
        "config": config.model_dump(),
        "episodes": [e.model_dump() for e in episodes],
        "quality_samples": [
            {"context_tail": c.turns[-1].text, "reference": c.reference.text, "reply": out.turn.text}
            for c, out in zip(contexts, replies)
        ][:20],
    }


def print_report(report: dict[str, Any]) -> None:
    print(f"episodes            {report['n']}")
    print(f"success rate (SR)   {report['sr']:.3f}")
    print(f"average turns (AT)  {report['at']:.2f}")
    print("success curve       " + " ".join(f"{v:.2f}" for v in report["success_curve"]))
    rate = report["format_rate"]
    print(f"format compliance   {'n/a' if rate is None else f'{rate:.3f}'}")
    for name, value in report["quality"].items():
        print(f"{name:<20}{value:.3f}")
    print(f"took {report['seconds']} s, counselor {report['counselor_tokens_per_s']} tokens/s")


def run_evaluate(
    config: RunConfig, policy: str, scenarios: str | None, limit: int, out: str | None, references: str | None
) -> int:
    """CLI body: resolve the policy, load references, evaluate, print, write JSON (to --out, else to
    runs/<name>/evaluate.json) next to the resolved config."""
    if limit <= 0:
        raise UsageError("--limit must be a positive number of scenarios")
    if policy != "base":
        if not (Path(policy) / "config.json").is_file():
            raise UsageError(
                f"policy {policy} is not a model folder with config.json; use 'base' or published weights"
                " (runs/<name>/weights/v<N>)"
            )
        config = config.replace("counselor", model=str(policy))
    out_path = writable_output(out or config.run_dir() / "evaluate.json")
    config.write_resolved()
    scenarios = scenarios or config.data.scenarios
    ref_spec = references or scenarios
    ref_dialogues = [d for d in load_dialogues(ref_spec, seed=config.seed) if d.turns][:limit]
    for spec in dict.fromkeys((scenarios, ref_spec)):  # once the data is known to be there
        parsed = parse_spec(spec)
        if parsed.kind != "builtin" and parsed.split in (None, "train"):
            print(
                f"note: {spec} includes the train split, which the policy may have trained on; for"
                " held-out figures pass --scenarios (and --references) with #valid or #test"
            )
    report = asyncio.run(evaluate(config, scenarios, limit, ref_dialogues))
    report["policy"] = policy
    report["references"] = ref_spec if ref_dialogues else None
    print_report(report)
    write_report(out_path, report)
    return 0
