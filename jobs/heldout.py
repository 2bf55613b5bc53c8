"""Held-out learning report of `rlff run`: the current policy on contexts it never trained on.

At the start of a run (version 0), at every `evaluation.every` versions and once the learner is done,
the run's counselor actors answer the same `evaluation.heldout_contexts` held-out contexts
(`evaluation.heldout`, e.g. the ESConv valid split; one per dialogue, the real reply that followed is
the reference) with G sampled replies each, every (context, sample) with the same seed at every point.
The driver scores the replies with the run's reward model (loaded for each point) and the learner's
reward composition (`learner.loop.grpo_reward`), records the point's estimates to the metrics hub (source
"heldout") and appends its per-context rows to `runs/<name>/heldout.jsonl`; at the end it writes
`runs/<name>/learning.json` (base vs final, `esc.learning`) and prints the table. The points at version
0 and at the end run alone (the learner has not loaded its models, or has finished, and so have the
rollouts; at version 0 Ray Train may still be starting its workers, which then wait at the gate),
so the counselors decode them on every core of their node (`Counselor.use_all_cores`); a point in
between keeps the threads their placement gives them. The version-0 point is cached
(`jobs.heldout_cache`): a run whose policy, reward model, contexts and settings are those of the last
run reuses its rows instead of generating them again. `rlff report` reuses
the contexts, seeds and scoring for the raw base model, in-process. It does not know how the learner
or the rollout workers work.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ray

from esc.config import RunConfig
from esc.contexts import dialogue_context
from esc.data import load_dialogues
from esc.learning import (
    context_row,
    hub_metrics,
    learning_report,
    learning_table,
    point_estimates,
    point_version,
)
from esc.metrics import rouge_l_each
from esc.parsing import parse_counselor
from esc.roles import CounselorOutput
from esc.safety import check_conversation
from esc.schemas import Context, Turn
from jobs import UsageError
from jobs.driver import get
from jobs.heldout_cache import BaseCache, samples_per_context

HELDOUT_TIMEOUT_S = 1800.0  # one point's replies; the counselors share the machine with the rollouts


def heldout_contexts(config: RunConfig) -> list[Context]:
    """The first `evaluation.heldout_contexts` dialogues of `evaluation.heldout` that give a context
    with a real reply and whose recent seeker turns the crisis lexicon does not flag (those get the fixed
    crisis reply, which measures nothing about the policy)."""
    spec = config.evaluation.heldout
    if spec is None:
        raise UsageError("no held-out contexts: set evaluation.heldout, e.g. esconv:PATH#valid")
    picked: list[Context] = []
    for dialogue in load_dialogues(spec, seed=config.seed):
        context = dialogue_context(dialogue, config.seed)
        seeker = [t for t in context.turns if t.role == "seeker"]
        if (
            context.reference is None
            or not seeker
            or check_conversation([t.text for t in seeker], config.safety.window).crisis
        ):
            continue
        picked.append(context)
        if len(picked) == config.evaluation.heldout_contexts:
            break
    if not picked:
        raise UsageError(f"evaluation.heldout {spec!r} holds no dialogue with real counselor replies")
    return picked


def sample_seed(config: RunConfig, context: int, sample: int) -> int:
    """The sampling seed of (context, sample): the same at every point, so points differ by weights only."""
    return config.seed + context * samples_per_context(config) + sample


class Scorer:
    """Scores held-out replies: the run's reward model, the learner's reward composition, ROUGE-L against
    the real reply, answer length in counselor tokens. The reward model is loaded for each `rows` call
    (about 2 s) and dropped after it, so that between points the driver holds no model while the
    learner and the actors run."""

    def __init__(self, config: RunConfig, reward_model: str | Path):
        from esc.models import load_tokenizer
        from learner.reward_model import RewardModel

        self.config, self.rm_dir = config, RewardModel.require_saved(reward_model)
        self.tokenizer = load_tokenizer(config.counselor.model)

    def scores(
        self, contexts: list[tuple[Turn, ...]], answers: list[str], intensities: list[int | None]
    ) -> list[float]:
        """The reward model's scores, from a copy loaded for this call and released after it."""
        from esc.memory import release_free_memory
        from learner.reward_model import RewardModel

        rm = RewardModel.load(self.rm_dir)
        try:
            return rm.score(contexts, answers, intensities)
        finally:
            del rm
            release_free_memory()

    def rows(self, contexts: list[Context], replies: list[CounselorOutput]) -> list[dict[str, Any]]:
        """Context rows (`esc.learning.context_row`) from `replies`: G per context, context-major, each
        a counselor actor's output (its `weights_version` set)."""
        from learner.loop import grpo_reward

        g = samples_per_context(self.config)
        if len(replies) != len(contexts) * g:
            raise ValueError(f"expected {len(contexts) * g} held-out replies, got {len(replies)}")
        owners = [c for c in contexts for _ in range(g)]
        answers = [r.turn.text for r in replies]
        raws = [r.raw for r in replies]
        intensities = [c.scenario.initial_intensity for c in owners]
        rm = self.scores([c.turns for c in owners], answers, intensities)
        lc = self.config.learner
        parts = grpo_reward(
            rm, raws, self.config.reward_model.weight, lc.format_weight, lc.safety_weight, lc.format_gate
        )
        rouge = rouge_l_each(answers, [c.reference.text for c in owners])
        samples = [
            {
                "answer": answer,
                "raw": raw,
                "version": int(reply.weights_version or 0),
                "well_formed": parse_counselor(raw).well_formed,
                "reward": float(parts.reward[k]),
                "rm_score": float(parts.rm_score[k]),
                "format_reward": float(parts.format_reward[k]),
                "unsafe": float(parts.unsafe[k]),
                "answer_tokens": len(self.tokenizer(answer, add_special_tokens=False)["input_ids"]),
                "rouge_l": rouge[k],
            }
            for k, (answer, raw, reply) in enumerate(zip(answers, raws, replies))
        ]
        return [context_row(c.id, samples[i * g : (i + 1) * g]) for i, c in enumerate(contexts)]


