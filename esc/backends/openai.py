"""OpenAI-compatible chat-completions backend: any server that speaks `POST {base_url}/chat/completions`.

Owns the HTTP side only: one shared `httpx.AsyncClient` per event loop, retries with exponential
backoff on transient failures (connection errors, timeouts, 429, 5xx), and one-sentence errors.
Does not know about prompts or roles. Chat servers cannot prefill an assistant reply, so
`SamplingParams.prefill` is ignored (roles.py asks for the format in the instructions instead), and
they return no prompt log-probs, so the judge must use scorer 'sample' with this backend.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx

from esc.backends.base import BackendError, Generation, Message, SamplingParams

RETRYABLE_STATUS = {408, 409, 429}  # plus every 5xx


class OpenAIBackend:
    """Chat completions over HTTP behind the InferenceBackend protocol."""

    name = "openai"
    supports_logprobs = False

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
    ):
        """backoff_s: wait before the first retry, doubled per further retry up to max_backoff_s."""
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_config(cls, role_config: Any) -> OpenAIBackend:
        api_key = os.environ.get(role_config.api_key_env) or None
        return cls(
            role_config.base_url, role_config.model, api_key, role_config.timeout_s, role_config.max_retries
        )

    def _client_for_this_loop(self) -> httpx.AsyncClient:
        # An AsyncClient's pooled connections belong to the loop that opened them, so successive
        # asyncio.run calls each get a fresh client; callers on one loop share one client.
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, headers=self._headers)
            self._loop = loop
        return self._client

    async def generate(self, messages: list[Message], params: SamplingParams) -> Generation:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if params.seed is not None:
            payload["seed"] = params.seed
        if params.stop:
            payload["stop"] = list(params.stop)
        return self._parse(await self._post(payload), params.stop)

    async def _post(self, payload: dict[str, Any]) -> Any:
        client = self._client_for_this_loop()
        for attempt in range(self.max_retries + 1):
            try:
                response = await client.post(self.url, json=payload)
            except httpx.TimeoutException:
                error = BackendError(f"server at {self.base_url} did not answer within {self.timeout_s} s")
            except httpx.TransportError:
                error = BackendError(f"server unreachable at {self.base_url} (is it running?)")
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError:
                        raise BackendError(f"malformed response body from {self.url}: not JSON") from None
                error = BackendError(
                    f"server at {self.url} answered HTTP {response.status_code}: {_error_message(response)}"
                )
                if response.status_code < 500 and response.status_code not in RETRYABLE_STATUS:
                    raise error
            if attempt < self.max_retries:
                await asyncio.sleep(min(self.backoff_s * 2**attempt, self.max_backoff_s))
        raise error

    def _parse(self, body: Any, stops: tuple[str, ...] = ()) -> Generation:
        try:
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
            usage = body.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            completion_tokens = int(usage.get("completion_tokens") or 0)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise BackendError(
                f"malformed response body from {self.url}: expected choices[0].message.content"
            ) from None
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        stop = choice.get("stop_reason")  # vLLM and some others name the stop string that matched
        if not isinstance(stop, str) and finish == "stop" and len(stops) == 1:
            # Most servers say only "stop", both at end of turn and at a stop string; with one stop
            # string requested we take it to be the stop string (roles rely on it to close tags).
            stop = stops[0]
        return Generation(
            text, prompt_tokens, completion_tokens, finish, stop if isinstance(stop, str) else None
        )

    async def continuation_logprobs(self, messages: list[Message], continuations: list[str]) -> list[float]:
        raise BackendError(
            "backend 'openai' cannot score continuations; use the judge with scorer 'sample' on this backend"
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()
        self._loop = None


def _error_message(response: httpx.Response) -> str:
    """The server's own error text: OpenAI-style {"error": {"message"}}, FastAPI {"detail"} or raw."""
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else error or body.get("detail")
    except (ValueError, AttributeError):
        message = None
    text = str(message or response.text or response.reason_phrase).strip()
    return text if len(text) <= 300 else text[:297] + "..."
