"""Wire types of the counselor endpoint: OpenAI chat-completions requests and responses, and errors.

Pure pydantic, no Ray and no web framework, so every rule here is unit-tested in-process.
Requests are parsed strictly from the raw JSON bytes: a string where a number belongs is an error,
not a conversion. Fields of the OpenAI API this endpoint does not use are ignored, as OpenAI-compatible
servers do; fields it uses are checked, with limits from `ServeConfig`.

Extensions (documented in docs/serving.md):
- request `"rlff": {"reasoning": true}` also returns the counselor's `<think>` text, as
  `message.reasoning_content`; by default only the answer leaves the server.
- every response carries `"rlff": {"weights_version": int, "crisis": bool, "well_formed": bool}`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from esc.config import ServeConfig
from esc.schemas import Turn


class ApiError(Exception):
    """A request the endpoint refuses: HTTP `status` with an OpenAI-style error body."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": None}}


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class ChatMessage(_Lenient):
    role: Literal["system", "user", "assistant"]
    content: str


class RLFFOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reasoning: bool = False


class StreamOptions(_Lenient):
    include_usage: bool | None = False  # a last chunk with the reply's token counts (OpenAI's)


class ChatRequest(_Lenient):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    n: int | None = Field(1, ge=1, le=1)  # null, as in OpenAI's API, is the default
    stream: bool | None = False  # null: False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, ge=0, lt=2**31)
    stop: Any = None  # a string or a list of strings; checked by `parse_request` with one message
    rlff: RLFFOptions = RLFFOptions()

    def token_budget(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def stops(self) -> tuple[str, ...]:
        """The stop sequences: the answer ends before the first of them (like OpenAI's `stop`)."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


MAX_STOP_SEQUENCES = 4  # the OpenAI API's limit


def parse_request(raw: bytes, limits: ServeConfig) -> ChatRequest:
    """Validate a request body against the API and the configured limits, or raise ApiError (4xx)."""
    if len(raw) > limits.max_request_bytes:
        raise ApiError(413, f"request body is {len(raw)} bytes; the limit is {limits.max_request_bytes}")
    try:
        request = ChatRequest.model_validate_json(raw)
    except ValidationError as error:
        raise _as_api_error(error) from None
    if len(request.messages) > limits.max_messages:
        raise ApiError(
            400, f"{len(request.messages)} messages; the limit is {limits.max_messages}", "messages"
        )
    for i, message in enumerate(request.messages):
        if not message.content.strip():
            raise ApiError(400, f"messages[{i}].content is empty", f"messages.{i}.content")
        if len(message.content) > limits.max_message_chars:
            raise ApiError(
                400,
                f"messages[{i}].content has {len(message.content)} characters; the limit is"
                f" {limits.max_message_chars}",
                f"messages.{i}.content",
            )
    if request.stream_options is not None and not request.stream:
        raise ApiError(400, "stream_options is only allowed when stream is true", "stream_options")
    if request.messages[-1].role != "user":
        raise ApiError(400, "the last message must come from the user", "messages")
    stop = request.stop
    if not (
        stop is None
        or isinstance(stop, str)
        or (isinstance(stop, list) and all(isinstance(x, str) for x in stop))
    ):
        raise ApiError(400, f"stop must be a string or a list of up to {MAX_STOP_SEQUENCES} strings", "stop")
    stops = request.stops()
    if len(stops) > MAX_STOP_SEQUENCES:
        raise ApiError(400, f"stop has {len(stops)} sequences; the limit is {MAX_STOP_SEQUENCES}", "stop")
    if any(not stop for stop in stops):
        raise ApiError(400, "a stop sequence is empty", "stop")
    budget = request.token_budget()
    if budget is not None and budget > limits.max_tokens:
        raise ApiError(
            400, f"max_tokens {budget} is above this server's limit of {limits.max_tokens}", "max_tokens"
        )
    return request


def _as_api_error(error: ValidationError) -> ApiError:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    if first["type"] == "json_invalid":
        return ApiError(400, "the request body is not valid JSON")
    if first["type"] == "model_type" and not where:
        return ApiError(400, "the request body must be a JSON object")
    if first["type"] == "missing":
        return ApiError(400, f"'{where}' is required", where)
    return ApiError(400, f"invalid value for '{where}': {first['msg']}", where)


def to_history(messages: list[ChatMessage]) -> list[Turn]:
    """The conversation as counselor turns: user -> seeker, assistant -> counselor. System messages
    are dropped: the counselor keeps its own instructions."""
    roles = {"user": "seeker", "assistant": "counselor"}
    return [Turn(role=roles[m.role], text=m.content) for m in messages if m.role in roles]


@dataclass(frozen=True)
class Answer:
    """What the counselor produced for one request (the endpoint's side of `Counselor.respond`)."""

    text: str
    reasoning: str | None
    weights_version: int
    crisis: bool
    well_formed: bool
    prompt_tokens: int
    completion_tokens: int
    truncated: bool


@dataclass(frozen=True)
class Piece:
    """Part of a reply being streamed: `kind` "reasoning" (the `<think>` text) or "content" (the answer);
    `crisis` when it is part of a crisis reply."""

    kind: str
    text: str
    crisis: bool = False


def _extension(answer: Answer) -> dict[str, Any]:
    return {
        "weights_version": answer.weights_version,
        "crisis": answer.crisis,
        "well_formed": answer.well_formed,
    }


def completion_body(answer: Answer, model: str, with_reasoning: bool) -> dict[str, Any]:
    """A `chat.completion` object with the `rlff` extension."""
    message: dict[str, Any] = {"role": "assistant", "content": answer.text}
    if with_reasoning:
        message["reasoning_content"] = answer.reasoning
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": "length" if answer.truncated else "stop"}
        ],
        "usage": usage(answer),
        "rlff": _extension(answer),
    }


