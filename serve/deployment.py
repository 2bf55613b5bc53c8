"""The Ray Serve application: `CounselorEndpoint` replicas, each with its own counselor model, behind
Serve's HTTP proxy on `serve.host:serve.port`.

Each request goes straight to the counselor; its hf backend batches them (continuous batching, sizes
from `serve.max_batch_size` and `serve.batch_wait_ms`): a request joins the batch being decoded at the
next step, and each reply returns as soon as it is written. (`@serve.batch` is not used: it returns a
batch's replies together and starts the next batch only after, which split 16 concurrent requests into
four batches run one after another.)
Replicas, CPUs and GPUs per replica come from `ServeConfig`. `deploy()` is what `rlff serve` and
`rlff run` (with `serve.enabled`) call.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from esc import placement
from esc.config import RunConfig
from serve.api import Answer, ChatRequest, Piece
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
        placement.apply(run.serve.placement, default_threads=os.cpu_count() or 1)
        self.service = CounselorService(run, checkpoint=checkpoint, follow=follow)
        self.config, self.model_name = self.service.config, self.service.model_name
        self.api_key = os.environ.get(run.serve.api_key_env) or None

    @property
    def weights_version(self) -> int:
        return self.service.weights_version

    @property
    def recent_batches(self) -> list[int]:
        """Rows decoding together after each of this replica's last 32 joins (on /healthz: is load
        being batched?)."""
        return self.service.backend.batch_sizes[-32:]

    async def answer(self, request: ChatRequest) -> Answer:
        return await self.service.answer(request)

    def answer_stream(self, request: ChatRequest) -> AsyncIterator[Piece | Answer]:
        return self.service.answer_stream(request)

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
    place = s.placement
    actor_options: dict[str, Any] = {
        "num_cpus": place.num_cpus,
        "num_gpus": place.num_gpus,
        "resources": dict(place.resources),
    }
    if env:
        actor_options["runtime_env"] = {"env_vars": env}
    app = CounselorEndpoint.options(
        num_replicas=place.replicas,
        max_ongoing_requests=max(s.max_ongoing_requests, s.max_batch_size),
        ray_actor_options=actor_options,
    ).bind(config.model_dump(), checkpoint, follow)
    serve.run(app, name=APP_NAME, route_prefix="/", logging_config=quiet)
    return f"http://{s.host}:{s.port}"
