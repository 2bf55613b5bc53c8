"""OpenAI-compatible chat-completions backend: any server that speaks `POST {base_url}/chat/completions`.

Owns the HTTP side only: one shared `httpx.AsyncClient` and one in-flight limit (`max_concurrent`) per
event loop, retries with backoff on transient failures (connection errors, timeouts, 429, 5xx;
a `Retry-After` in seconds is honoured), one-sentence errors, and token counts in `stats`. Does not
know about prompts or roles. Chat servers cannot prefill an assistant reply, so `SamplingParams.prefill`
is ignored (roles.py asks for the format in the instructions instead). They return no prompt
log-probs either, so `continuation_logprobs` reads the top log-probs of the reply's first token: a
label scores the probability of the tokens that begin it (see `label_logprobs`). Servers that return
no log-probs get a one-sentence error that points to the judge's 'sample' scorer.
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any

import httpx

from esc.backends.base import BackendError, Generation, Message, SamplingParams

RETRYABLE_STATUS = {408, 409, 429}  # plus every 5xx
TOP_LOGPROBS = 20  # the most top_logprobs OpenAI's API returns per token


class OpenAIBackend:
    """Chat completions over HTTP behind the InferenceBackend protocol.

    `stats` counts, since construction: `prompt_tokens` and `completion_tokens` from the answers'
    `usage`, `requests` (HTTP requests sent, retries included), `retries`, and `failures` (calls that
    raised BackendError after their last try).
    """

    name = "openai"
    supports_logprobs = True

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        max_concurrent: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        """backoff_s: wait before the first retry, doubled per further retry up to max_backoff_s.
        max_concurrent: most requests in flight at once (a call waiting to retry holds no slot).
        transport: what carries the requests (e.g. `httpx.MockTransport` in tests); None: the network."""
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.max_concurrent = max_concurrent
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stats = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0, "retries": 0, "failures": 0}

    @classmethod
    def from_config(cls, role_config: Any) -> OpenAIBackend:
        return cls(
            role_config.base_url,
            role_config.model,
            api_key=os.environ.get(role_config.api_key_env) or None,
            timeout_s=role_config.timeout_s,
            max_retries=role_config.max_retries,
            max_concurrent=role_config.max_concurrent,
        )

    def _for_this_loop(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        # An AsyncClient's pooled connections and a Semaphore's waiters belong to the loop that made
        # them, so successive asyncio.run calls each get fresh ones; callers on one loop share them.
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(
                timeout=self.timeout_s, headers=self._headers, transport=self._transport
            )
            self._slots = asyncio.Semaphore(self.max_concurrent)
            self._loop = loop
        return self._client, self._slots

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

    async def continuation_logprobs(self, messages: list[Message], continuations: list[str]) -> list[float]:
        """Log-probability of each continuation starting the reply, from one request for the first
        token's top log-probs; `label_logprobs` says how tokens map to continuations."""
        payload = {
            "model": self.model,
            "messages": messages,
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": True,
            "top_logprobs": TOP_LOGPROBS,
        }
        return label_logprobs(self._top_logprobs(await self._post(payload)), continuations)

    async def _post(self, payload: dict[str, Any]) -> Any:
        try:
            body = await self._post_with_retries(payload)
        except BackendError:
            self.stats["failures"] += 1
            raise
        usage = body.get("usage") if isinstance(body, dict) else None
        if isinstance(usage, dict):
            for key in ("prompt_tokens", "completion_tokens"):
                if isinstance(usage.get(key), int):
                    self.stats[key] += usage[key]
        return body

    async def _post_with_retries(self, payload: dict[str, Any]) -> Any:
        client, slots = self._for_this_loop()
        for attempt in range(self.max_retries + 1):
            async with slots:
                self.stats["requests"] += 1
                body, error, retry_after = await self._attempt(client, payload)
            if error is None:
                return body
            if attempt < self.max_retries:
                self.stats["retries"] += 1
                wait = self.backoff_s * 2**attempt if retry_after is None else retry_after
                await asyncio.sleep(min(wait, self.max_backoff_s))
        raise error

    async def _attempt(
        self, client: httpx.AsyncClient, payload: dict[str, Any]
    ) -> tuple[Any, BackendError | None, float | None]:
        """One request: (body, None, None) when answered; (None, error, the server's Retry-After in
        seconds or None) when worth retrying; raises BackendError when not."""
        try:
            response = await client.post(self.url, json=payload)
        except httpx.TimeoutException:
            timeout = BackendError(f"server at {self.base_url} did not answer within {self.timeout_s} s")
            return None, timeout, None
        except httpx.TransportError:
            return None, BackendError(f"server unreachable at {self.base_url} (is it running?)"), None
        status = response.status_code
        if status < 400:
            try:
                return response.json(), None, None
            except ValueError:
                raise BackendError(f"malformed response body from {self.url}: not JSON") from None
        error = BackendError(f"server at {self.url} answered HTTP {status}: {_error_message(response)}")
        if status < 500 and status not in RETRYABLE_STATUS:
            raise error
        return None, error, _retry_after_s(response)

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

    def _top_logprobs(self, body: Any) -> list[tuple[str, float]]:
        """(token text, log-prob) of the reply's first token's top alternatives."""
        try:
            logprobs = body["choices"][0].get("logprobs") or {}
            content = logprobs.get("content") or []
            top = (content[0].get("top_logprobs") or []) if content else []
            pairs = [(str(t["token"]), float(t["logprob"])) for t in top]
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            raise BackendError(
                f"malformed response body from {self.url}: expected choices[0].logprobs.content"
            ) from None
        if not pairs:
            raise BackendError(
                f"server at {self.base_url} returned no top_logprobs for the reply's first token;"
                " set judge.scorer: sample for this server"
            )
        return pairs

    async def close(self) -> None:
        client, self._client, self._slots = self._client, None, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()
        self._loop = None


def label_logprobs(top: list[tuple[str, float]], labels: list[str]) -> list[float]:
    """Log-probability of each label from a token's top alternatives: the log of the summed
    probabilities of the tokens whose text, stripped and lower-cased, is a non-empty prefix of that
    label (lower-cased) and of no other label ("bet" and " Better" count for "better"; "s", shared by
    "same" and "solved", counts for neither). A label no listed token begins gets the smallest listed
    log-prob. `top`: the alternatives at one position, in any order; a label is matched by its first
    token only, which is all one request shows.
    """
    names = [label.lower() for label in labels]
    mass = [0.0] * len(labels)
    for token, logprob in top:
        text = token.strip().lower()
        owners = [i for i, name in enumerate(names) if text and name.startswith(text)]
        if len(owners) == 1:
            mass[owners[0]] += math.exp(logprob)
    # No token outside the top list is more likely than the least likely listed one, so its log-prob
    # bounds any one of an unlisted label's first tokens from above: the best a label without a match gets.
    floor = min(logprob for _, logprob in top)
    return [math.log(m) if m > 0 else floor for m in mass]


def _retry_after_s(response: httpx.Response) -> float | None:
    """The server's Retry-After in seconds; None when absent or given as an HTTP date."""
    try:
        seconds = float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


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