def read_points(path: Path) -> dict[int, list[dict[str, Any]]]:
    """Context rows of every point in a heldout.jsonl, by version (a version recorded twice: the last)."""
    points: dict[int, dict[str, dict[str, Any]]] = {}
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    if lines and not _parses(lines[-1]):
        lines.pop()  # a last line torn by a kill while it was written; a bad line elsewhere raises
    for line in lines:
        row = json.loads(line)
        rows = points.setdefault(int(row["point"]), {})
        if row.get("first"):
            rows.clear()
        rows[row["id"]] = row
    return {version: list(rows.values()) for version, rows in sorted(points.items())}


def _drop_torn_end(path: Path) -> None:
    """Cut a last line that a kill left without its newline, so the next line does not join it."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as out:
            out.truncate(data.rfind(b"\n") + 1)


def _parses(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def append_point(path: Path, version: int, rows: list[dict[str, Any]], single: bool) -> None:
    """Append one point's context rows to heldout.jsonl, one line each; `single`: every reply came
    from `version` (False: a version was published while the point generated)."""
    now = time.time()
    _drop_torn_end(path)
    with path.open("a") as out:
        for k, row in enumerate(rows):  # "first": a point recorded again replaces the earlier one
            line = {"point": version, "time": now, "single_version": single, "first": k == 0, **row}
            out.write(json.dumps(line) + "\n")


def background_due(version: int, next_point: int, final: int) -> bool:
    """Whether the learner's `version` calls for a point in the background: it reached the next point,
    and it is not the learner's last version (`learner.max_updates`): that one is `Heldout.last`'s, taken
    once the learner and the rollouts are done, on every core, not beside the run's last evaluation."""
    return next_point <= version < final


