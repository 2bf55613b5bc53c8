"""Role consistency of the simulated help-seeker on held-out ESConv scenarios (valid split): the old
prompt-only simulator against the grounded one (real seekers' turns as style examples plus resampling
of out-of-role turns) and, with --seeker-sft, the fine-tuned one (`rlff train --stage seeker`; no style
examples, the same resampling), measured with the role checker of `esc.seeker_check` fitted on the train split
(the one the simulator resamples against) and with an independent one fitted on the test split, next
to the same measures on real held-out seeker and supporter turns. Each conversation: the seeker
speaks `--turns` times, the counselor model answers in plain mode in between. All conversations run
concurrently, so the hf backend batches them. The last printed line is the JSON report (also
written to --out).

    .venv/bin/python bench/seeker_role.py [--esconv PATH] [--scenarios 30] [--turns 3] [--out FILE]
        [--seeker-sft runs/local/seeker_sft]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from esc.backends import BackendPool
from esc.config import SafetyConfig
from esc.config_roles import CounselorConfig, SeekerConfig
from esc.data import load_dialogues
from esc.roles import Counselor, Seeker, sampling
from esc.schemas import Dialogue, Scenario, Turn
from esc.seeker_check import LABELS, RoleChecker, SeekerGrounding, accuracy
from esc.stats import mean_ci

ROOT = Path(__file__).resolve().parents[1]


def old_messages(scenario: Scenario, history: list[Turn]) -> list[dict[str, str]]:
    """The seeker prompt before this benchmark's change (esc/prompts.py until 2026-12-02), kept here
    as the baseline."""
    system = (
        f"You are a person seeking emotional support, talking to a counselor. You feel "
        f"{scenario.emotion_type} because of {scenario.problem_type}. Your situation: {scenario.situation} "
        "Speak as yourself in the first person, in 1-2 short sentences. Never give advice or act as "
        "the counselor."
    )
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": "Hi, I'm here to listen. What would you like to talk about?"},
    ]
    for turn in history:
        role = "assistant" if turn.role == "seeker" else "user"
        if messages[-1]["role"] == role:
            messages[-1] = {"role": role, "content": messages[-1]["content"] + "\n" + turn.text}
        else:
            messages.append({"role": role, "content": turn.text})
    return messages


class OldSeeker(Seeker):
    """The simulator as it was: the old prompt, no examples, no resampling."""

    async def speak(self, scenario: Scenario, history: list[Turn], seed: int | None = None) -> Turn:
        params = sampling(self.config, seed, stop=("\n\n", "Counselor:"))
        generation = await self.backend.generate(old_messages(scenario, history), params)
        self.generations += 1
        self.turns += 1
        return Turn(role="seeker", text=generation.text.strip() or scenario.situation)


async def converse(seeker: Seeker, counselor: Counselor, scenario: Scenario, turns: int, seed: int, bar):
    """`turns` seeker turns with counselor replies between them; returns the seeker's texts."""
    history: list[Turn] = []
    for k in range(turns):
        history.append(await seeker.speak(scenario, history, seed=seed + 100 * k))
        bar.update(1)
        if k + 1 < turns:
            history.append((await counselor.respond(history, seed=seed + 100 * k + 1)).turn)
    return [t.text for t in history if t.role == "seeker"]


def share_ci(per_conversation: list[list[bool]]) -> dict[str, float]:
    """Share in role with a bootstrap CI over conversations (each contributes its own share)."""
    return mean_ci([sum(flags) / len(flags) for flags in per_conversation if flags]).as_dict()


def real_turns(dialogues: list[Dialogue], checker: RoleChecker) -> dict[str, dict[str, float]]:
    """Share of real held-out turns read as a seeker's, per speaker, CI over dialogues."""
    return {
        label: share_ci([[checker.in_role(t.text) for t in d.turns if t.role == label] for d in dialogues])
        for label in LABELS
    }


