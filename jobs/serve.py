"""`rlff serve`: the counselor endpoint (OpenAI-compatible) and the dashboard on Ray Serve, until Ctrl-C.

Serves the config's base policy, a fixed `--checkpoint`, or with `--follow` every version the learner
of the config's run publishes. `rlff run` starts the same application itself when `serve.enabled`.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import signal
import socket
import threading
import time

from esc.config import RunConfig
from jobs import UsageError


def check_port_free(host: str, port: int) -> None:
    """Refuse early, in one sentence, when host:port cannot be listened on: something else holds it,
    or the host is not this machine's."""
    try:
        found = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UsageError(f"serve.host {host!r} is not a name or address this machine can resolve") from None
    family, _, _, _, address = min(found, key=lambda info: info[0] != socket.AF_INET)  # IPv4 first
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"{host}:{port} is already in use; pick another port with --set serve.port=N"
                ) from None
            if error.errno == errno.EADDRNOTAVAIL:
                raise UsageError(
                    f"serve.host {host} is not an address of this machine; use 127.0.0.1, 0.0.0.0 or one of"
                    " its own"
                ) from None
            raise UsageError(f"cannot listen on {host}:{port}: {error.strerror}") from None


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_open_bind(config: RunConfig) -> None:
    """Refuse, in one sentence, to serve on a non-loopback address without an API key, unless the
    config says `serve.allow_open: true`."""
    s = config.serve
    if is_loopback(s.host) or os.environ.get(s.api_key_env) or s.allow_open:
        return
    raise UsageError(
        f"serve.host {s.host} is reachable from other machines and {s.api_key_env} is not set; set an API"
        f" key in {s.api_key_env}, bind to 127.0.0.1, or pass --set serve.allow_open=true to serve"
        " without one"
    )


def check_checkpoint(config: RunConfig, checkpoint: str | None) -> None:
    from serve.service import CheckpointError, resolve_checkpoint

    if checkpoint is not None:
        try:
            resolve_checkpoint(config, checkpoint)
        except CheckpointError as error:
            raise UsageError(str(error)) from None


def start_endpoint(config: RunConfig, checkpoint: str | None = None, follow: bool = False) -> str:
    """Deploy the endpoint on the running Ray instance and print where it is; returns the base URL."""
    from serve.deployment import deploy

    started = time.perf_counter()
    url = deploy(config, checkpoint, follow)
    print(
        f"endpoint {url}/v1 (OpenAI-compatible) and dashboard {url}/dashboard ready in"
        f" {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return url


def run_serve(config: RunConfig, checkpoint: str | None, follow: bool) -> int:
    config = config.absolute()
    check_checkpoint(config, checkpoint)
    check_open_bind(config)
    check_port_free(config.serve.host, config.serve.port)
    from jobs.launcher import init_ray  # Ray loads only once the request is known to be good

    init_ray()
    start_endpoint(config, checkpoint, follow)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("serving until Ctrl-C", flush=True)
    stop.wait()
    from ray import serve

    serve.shutdown()
    return 0
