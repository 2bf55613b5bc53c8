"""The HTTP face of the endpoint: routes, auth, size limits, OpenAI-style errors. Thin by design:
requests in (`serve.api`), the counselor's answer (`Endpoint.answer`), responses out.

Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /healthz`, and the dashboard under
`/dashboard` (page, scripts, `/dashboard/events` server-sent events). With the environment variable
named by `serve.api_key_env` set, `/v1/*` needs `Authorization: Bearer <key>`. Every refusal is a 4xx
with an `{"error": {...}}` body; an unexpected failure is a 500 with the same shape, and the replica
keeps serving.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from esc.config import RunConfig
from serve import dashboard
from serve.api import (
    Answer,
    ApiError,
    ChatRequest,
    completion_body,
    models_body,
    parse_request,
    stream_chunks,
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


def build_app(endpoint: Endpoint) -> FastAPI:
    app = FastAPI(title="RLFF-ESC counselor", docs_url=None, redoc_url=None, openapi_url=None)
    limits = endpoint.config.serve

    def authorize(request: Request) -> None:
        if not endpoint.api_key:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {endpoint.api_key}".encode()):
            raise ApiError(
                401, "missing or wrong API key; send Authorization: Bearer <key>", kind="authentication_error"
            )

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse(
            ApiError(error.status_code, str(error.detail)).body(), status_code=error.status_code
        )

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
        answer = await endpoint.answer(parsed)
        headers = {VERSION_HEADER: str(answer.weights_version)}
        model, reasoning = endpoint.model_name, parsed.rlff.reasoning
        if not parsed.stream:
            return JSONResponse(completion_body(answer, model, reasoning), headers=headers)

        async def events():
            for chunk in stream_chunks(answer, model, reasoning):
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    @app.get("/")
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    @app.get("/dashboard")
    async def page() -> FileResponse:
        return FileResponse(dashboard.STATIC / "dashboard.html", media_type="text/html")

    @app.get("/dashboard/dashboard.js")
    async def script() -> FileResponse:
        return FileResponse(dashboard.STATIC / "dashboard.js", media_type="text/javascript")

    @app.get("/dashboard/plotly.min.js")
    async def plotly() -> FileResponse:
        return FileResponse(dashboard.plotly_js(), media_type="text/javascript")

    @app.get("/dashboard/events")
    async def events() -> StreamingResponse:
        def status() -> dict[str, Any]:
            return {"weights_version": endpoint.weights_version, "run": endpoint.config.name}

        stream = dashboard.event_stream(endpoint.config.run_dir(), status, limits.feed_size)
        return StreamingResponse(
            stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    return app
