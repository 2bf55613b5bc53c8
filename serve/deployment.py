"""The Ray Serve application: `CounselorEndpoint` replicas, each with its own counselor model, behind
Serve's HTTP proxy on `serve.host:serve.port`.

Requests that arrive together are answered together: `@serve.batch` (sizes from `serve.max_batch_size`
and `serve.batch_wait_ms`) hands a batch to the counselor, whose hf backend decodes it as one batch.
Replicas, CPUs and GPUs per replica come from `ServeConfig`. `deploy()` is what `rlff serve` and
`rlff run` (with `serve.enabled`) call.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import torch
from ray import serve

from esc.config import RunConfig
from serve.api import Answer, ChatRequest
from serve.app import build_app
from serve.service import CounselorService

APP_NAME = "rlff"


@serve.deployment
@serve.ingress()
class CounselorEndpoint:
    def __init__(self, config: dict[str, Any], checkpoint: str | None, follow: bool):
        run = RunConfig.model_validate(config)
        # Ray gives a replica reserving under 2 CPUs one thread; batched decoding wants the cores (set
        # before the backend is built: it applies this count in the threads that decode)
        torch.set_num_threads(run.serve.torch_threads or os.cpu_count() or 1)
        self.service = CounselorService(run, checkpoint=checkpoint, follow=follow)
        self.config, self.model_name = self.service.config, self.service.model_name
        self.api_key = os.environ.get(run.serve.api_key_env) or None
        self.answer_batch.set_max_batch_size(run.serve.max_batch_size)
        self.answer_batch.set_batch_wait_timeout_s(run.serve.batch_wait_ms / 1000)

    @property
    def weights_version(self) -> int:
        return self.service.weights_version

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def answer_batch(self, requests: list[ChatRequest]) -> list[Answer | BaseException]:
        return await asyncio.gather(*(self.service.answer(r) for r in requests), return_exceptions=True)

    async def answer(self, request: ChatRequest) -> Answer:
        result = await self.answer_batch(request)
        if isinstance(result, BaseException):  # one request's failure stays that request's
            raise result
        return result

    def __serve_build_asgi_app__(self):
        return build_app(self)


def deploy(config: RunConfig, checkpoint: str | None = None, follow: bool = False) -> str:
    """Start Serve's proxy and the endpoint on the running Ray instance; returns its base URL once every
    replica has loaded its model."""
    s = config.serve
    # access logs and routine INFO lines go to Ray's log files, not the console of `rlff run`
    quiet = {"log_level": "WARNING", "enable_access_log": False}
    serve.start(http_options={"host": s.host, "port": s.port}, logging_config=quiet)
    env = {s.api_key_env: os.environ[s.api_key_env]} if os.environ.get(s.api_key_env) else {}
    actor_options: dict[str, Any] = {"num_cpus": s.num_cpus, "num_gpus": s.num_gpus}
    if env:
        actor_options["runtime_env"] = {"env_vars": env}
    app = CounselorEndpoint.options(
        num_replicas=s.replicas,
        max_ongoing_requests=max(s.max_ongoing_requests, s.max_batch_size),
        ray_actor_options=actor_options,
    ).bind(config.model_dump(), checkpoint, follow)
    serve.run(app, name=APP_NAME, route_prefix="/", logging_config=quiet)
    return f"http://{s.host}:{s.port}"