class Heldout:
    """The held-out points of one `rlff run`: `first(system)` before rollouts start, `maybe_start()`
    from the driver loop (in a background thread, so the learner keeps going), `last()` after the
    learner. Built before the actors start, so a bad `evaluation.heldout` fails at once."""

    def __init__(self, config: RunConfig, reward_model: str | Path, resume: bool = False):
        """`resume`: keep the points of the run's heldout.jsonl; a new run starts both files afresh."""
        self.config, self.system = config, None
        self.contexts = heldout_contexts(config)
        self.scorer = Scorer(config, reward_model)
        self.base = BaseCache(config, Path(reward_model))
        self.path = config.run_dir() / "heldout.jsonl"
        if not resume:
            self.path.unlink(missing_ok=True)
            (config.run_dir() / "learning.json").unlink(missing_ok=True)
        self.next: int | None = None
        self.thread: threading.Thread | None = None
        if len(self.contexts) < config.evaluation.heldout_contexts:
            print(
                f"note: evaluation.heldout holds {len(self.contexts)} usable contexts, fewer than the"
                f" {config.evaluation.heldout_contexts} asked for",
                file=sys.stderr,
            )

    def _serving(self) -> int:
        return get(self.system.counselor[0].weights_version.remote())

    def point(self, expect_version: int | None = None, alone: bool = False) -> tuple[int, list[dict]]:
        """Generate, score and record one point with whatever the counselors serve; returns its version
        and context rows. `alone`: nothing else runs meanwhile (before the learner starts, after it
        ends), so the counselors decode on every core of their node, not on the threads their placement
        gives them."""
        started = time.perf_counter()
        g, counselors = samples_per_context(self.config), self.system.counselor
        if alone:
            get([c.use_all_cores.remote(True) for c in counselors])
        try:
            refs = [
                counselors[i % len(counselors)].respond.remote(
                    list(c.turns), seed=sample_seed(self.config, i, j)
                )
                for i, c in enumerate(self.contexts)
                for j in range(g)
            ]  # all at once, so the backends batch them; a context's G samples share one prompt-prefix cache
            replies = ray.get(refs, timeout=HELDOUT_TIMEOUT_S)
        finally:
            if alone:
                get([c.use_all_cores.remote(False) for c in counselors])
        generated = time.perf_counter() - started
        rows = self.scorer.rows(self.contexts, replies)
        version, single = point_version(rows)
        if not single or (expect_version is not None and version != expect_version):
            seen = sorted({v for r in rows for v in r["versions"]})
            print(
                f"note: held-out point replies came from versions {seen}; recorded as version {version}",
                file=sys.stderr,
            )
        self._record(
            version, rows, single, f"in {time.perf_counter() - started:.0f} s (generation {generated:.0f} s)"
        )
        return version, rows

    def _record(self, version: int, rows: list[dict], single: bool, how: str) -> None:
        """Append a point's rows to heldout.jsonl, send its estimates to the hub and print its line."""
        append_point(self.path, version, rows, single)
        estimates = point_estimates(rows, seed=self.config.seed)
        self.system.hub.record.remote("heldout", hub_metrics(estimates, version))
        reward = estimates["reward"]
        print(
            f"held-out v{version}: {len(rows)} contexts x {samples_per_context(self.config)} samples {how};"
            f" reward {reward.value:.3f} [{reward.lo:.3f}, {reward.hi:.3f}], format"
            f" {estimates['format_rate'].value:.3f}",
            flush=True,
        )

    def first(self, system) -> None:
        """The point before any update (skipped when a resumed run already has one), on the run's
        actors `system` (its counselors and metrics hub)."""
        self.system = system
        serving = self._serving()
        if not read_points(self.path):
            cached = self.base.load([c.id for c in self.contexts]) if serving == 0 else None
            if cached is not None:
                self._record(0, cached, True, f"reused from {self.base.folder} (inputs unchanged)")
            else:
                version, rows = self.point(expect_version=serving, alone=True)
                if version == 0 and all(r["versions"] == [0] for r in rows):
                    self.base.save(rows)
        self.next = serving + self.config.evaluation.every

    def maybe_start(self) -> None:
        """Start a point in the background once the learner reached the next evaluation point."""
        every = self.config.evaluation.every
        if not every or self.next is None or (self.thread is not None and self.thread.is_alive()):
            return
        version = get(self.system.gate.state.remote())["version"]
        if not background_due(version, self.next, self.config.learner.max_updates):
            return
        self.next = version + every
        self.thread = threading.Thread(target=self._background, daemon=True)
        self.thread.start()

    def _background(self) -> None:
        try:
            self.point()
        except Exception as error:  # a failed point must not stop the run; the next one may succeed
            print(f"warning: held-out point failed: {type(error).__name__}: {error}", file=sys.stderr)

    def last(self) -> dict[str, Any]:
        """After the learner: the final point (unless one written by the served version alone is already
        recorded), then learning.json and the printed table. Returns the learning report."""
        if self.thread is not None:
            self.thread.join()
        serving = self._serving()
        if needs_final_point(self.path, serving):
            self.point(expect_version=serving, alone=True)
        return write_learning(self.config, self.path)


def needs_final_point(path: Path, version: int) -> bool:
    """Whether the final point at `version` must still be taken: none is recorded, or the one recorded
    mixed versions (a background point during which the learner published its last version; recorded
    again, it replaces that one)."""
    rows = read_points(path).get(version)
    return not rows or not all(row.get("single_version", True) for row in rows)


def write_learning(config: RunConfig, path: Path) -> dict[str, Any]:
    """learning.json from heldout.jsonl: the lowest version (base) against the highest (final)."""
    points = read_points(path)
    if not points:
        raise UsageError(f"{path} holds no held-out points")
    base, final = points[min(points)], points[max(points)]
    order = {row["id"]: k for k, row in enumerate(base)}
    final = sorted((r for r in final if r["id"] in order), key=lambda r: order[r["id"]])
    base = [r for r in base if r["id"] in {f["id"] for f in final}]
    report = learning_report(base, final, seed=config.seed)
    report["base_version"], report["final_version"] = min(points), max(points)  # as the points were recorded
    report["heldout"] = config.evaluation.heldout
    out = config.run_dir() / "learning.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(learning_table(report), flush=True)
    print(f"learning report: {out}", flush=True)
    return report
