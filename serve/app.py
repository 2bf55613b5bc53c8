"""The HTTP face of the endpoint: routes, auth, size limits, OpenAI-style errors. Thin by design:
requests in (`serve.api`), the counselor's answer (`Endpoint.answer`), responses out.

Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /healthz`, and the dashboard under
`/dashboard` (page, scripts, `/dashboard/events` server-sent events). With the environment variable
named by `serve.api_key_env` set, every route but `/healthz` needs the key: `Authorization: Bearer
<key>`, or HTTP Basic with the key as the password (any user name), which is how a browser gives it
to the dashboard: it asks once, then sends it with the page, its scripts and its event stream, never in
a URL. Every refusal is a 4xx with an `{"error": {...}}` body; an unexpected failure is a 500 with the
same shape, and the replica keeps serving.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from esc.backends.base import PromptTooLong
from esc.config import RunConfig
from serve import dashboard
from serve.api import (
    Answer,
    ApiError,
    ChatRequest,
    ChunkWriter,
    Piece,
    completion_body,
    models_body,
    parse_request,
    stream_extension,
)

log = logging.getLogger(__name__)
VERSION_HEADER = "X-RLFF-Weights-Version"


class Endpoint(Protocol):
    config: RunConfig
    model_name: str
    api_key: str | None

    @property
    def weights_version(self) -> int: ...

    async def answer(self, request: ChatRequest) -> Answer: ...

    def answer_stream(self, request: ChatRequest) -> AsyncIterator[Piece | Answer]: ...


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (declared or sent)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def stream_events(
    endpoint: Endpoint, request: ChatRequest, writer: ChunkWriter
) -> AsyncIterator[dict[str, Any]]:
    """The chunks of a streamed reply as the counselor writes it. The first chunk waits for the first
    piece (or a crisis reply), so that it carries the crisis flag; leaving early (a client gone) closes
    the counselor's stream, which frees its decode row."""
    async with aclosing(endpoint.answer_stream(request)) as items:
        first = await anext(items, None)
        crisis = first is not None and first.crisis  # a crisis reply comes whole, its first piece marked
        extension = stream_extension(endpoint.weights_version, crisis)
        yield writer.start(extension)
        item = first
        while item is not None:
            if isinstance(item, Answer):
                for chunk in writer.end(item):
                    yield chunk
                return
            chunk = writer.piece(item, extension)
            if chunk is not None:
                yield chunk
            item = await anext(items, None)


async def sse(first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    """Server-sent events in the OpenAI format: one `data:` line per chunk, then `data: [DONE]`. A failure
    after the first chunk (its 200 is sent) ends the stream with an OpenAI-style error event and no
    `[DONE]`, which the openai client raises as an error, instead of a reply that looks complete."""
    async with aclosing(rest) as items:
        yield f"data: {json.dumps(first)}\n\n"
        try:
            async for chunk in items:
                yield f"data: {json.dumps(chunk)}\n\n"
        except Exception as error:
            log.exception("a streamed reply failed")
            message = f"the server failed to finish the reply: {type(error).__name__}"
            yield f"data: {json.dumps(ApiError(500, message, kind='server_error').body())}\n\n"
            return
    yield "data: [DONE]\n\n"


def key_matches(header: str, key: str) -> bool:
    """Whether an Authorization header carries `key`: as a bearer token, or as the password of HTTP
    Basic credentials (the user name is ignored). Compared in constant time."""
    scheme, _, value = header.partition(" ")
    given = value.strip()
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(given, validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.encode(), key.encode())


def build_app(endpoint: Endpoint) -> FastAPI:
    app = FastAPI(title="RLFF-ESC counselor", docs_url=None, redoc_url=None, openapi_url=None)
    limits = endpoint.config.serve

    def authorize(request: Request, browser: bool = False) -> None:
        """Refuse a request without the key (401). `browser`: the dashboard's routes, whose 401 asks
        the browser for HTTP Basic credentials."""
        if not endpoint.api_key or key_matches(request.headers.get("authorization", ""), endpoint.api_key):
            return
        raise ApiError(
            401,
            "missing or wrong API key; send Authorization: Bearer <key>",
            kind="authentication_error",
            headers={"WWW-Authenticate": 'Basic realm="rlff dashboard"' if browser else "Bearer"},
        )

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse(
            ApiError(error.status_code, str(error.detail)).body(), status_code=error.status_code
        )

    @app.exception_handler(PromptTooLong)
    async def too_long(_: Request, error: PromptTooLong) -> JSONResponse:
        message = (
            f"the conversation is {error.tokens} tokens and the reply may take {error.new_tokens} more,"
            f" over the model's context of {error.limit}; shorten the conversation or lower max_tokens"
        )
        return JSONResponse(ApiError(400, message, param="messages").body(), status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("request failed")
        body = ApiError(
            500, f"the server failed to answer: {type(error).__name__}", kind="server_error"
        ).body()
        return JSONResponse(body, status_code=500)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": endpoint.model_name,
            "weights_version": endpoint.weights_version,
            "decode_batches": endpoint.recent_batches,
        }

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        authorize(request)
        body = models_body(endpoint.model_name, endpoint.weights_version)
        return JSONResponse(body, headers={VERSION_HEADER: str(endpoint.weights_version)})

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        authorize(request)
        parsed = parse_request(await _body(request, limits.max_request_bytes), limits)
        model, reasoning = endpoint.model_name, parsed.rlff.reasoning
        if not parsed.stream:
            answer = await endpoint.answer(parsed)
            headers = {VERSION_HEADER: str(answer.weights_version)}
            return JSONResponse(completion_body(answer, model, reasoning), headers=headers)
        include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
        events = stream_events(endpoint, parsed, ChunkWriter(model, reasoning, include_usage))
        first = await anext(events)  # what fails before the reply starts (too long a prompt) gets a status
        # read once the reply is being written: swaps wait for an empty batch, so it is the reply's version
        headers = {VERSION_HEADER: str(endpoint.weights_version), "Cache-Control": "no-cache"}
        return StreamingResponse(sse(first, events), media_type="text/event-stream", headers=headers)

    @app.get("/")
    async def root(request: Request) -> RedirectResponse:
        authorize(request, browser=True)
        return RedirectResponse("/dashboard")

    @app.get("/dashboard")
    async def page(request: Request) -> FileResponse:
        authorize(request, browser=True)
        return FileResponse(dashboard.STATIC / "dashboard.html", media_type="text/html")

    @app.get("/dashboard/dashboard.js")
    async def script(request: Request) -> FileResponse:
        authorize(request, browser=True)
        return FileResponse(dashboard.STATIC / "dashboard.js", media_type="text/javascript")

    @app.get("/dashboard/plotly.min.js")
    async def plotly(request: Request) -> FileResponse:
        authorize(request, browser=True)
        return FileResponse(dashboard.plotly_js(), media_type="text/javascript")

    @app.get("/dashboard/events")
    async def events(request: Request) -> StreamingResponse:
        authorize(request, browser=True)

        def status() -> dict[str, Any]:
            return {"weights_version": endpoint.weights_version, "run": endpoint.config.name}

        stream = dashboard.event_stream(endpoint.config.run_dir(), status, limits.feed_size)
        return StreamingResponse(
            stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    return app