def usage(answer: Answer) -> dict[str, int]:
    """The token counts of a reply, as OpenAI's `usage`."""
    total = answer.prompt_tokens + answer.completion_tokens
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": total,
    }


class ChunkWriter:
    """`chat.completion.chunk` objects of one streamed reply: a role chunk, text deltas, a final chunk
    with finish_reason. Every chunk carries the `rlff` extension known so far (weights version, crisis
    flag); the final one has it whole, `well_formed` included. With `include_usage` (the request's
    `stream_options`), every chunk has `"usage": null` and one more chunk, with no choices, the
    reply's `usage`, as OpenAI's API does."""

    def __init__(self, model: str, with_reasoning: bool, include_usage: bool = False):
        self.model, self.with_reasoning, self.include_usage = model, with_reasoning, include_usage
        self.id, self.created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(
        self, delta: dict[str, Any], extension: dict[str, Any], finish: str | None = None
    ) -> dict[str, Any]:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }
        if self.include_usage:
            body["usage"] = None
        return {**body, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "rlff": extension}

    def start(self, extension: dict[str, Any]) -> dict[str, Any]:
        return self.chunk({"role": "assistant", "content": ""}, extension)

    def piece(self, piece: Piece, extension: dict[str, Any]) -> dict[str, Any] | None:
        """A delta for `piece`; None for reasoning the request did not ask to see."""
        if piece.kind == "reasoning":
            return self.chunk({"reasoning_content": piece.text}, extension) if self.with_reasoning else None
        return self.chunk({"content": piece.text}, extension)

    def end(self, answer: Answer) -> list[dict[str, Any]]:
        """The chunk with finish_reason, then the usage chunk when the request asked for it."""
        last = self.chunk({}, _extension(answer), "length" if answer.truncated else "stop")
        if not self.include_usage:
            return [last]
        totals = {**last, "choices": [], "usage": usage(answer)}
        return [last, totals]


def stream_chunks(answer: Answer, model: str, with_reasoning: bool) -> list[dict[str, Any]]:
    """A finished answer as the chunks of a stream (one piece of each kind), e.g. for tests."""
    writer, extension = ChunkWriter(model, with_reasoning), _extension(answer)
    pieces = [Piece("reasoning", answer.reasoning or ""), Piece("content", answer.text)]
    middle = [writer.piece(p, extension) for p in pieces if p.text]
    return [writer.start(extension), *[c for c in middle if c is not None], *writer.end(answer)]


def stream_extension(weights_version: int, crisis: bool) -> dict[str, Any]:
    """The `rlff` extension of a stream's chunks before its answer is finished."""
    return {"weights_version": weights_version, "crisis": crisis}


def models_body(model: str, weights_version: int) -> dict[str, Any]:
    """`GET /v1/models`: the one model this endpoint serves."""
    entry = {
        "id": model,
        "object": "model",
        "created": 0,
        "owned_by": "rlff",
        "rlff": {"weights_version": weights_version},
    }
    return {"object": "list", "data": [entry]}