async def simulate(
    args, grounding: SeekerGrounding, independent: RoleChecker, scenarios: list[Scenario]
) -> dict:
    seeker_config = SeekerConfig(max_batch_size=args.batch, max_new_tokens=args.seeker_tokens)
    counselor_config = CounselorConfig(reasoning=False, max_new_tokens=args.counselor_tokens)
    pool = BackendPool(seed=0)
    backend = pool.get(seeker_config)
    # the safety check is not measured here; its crisis reply would stand in for counselor turns
    counselor = Counselor(backend, counselor_config, SafetyConfig(enabled=False))
    seekers = {
        "old": OldSeeker(backend, seeker_config),
        "prompt_examples": Seeker(backend, seeker_config.model_copy(update={"max_resamples": 0}), grounding),
        "grounded": Seeker(backend, seeker_config, grounding),
    }
    if args.seeker_sft:  # the fine-tuned simulator as configs/local.yaml runs it: no style examples
        tuned = seeker_config.model_copy(
            update={"model": args.seeker_sft, "num_examples": 0, "max_history_turns": args.sft_history}
        )
        seekers["sft"] = Seeker(pool.get(tuned), tuned, grounding)
        args.conditions.append("sft")
    seekers = {name: s for name, s in seekers.items() if name in args.conditions}
    started = time.perf_counter()
    with tqdm(total=len(seekers) * len(scenarios) * args.turns, desc="seeker turns", file=sys.stderr) as bar:
        jobs = [
            converse(seeker, counselor, scenario, args.turns, seed=1000 * i, bar=bar)
            for seeker in seekers.values()
            for i, scenario in enumerate(scenarios)
        ]
        texts = await asyncio.gather(*jobs)
    seconds = time.perf_counter() - started
    await pool.close()
    out, n = {}, len(scenarios)
    for j, (name, seeker) in enumerate(seekers.items()):
        conversations = texts[j * n : (j + 1) * n]
        flags = [[grounding.checker.in_role(t) for t in c] for c in conversations]
        out[name] = {
            "in_role": share_ci(flags),
            "in_role_independent": share_ci([[independent.in_role(t) for t in c] for c in conversations]),
            "turns": seeker.turns,
            "generations": seeker.generations,
            "extra_generations_per_turn": round(seeker.generations / seeker.turns - 1, 3),
            "first_try_in_role": round(seeker.first_in_role / seeker.turns, 3) if name != "old" else None,
            "examples": [c[:2] for c in conversations[:3]],
        }
    return {"conditions": out, "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--esconv", default=str(ROOT.parent / "shared" / "data" / "esconv"))
    parser.add_argument("--scenarios", type=int, default=30)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--batch", type=int, default=24, help="hf backend batch size")
    parser.add_argument("--seeker-tokens", type=int, default=40)
    parser.add_argument("--counselor-tokens", type=int, default=32)
    parser.add_argument("--conditions", default="old,grounded")
    parser.add_argument(
        "--seeker-sft",
        help="also the fine-tuned simulator (`rlff train --stage seeker`), e.g. runs/local/seeker_sft",
    )
    parser.add_argument("--sft-history", type=int, default=4, help="its seeker.max_history_turns")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "seeker_role.json"))
    args = parser.parse_args()
    args.conditions = args.conditions.split(",")
    started = time.perf_counter()
    grounding = SeekerGrounding.from_spec(f"esconv:{args.esconv}#train")
    valid = load_dialogues(f"esconv:{args.esconv}#valid")
    # the simulator resamples against the train-split checker, so that checker's reading of its turns
    # is not independent; a second checker fitted on the test split has seen neither the simulator's
    # grounding (train) nor the scenarios (valid)
    independent = RoleChecker.fit(load_dialogues(f"esconv:{args.esconv}#test"))
    report = {
        "name": "seeker_role",
        "checker_accuracy_valid": accuracy(valid, grounding.checker),
        "independent_checker_accuracy_valid": accuracy(valid, independent),
        "real_valid_turns_in_role": real_turns(valid, grounding.checker),
        "real_valid_turns_in_role_independent": real_turns(valid, independent),
    }
    report |= asyncio.run(
        simulate(args, grounding, independent, [d.scenario for d in valid[: args.scenarios]])
    )
    report |= {
        "scenarios": args.scenarios,
        "seeker_turns_per_conversation": args.turns,
        "total_seconds": round(time.perf_counter() - started, 1),
        "cpus": os.cpu_count(),
    }

    def ci(r: dict) -> str:
        return f"{r['value']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"

    for name, c in report["conditions"].items():
        r, extra = c["in_role"], c["extra_generations_per_turn"]
        print(
            f"{name:<16} in role {ci(r)} (independent checker {ci(c['in_role_independent'])})"
            f"  n={r['n']} conversations, first try {c['first_try_in_role']}, extra generations/turn {extra}"
        )
    for label, r in report["real_valid_turns_in_role"].items():
        other = report["real_valid_turns_in_role_independent"][label]
        print(f"real {label:<11} read as seeker {ci(r)} (independent {ci(other)})  n={r['n']} dialogues")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
