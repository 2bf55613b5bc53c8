"""The counselor behind the endpoint: the same `esc.roles.Counselor.respond` the actors use, on an hf
backend, plus the weights it serves.

It always runs the counselor's model on the hf backend (on the GPU Ray gives the replica, if any),
whatever `counselor.backend` the rollouts use, because it swaps weights in place. Which weights: the
config's base policy (version 0); or a fixed `checkpoint` (a published version
folder `runs/<name>/weights/v<N>`, any model folder such as an SFT output, or a learner checkpoint
`runs/<name>/checkpoints/step-<N>`); or, with `follow`, whatever the learner publishes next under
`runs/<name>/weights` (polled every `serve.poll_s`). A new version is loaded between decode batches
(the backend's model lock), so a reply is written by one version and no request fails during a switch;
versions only move forward. Nothing here knows about Ray or HTTP.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from esc.backends import BackendPool
from esc.config import RunConfig
from esc.parsing import AnswerStream
from esc.roles import Counselor, CounselorOutput
from esc.weights import latest
from serve.api import Answer, ChatRequest, Piece, to_history

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """`--checkpoint` names something that is not a policy; the message says what to give."""


def resolve_checkpoint(config: RunConfig, path: str) -> tuple[RunConfig, int, Path | None]:
    """(config with the counselor model to load, the version it is, weights to load over that model).
    Published versions and learner checkpoints keep their version number; other model folders are 0."""
    folder = Path(path).expanduser().resolve()
    if (folder / "policy.safetensors").is_file() and (folder / "state.json").is_file():
        try:
            version = int(json.loads((folder / "state.json").read_text(encoding="utf-8"))["version"])
        except (ValueError, KeyError, TypeError) as error:  # not JSON, not UTF-8, no version number
            raise CheckpointError(
                f"{folder / 'state.json'} is not a learner checkpoint's state ({type(error).__name__})"
            ) from None
        return config, version, folder / "policy.safetensors"
    if _is_run_folder(folder):
        raise CheckpointError(
            f"{path} is a run folder, not a model; give runs/<name>/weights/v<N> or"
            " runs/<name>/checkpoints/step-<N>"
        )
    if (folder / "config.json").is_file():
        match = re.fullmatch(r"v(\d+)", folder.name)
        moved = config.replace("counselor", model=str(folder))
        return moved, int(match.group(1)) if match else 0, None
    raise CheckpointError(
        f"{path} is neither a model folder (config.json) nor a learner checkpoint (policy.safetensors);"
        " give runs/<name>/weights/v<N> or runs/<name>/checkpoints/step-<N>"
    )


def _is_run_folder(folder: Path) -> bool:
    """Whether `folder/config.json` is a run's config (runs/<name>) rather than a model's."""
    try:
        written = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(written, dict) and {"runs_dir", "learner"} <= written.keys()


class CounselorService:
    def __init__(self, config: RunConfig, checkpoint: str | None = None, follow: bool = False):
        version, weights = 0, None
        if checkpoint is not None:
            config, version, weights = resolve_checkpoint(config, checkpoint)
        # the endpoint runs hf, which swaps weights in place, and batches requests as `serve` says
        s = config.serve
        changes: dict[str, Any] = {"max_batch_size": s.max_batch_size, "max_wait_ms": s.batch_wait_ms}
        if config.counselor.backend != "hf":
            changes |= {"backend": "hf", "base_url": None}
        config = config.replace("counselor", **changes)
        self.config = config
        self.model_name = f"rlff-{config.name}"
        self.pool = BackendPool(seed=config.seed)
        self.counselor = Counselor.from_config(config, self.pool)
        self.backend = self.counselor.backend
        if weights is not None:
            self.backend.load_weights(version, str(weights))
        self.backend.weights_version = version
        self.weights_dir = config.weights_dir()
        if follow:
            self.load_newer()  # start on the newest version, then keep up with the learner
            self.start_following()

    @property
    def weights_version(self) -> int:
        return self.backend.weights_version

    def _newer(self) -> tuple[int, Path] | None:
        try:
            found = latest(self.weights_dir)
        except (OSError, ValueError):  # LATEST mid-replace or unreadable: look again next poll
            return None
        if found is None or found[0] <= self.weights_version or not found[1].is_file():
            return None
        return found

    def load_newer(self) -> int:
        """Load the newest published version if it is newer than the one served; returns the version."""
        found = self._newer()
        if found is not None:
            self.backend.load_weights(found[0], str(found[1]))
        return self.weights_version

    def start_following(self) -> threading.Thread:
        """Poll for published versions every `serve.poll_s` on a daemon thread, for the replica's life.
        Loading waits for the decode batch in progress (the backend's model lock), not the reverse."""

        def loop() -> None:
            while True:
                try:
                    before = self.weights_version
                    if self.load_newer() != before:
                        log.info("serving weights version %d", self.weights_version)
                except Exception as error:  # a run folder being deleted, a torn file: try again next poll
                    log.warning("could not load newer weights: %s", error)
                time.sleep(self.config.serve.poll_s)  # a poll interval, not a wait for another task

        thread = threading.Thread(target=loop, name="follow-weights", daemon=True)
        thread.start()
        return thread

    def _sampling(self, request: ChatRequest) -> dict[str, Any]:
        return {
            "seed": request.seed,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_new_tokens": request.token_budget(),
            "answer_stops": request.stops(),  # decoding ends at the first in the answer
        }

    async def answer(self, request: ChatRequest) -> Answer:
        """The counselor's reply to a validated request."""
        output = await self.counselor.respond(to_history(request.messages), **self._sampling(request))
        return self._answer(output, request)

    async def answer_stream(self, request: ChatRequest) -> AsyncIterator[Piece | Answer]:
        """The reply as it is written: `Piece`s of reasoning and answer text as soon as they are settled
        (`esc.parsing.AnswerStream`), then the `Answer`, equal to what `answer` returns for the same
        seed; the pieces of each kind add up to its text. Closing it early frees the decode row."""
        reasoning = self.config.counselor.reasoning
        pieces = AnswerStream(reasoning, request.stops())
        history = to_history(request.messages)
        async with aclosing(self.counselor.respond_stream(history, **self._sampling(request))) as items:
            async for item in items:
                if isinstance(item, CounselorOutput):
                    answer = self._answer(item, request)
                    if answer.crisis:  # comes whole, before any piece: sent whole, whatever `stop` says
                        pieces = AnswerStream(reasoning)
                    for piece in as_pieces(*pieces.finish(answer.reasoning, answer.text), answer.crisis):
                        yield piece
                    if pieces.diverged:
                        log.warning(
                            "a streamed answer differs from its parsed text; the stream kept the first"
                        )
                    yield answer
                    return
                for piece in as_pieces(*pieces.feed(item)):
                    yield piece

    def _answer(self, output: CounselorOutput, request: ChatRequest) -> Answer:
        generation = output.generation
        budget = request.token_budget()
        limit = budget or self.config.counselor.max_new_tokens
        version = output.weights_version
        # a crisis reply keeps its resources whatever the client's `stop` strings are
        text, stopped = cut_at_stops(output.turn.text, () if output.turn.crisis else request.stops())
        return Answer(
            text=text,
            reasoning=output.turn.reasoning,
            weights_version=self.weights_version if version is None else version,
            crisis=output.turn.crisis,
            well_formed=output.well_formed,
            prompt_tokens=generation.prompt_tokens if generation else 0,
            completion_tokens=output.completion_tokens,
            truncated=not stopped
            and generation is not None
            and generation.finish_reason == "length"
            and output.completion_tokens >= limit,
        )


def cut_at_stops(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to the first of `stops` (stripped), and whether one was found."""
    hits = [text.index(s) for s in stops if s in text]
    return (text[: min(hits)].strip(), True) if hits else (text, False)


def as_pieces(reasoning: str, answer: str, crisis: bool = False) -> list[Piece]:
    return [
        Piece(kind, text, crisis) for kind, text in (("reasoning", reasoning), ("content", answer)) if text
    ]
