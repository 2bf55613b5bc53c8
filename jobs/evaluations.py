"""Periodic evaluations of `rlff run` (`evaluation.every`): SR/AT of the served policy while it
learns, on the first rollout worker. The driver (`jobs/run.py`) starts and finishes them."""

from __future__ import annotations

import sys

import ray

from esc.config import RunConfig
from esc.data import load_dialogues
from jobs.driver import error_line, get
from jobs.launcher import READY_TIMEOUT_S, end_evaluation_roles, start_evaluation_roles


class Evaluations:
    """Periodic evaluations (`evaluation.every`): at version 0 and every N versions after, one runs on
    the first rollout worker with the run's role actors; its SR/AT go to the metrics as source
    'evaluate'. Like the held-out points: `first()` before the learner starts, `maybe_start()` from the
    driver loop (not at the learner's last version, nor once the run is stopping), `last()` after the
    learner. One at a time. When no candidate gets a simulated future (`ActorSystem.evaluation_only`),
    each evaluation starts its own seeker and judge and ends their processes when it is done."""

    def __init__(self, config: RunConfig, system):
        self.config, self.system, self.next, self.ref = config, system, 0, None
        self.roles: dict[str, list] = {}  # the evaluation's own seeker and judge, when it has them
        spec = config.evaluation.scenarios or config.data.scenarios
        picked = load_dialogues(spec, seed=config.seed)[: config.evaluation.episodes]
        self.scenarios = [d.scenario.model_dump() for d in picked] if config.evaluation.every else []

    def refs(self) -> list:
        return [self.ref] if self.ref is not None else []

    def first(self) -> None:
        """The evaluation of the version the run starts from, to its end."""
        self.maybe_start()
        self._wait()

    def last(self) -> None:
        """After the learner: the evaluation of its last version (`learner.max_updates`), when one is due."""
        self.maybe_start(final=True)
        self._wait()

    def _wait(self) -> None:
        if self.ref is not None:
            ray.wait([self.ref], timeout=READY_TIMEOUT_S)
            self.finish(self.ref)

    def maybe_start(self, final: bool = False) -> None:
        """Start the evaluation due at the current version, if any. The learner's last version's only
        with `final` (`last`), so that it does not run beside the learner's last update; with `final`,
        only that one (a run stopped early gets none)."""
        if not self.scenarios or self.ref is not None:
            return
        version = get(self.system.gate.state.remote())["version"]
        if version >= self.next and (version >= self.config.learner.max_updates) == final:
            self.roles = start_evaluation_roles(self.config) if self.system.evaluation_only else {}
            self.ref = self.system.workers[0].evaluate.remote(self.scenarios, self.config.seed, **self.roles)
            self.next = version + self.config.evaluation.every

    def finish(self, ref) -> bool:
        """Record the evaluation `ref` (if it is the one running); False for any other ref. One that
        failed, or had not finished when `first`/`last` stopped waiting, is reported in one line and left
        out: it measures the run, and the run goes on without it."""
        if ref is not self.ref:
            return False
        self.ref = None
        try:
            result = get(ref)
        except ray.exceptions.RayError as error:
            print(
                f"error: a periodic evaluation failed or did not finish ({error_line(error)}); the run goes"
                " on without it",
                file=sys.stderr,
                flush=True,
            )
            return True
        finally:
            end_evaluation_roles(self.roles)
            self.roles = {}
        metrics = {k: result[k] for k in ("sr", "at", "eval_format_rate")}
        first, last = result["policy_version"], result["last_version"]
        metrics |= {"weights_version": first, "eval_last_version": last}
        self.system.hub.record.remote("evaluate", metrics)
        mixed = f" (its replies came from versions {first}-{last})" if last > first else ""
        print(
            f"evaluation at version {first}: SR {result['sr']:.2f}, AT {result['at']:.2f},"
            f" format {result['eval_format_rate']:.2f}{mixed}",
            flush=True,
        )
        return True
