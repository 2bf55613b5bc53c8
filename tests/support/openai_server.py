"""A small OpenAI-compatible chat-completions server for tests, answered by a real InferenceBackend.

Loopback only, on an ephemeral port, in background threads: `ThreadingHTTPServer` takes each HTTP
request on its own thread and submits it to one asyncio loop running in a dedicated thread, so
requests that arrive together reach the backend together (and the hf backend batches them).

Serves `POST /v1/chat/completions` and `GET /v1/models`. With `logprobs: true` and an `HFBackend`
behind it, a reply also carries the `top_logprobs` (at most 20) of its first position in OpenAI's
shape, from the backend's own scoring after the prompt's assistant start; the entry's own `token` is
the likeliest one (greedy decoding's pick). Other backends answer `logprobs: null`, as servers without
log-probs do. Test hooks on the handle: `fail_next` (the next N chat requests answer an error
status), `garble_next` (they answer 200 with a non-JSON body), `omit_usage`, `omit_logprobs` (answer
`logprobs: null` even when asked), and a record of every chat request received (`requests`,
`payloads`, `headers`).

    with start_server(backend) as (base_url, handle):
        ...  # base_url is http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from esc.backends.base import BackendError, InferenceBackend, Message, SamplingParams
from esc.backends.hf import HFBackend

ROLES = {"system", "user", "assistant"}
MAX_TOP_LOGPROBS = 20  # OpenAI's limit
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}


@dataclass
class ServerHandle:
    """What a test can see and steer. All fields are guarded by `lock`."""

    model: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    payloads: list[dict[str, Any]] = field(default_factory=list)  # chat request bodies, in arrival order
    headers: list[dict[str, str]] = field(default_factory=list)  # their HTTP headers (lower-case keys)
    omit_usage: bool = False
    omit_logprobs: bool = False
    _fail: list[tuple[int, str]] = field(default_factory=list)  # queued (status, message or "" = garble)

    @property
    def requests(self) -> int:
        """Chat-completion requests received so far, failed ones included."""
        with self.lock:
            return len(self.payloads)

    def fail_next(self, n: int, status: int = 503, message: str = "injected failure") -> None:
        """Make the next `n` chat requests answer `status` with an OpenAI-style error (n=0 clears)."""
        with self.lock:
            self._fail = [(status, message)] * n

    def garble_next(self, n: int) -> None:
        """Make the next `n` chat requests answer 200 with a body that is not JSON."""
        with self.lock:
            self._fail = [(200, "")] * n

    def _take_failure(self) -> tuple[int, str] | None:
        with self.lock:
            return self._fail.pop(0) if self._fail else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server; every reply sets Content-Length
    # headers and body go out in two writes: without TCP_NODELAY the body waits ~40 ms for the
    # client's delayed ACK of the headers, on every keep-alive request
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # tests stay quiet
        pass

    def _send(self, status: int, body: Any, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if raw is None else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        kind = ERROR_TYPES.get(status, "rate_limit_error" if status == 429 else "server_error")
        self._send(status, {"error": {"message": message, "type": kind, "code": None}})

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            return self._error(404, f"no route GET {self.path}")
        model = {"id": self.server.handle.model, "object": "model", "created": 0, "owned_by": "tests"}
        self._send(200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._error(404, f"no route POST {self.path}")
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        handle = self.server.handle
        with handle.lock:
            handle.payloads.append(payload if isinstance(payload, dict) else {})
            handle.headers.append({k.lower(): v for k, v in self.headers.items()})
        failure = handle._take_failure()
        if failure is not None:
            status, message = failure
            return (
                self._send(200, None, raw=b"<html>not json") if not message else self._error(status, message)
            )
        if not isinstance(payload, dict):
            return self._error(400, "request body must be a JSON object")
        problem = _validate(payload, handle.model)
        if problem:
            return self._error(404 if problem.startswith("model") else 400, problem)
        try:
            params = _sampling_params(payload)
            future = asyncio.run_coroutine_threadsafe(
                self.server.backend.generate(payload["messages"], params), self.server.loop
            )
            generation = future.result()
        except (BackendError, ValueError, TypeError) as error:
            return self._error(400, str(error))
        except Exception as error:  # the backend broke: a 500, as a real server would answer
            return self._error(500, f"{type(error).__name__}: {error}")
        reply: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": handle.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": generation.text},
                    "logprobs": None,
                    "finish_reason": generation.finish_reason,
                }
            ],
        }
        backend = self.server.backend
        if payload.get("logprobs") and not handle.omit_logprobs and isinstance(backend, HFBackend):
            k = int(payload.get("top_logprobs") or 0)
            ranked = top_logprobs(backend, payload["messages"], max(k, 1))
            reply["choices"][0]["logprobs"] = {"content": [{**ranked[0], "top_logprobs": ranked[:k]}]}
        if not handle.omit_usage:
            reply["usage"] = {
                "prompt_tokens": generation.prompt_tokens,
                "completion_tokens": generation.completion_tokens,
                "total_tokens": generation.prompt_tokens + generation.completion_tokens,
            }
        self._send(200, reply)


def _validate(payload: dict[str, Any], model: str) -> str | None:
    """One sentence saying what is wrong with a chat request, or None when it is fine."""
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' is required and must be a non-empty list"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"messages[{i}].role must be one of {sorted(ROLES)}"
        if not isinstance(message.get("content"), str):
            return f"messages[{i}].content must be a string"
    if payload.get("model") != model:
        return f"model {payload.get('model')!r} does not exist; this server serves {model!r}"
    top = payload.get("top_logprobs")
    if top is not None and not (isinstance(top, int) and 0 <= top <= MAX_TOP_LOGPROBS):
        return f"'top_logprobs' must be an integer from 0 to {MAX_TOP_LOGPROBS}"
    return None


def top_logprobs(backend: HFBackend, messages: list[Message], k: int) -> list[dict[str, Any]]:
    """The `k` likeliest first tokens of the reply to `messages`, likeliest first, as OpenAI's
    `{token, logprob, bytes}`: the hf backend scores every vocabulary token as a one-token
    continuation, so the numbers are exactly what its `continuation_logprobs` gives."""
    vocab = min(len(backend.tokenizer), backend.model.config.vocab_size)
    scores = backend.score_batch([backend.encode_prompt(messages)], [[[t] for t in range(vocab)]])[0]
    best = sorted(range(vocab), key=lambda t: -scores[t])[:k]
    tokens = [backend.tokenizer.decode([t]) for t in best]
    return [
        {"token": text, "logprob": scores[t], "bytes": list(text.encode())} for t, text in zip(best, tokens)
    ]


def _sampling_params(payload: dict[str, Any]) -> SamplingParams:
    stop = payload.get("stop") or ()
    return SamplingParams(
        temperature=float(payload.get("temperature", 1.0)),
        top_p=float(payload.get("top_p", 1.0)),
        max_new_tokens=int(payload.get("max_tokens") or payload.get("max_completion_tokens") or 64),
        seed=payload.get("seed"),
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, backend: InferenceBackend, handle: ServerHandle, loop: asyncio.AbstractEventLoop):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.backend, self.handle, self.loop = backend, handle, loop


@contextmanager
def start_server(backend: InferenceBackend, model: str = "tiny-random") -> Iterator[tuple[str, ServerHandle]]:
    """Serve `backend` as model `model`; yields (base_url, handle). On exit closes the backend too,
    on the server's loop, because the backend's batching worker lives there."""
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, name="openai-server-loop", daemon=True)
    loop_thread.start()
    handle = ServerHandle(model)
    server = _Server(backend, handle, loop)
    http_thread = threading.Thread(target=server.serve_forever, name="openai-server-http", daemon=True)
    http_thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", handle
    finally:
        server.shutdown()
        server.server_close()
        http_thread.join()
        asyncio.run_coroutine_threadsafe(backend.close(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join()
        # Join the loop's worker threads (asyncio.to_thread) before the interpreter exits: a thread
        # still holding torch's thread pool at exit aborts the process.
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def run_with(backend, coro_fn):
    """Run `coro_fn(backend)` on a fresh event loop and close the backend's HTTP client on that loop."""

    async def main():
        try:
            return await coro_fn(backend)
        finally:
            await backend.close()

    return asyncio.run(main())
