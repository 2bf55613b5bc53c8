"""The one typed configuration of a run.

One pydantic model per component, composed into `RunConfig` (the LLM roles' sections are in
`esc/config_roles.py`; the reward model's, the learner's and the SFT's in `esc/config_training.py`).
Every field carries a one-line doc, constraints live on the fields, cross-field rules in validators,
unknown keys are errors. Defaults live in these models and nowhere else. This module imports neither
torch nor ray (a test checks), so any process can validate a config cheaply.

Load with `load_config(path, overrides)`; overrides are dotted `key=value` strings whose values are
parsed as YAML scalars (`learner.lr=3e-6`, `counselor.reasoning=false`). A section written in part
keeps the default config's values for the keys it leaves out (a nested section's default can differ from
its class's: the store's `max_concurrency` is 32, `ActorConfig`'s 64).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from esc.config_placement import Placement
from esc.config_roles import (  # noqa: F401  (re-exported: the roles' sections are part of the config)
    BackendKind,
    CounselorConfig,
    JudgeConfig,
    RoleConfig,
    Section,
    SeekerConfig,
    SystemAgentConfig,
)
from esc.config_training import (  # noqa: F401  (re-exported: the training sections too)
    LearnerConfig,
    RewardModelConfig,
    RewardRefreshConfig,
    SeekerSFTConfig,
    SFTConfig,
)


class ConfigError(ValueError):
    """A config file or override is wrong; the message is one sentence for a person."""


class EpisodeConfig(Section):
    """Interactive conversations (evaluation and rollouts)."""

    max_turns: int = Field(8, gt=0, le=64, description="Counselor turns before an episode counts as failed.")
    success_threshold: float = Field(0.5, ge=-1.0, le=1.0, description="Success when reward is above this.")


class FutureConfig(Section):
    """Future simulation: the future-oriented reward of a candidate reply."""

    horizon: int = Field(2, ge=0, le=16, description="k: seeker/system-agent exchanges simulated after it.")
    class_edges: list[float] = Field(
        [-0.25, 0.25], description="Ascending reward cut points; n edges give n+1 reward classes."
    )

    @model_validator(mode="after")
    def _edges_ascending(self) -> FutureConfig:
        edges = self.class_edges
        if any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError("future.class_edges must be strictly ascending")
        return self


class SafetyConfig(Section):
    """The crisis-safety check on every seeker or user message."""

    enabled: bool = Field(True, description="Run the crisis check on every seeker/user message.")
    window: int = Field(
        8,
        ge=1,
        le=64,
        description="The last N seeker/user messages checked before each reply (all must pass).",
    )
    region: Literal["us", "uk", "ie", "ca", "au", "international"] = Field(
        "international", description="Which crisis resources a crisis reply lists."
    )
    classifier: Literal["none", "probe", "judge"] = Field(
        "none",
        description="Model check when the lexicon is silent: 'probe' runs the crisis probe"
        " (esc/safety_probe.py) on the same messages; 'judge' asks the judge model yes/no about the last.",
    )
    classifier_threshold: float = Field(
        0.5, gt=0.0, le=1.0, description="p(yes) at which the 'judge' classifier flags a crisis."
    )


class DataConfig(Section):
    """Where scenarios and dialogues come from."""

    scenarios: str = Field("builtin", description="'builtin', 'esconv:PATH[#split]' or 'extes:PATH[#split]'.")


class RolloutConfig(Section):
    """Rollout workers and candidate groups."""

    group_size: int = Field(4, ge=2, le=64, description="G: candidate replies per context for GRPO.")
    max_staleness: int = Field(1, ge=0, le=100, description="Most policy versions a sample may lag.")
    in_flight: int = Field(4, gt=0, le=1024, description="Contexts one worker works on at once.")
    max_generating: int | None = Field(
        None,
        gt=0,
        description="Online loop: most groups generating at once, over all workers (None: no cap).",
    )
    future_fraction: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Share of candidates the online loop future-simulates and judges (collect: all).",
    )
    peer_timeout_s: float = Field(
        180.0,
        gt=0,
        description="A (re)started worker whose peer actors do not all answer within this restarts itself.",
    )


class ActorConfig(Placement):
    """Ray placement and fault tolerance of one actor role."""

    max_restarts: int = Field(3, ge=-1, description="Restarts after a crash (-1: unlimited).")
    max_concurrency: int = Field(64, gt=0, description="Requests one replica serves at once.")


class ActorsConfig(Section):
    """Placement of every actor role (`rollout_worker.replicas`: how many rollout workers)."""

    seeker: ActorConfig = ActorConfig()
    counselor: ActorConfig = ActorConfig()
    judge: ActorConfig = ActorConfig()
    rollout_worker: ActorConfig = ActorConfig(max_concurrency=8)
    # Calls the store serves at once: concurrent puts share one commit (group commit,
    # actors/replay_store.py); with 1 every put pays its own commit (and fsync with store.synchronous FULL).
    store: ActorConfig = ActorConfig(max_concurrency=32)
    rm_trainer: ActorConfig = ActorConfig(max_concurrency=4)

    @model_validator(mode="after")
    def _one_store(self) -> ActorsConfig:
        if self.store.replicas != 1 or self.store.torch_threads is not None:
            raise ValueError(
                "actors.store takes replicas 1 and no torch_threads: one store holds a run's records"
                " and runs no model"
            )
        return self


class StoreConfig(Section):
    """The durable replay store."""

    path: str | None = Field(None, description="Store folder; default runs/<name>/store.")
    capacity: int = Field(
        100_000, gt=0, description="Most unconsumed records; producers wait when it is full."
    )
    synchronous: Literal["NORMAL", "FULL"] = Field(
        "NORMAL",
        description="NORMAL: a stored record survives a process crash; FULL: fsync per commit, survives"
        " power loss too.",
    )


class EvaluationConfig(Section):
    """Periodic evaluations inside `rlff run` (SR/AT on the dashboard); `rlff evaluate` is the full one."""

    every: int = Field(
        0, ge=0, description="Evaluate at version 0 and every N published versions; 0 = never."
    )
    episodes: int = Field(2, gt=0, le=64, description="PPDPP episodes per periodic evaluation.")
    max_turns: int = Field(4, gt=0, le=64, description="Counselor turns per periodic-evaluation episode.")
    scenarios: str | None = Field(None, description="Scenario spec to evaluate on; None: data.scenarios.")
    heldout: str | None = Field(
        None,
        description="Held-out contexts for the learning report, e.g. esconv:PATH#valid (never trained on);"
        " None: no held-out report.",
    )
    heldout_contexts: int = Field(
        48, gt=0, le=4096, description="Held-out contexts per report point (one per dialogue, in file order)."
    )
    heldout_samples: int | None = Field(
        None, gt=0, le=64, description="Sampled replies per held-out context; None: rollout.group_size."
    )


class ServeConfig(Section):
    """The counselor HTTP endpoint (OpenAI-compatible) and the live dashboard, on Ray Serve."""

    enabled: bool = Field(
        False, description="`rlff run` also serves the endpoint and dashboard while it trains."
    )
    host: str = Field("127.0.0.1", description="Bind address; loopback unless you mean to expose it.")
    allow_open: bool = Field(
        False,
        description="Serve on a non-loopback host without an API key; without it such a start is refused.",
    )
    port: int = Field(8000, gt=0, lt=65536, description="TCP port.")
    placement: Placement = Field(
        Placement(), description="Serve replicas, each with its own copy of the policy, and their resources."
    )
    max_ongoing_requests: int = Field(32, gt=0, description="Requests one replica holds at once.")
    # 16: on 2 cores, 16 concurrent clients got 5.5x one client's requests/s at 16 rows (bench/serving.py)
    max_batch_size: int = Field(16, gt=0, le=256, description="Most requests a replica decodes together.")
    batch_wait_ms: float = Field(
        10.0, ge=0.0, le=1000.0, description="How long an idle replica waits for company to start a batch."
    )
    poll_s: float = Field(0.05, gt=0.0, le=60.0, description="How often replicas look for newer weights.")
    max_request_bytes: int = Field(65536, gt=0, description="Largest request body accepted (413 beyond).")
    max_messages: int = Field(64, gt=0, description="Most messages one request may carry.")
    max_message_chars: int = Field(4000, gt=0, description="Longest message content, in characters.")
    max_tokens: int = Field(256, gt=0, le=4096, description="Largest max_tokens a request may ask for.")
    api_key_env: str = Field(
        "RLFF_API_KEY",
        description="Environment variable whose value, when set, is the required bearer token.",
    )
    feed_size: int = Field(20, gt=0, le=500, description="Latest simulated dialogues the dashboard lists.")


class RunConfig(Section):
    """Everything a run needs; written resolved to runs/<name>/config.json."""

    name: str = Field("local", pattern=r"^[A-Za-z0-9._-]+$", description="Run name; folder under runs_dir.")
    seed: int = Field(0, ge=0, description="Seed for sampling, splits and initialisation.")
    runs_dir: str = Field("runs", description="Folder holding one sub-folder per run.")
    data: DataConfig = DataConfig()
    seeker: SeekerConfig = SeekerConfig()
    counselor: CounselorConfig = CounselorConfig()
    judge: JudgeConfig = JudgeConfig()
    system_agent: SystemAgentConfig = SystemAgentConfig()
    episode: EpisodeConfig = EpisodeConfig()
    future: FutureConfig = FutureConfig()
    safety: SafetyConfig = SafetyConfig()
    rollout: RolloutConfig = RolloutConfig()
    actors: ActorsConfig = ActorsConfig()
    store: StoreConfig = StoreConfig()
    reward_model: RewardModelConfig = RewardModelConfig()
    reward_refresh: RewardRefreshConfig = RewardRefreshConfig()
    learner: LearnerConfig = LearnerConfig()
    sft: SFTConfig = SFTConfig()
    seeker_sft: SeekerSFTConfig = SeekerSFTConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    serve: ServeConfig = ServeConfig()

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_of_its_own(cls, name: str) -> str:
        if name in (".", ".."):
            raise ValueError(f"'{name}' would be runs_dir itself or the folder above it; give the run a name")
        return name

    @model_validator(mode="after")
    def _refresh_needs_simulated_futures(self) -> RunConfig:
        if self.reward_refresh.every and self.rollout.future_fraction == 0:
            raise ValueError(
                "reward_refresh.every retrains on simulated futures: set rollout.future_fraction above 0"
            )
        return self

    @model_validator(mode="after")
    def _no_format_gate_without_format(self) -> RunConfig:
        if not self.counselor.reasoning:  # a plain reply has no format: gating would zero every RM score
            self.learner.format_gate = False
        return self

    @model_validator(mode="after")
    def _live_serving_reads_published_files(self) -> RunConfig:
        if self.serve.enabled and self.learner.publish == "object_store":
            raise ValueError(
                "serve.enabled follows weights published to runs/<name>/weights, so it needs"
                " learner.publish 'filesystem'"
            )
        return self

    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def weights_dir(self) -> Path:
        """Where the learner publishes policy weights and counselor actors look for them."""
        return self.run_dir() / "weights"

    def checkpoint_dir(self) -> Path:
        """Where the learner saves its state (policy, reward model, optimizer, consumed ids)."""
        return self.run_dir() / "checkpoints"

    def store_dir(self) -> Path:
        return Path(self.store.path) if self.store.path else self.run_dir() / "store"

    def absolute(self) -> RunConfig:
        """This config with runs_dir and store.path made absolute, for processes whose working folder
        differs from the driver's (Ray Train workers run in their own)."""
        store = self.store.model_copy(
            update={"path": str(Path(self.store.path).resolve()) if self.store.path else None}
        )
        return self.model_copy(update={"runs_dir": str(Path(self.runs_dir).resolve()), "store": store})

    def replace(self, section: str, **changes: Any) -> RunConfig:
        """This config with fields of one section changed, validated as a loaded config is (how code
        changes a config: never through override strings)."""
        data = self.model_dump()
        data[section] = {**data[section], **changes}
        return RunConfig.model_validate(data)

    def write_resolved(self) -> Path:
        """Write the resolved config to runs/<name>/config.json and return that path."""
        path = self.run_dir() / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.model_dump(), indent=2) + "\n")
        return path


def apply_override(tree: dict[str, Any], override: str) -> None:
    """Set `a.b.c=value` inside a nested dict; the value is parsed as a YAML scalar."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {override!r} is not of the form section.key=value")
    node = tree
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is a value, not a section")
        node = child
    node[leaf] = _override_value(override, raw)


def _override_value(override: str, raw: str) -> Any:
    """The YAML value of an override's text; text that reads as a block mapping without braces
    (`esconv:`, `a: b`) stays text, so the field's own check names what is wrong with it."""
    if not raw.strip():
        return ""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"override {override!r}: the value is not valid YAML; quote it") from None
    return raw.strip() if isinstance(value, dict) and not raw.strip().startswith("{") else value


def _over_defaults(defaults: BaseModel, tree: dict[str, Any]) -> dict[str, Any]:
    """`tree` with every section it writes laid over that section's value in `defaults`, recursively, so
    a partial section changes only the keys it names: `actors: {store: {nice: 5}}` keeps the store's
    max_concurrency 32 rather than rebuilding `ActorConfig` with its class default 64. Only fields whose
    default is a model merge; lists, dicts and plain values replace the default whole, and keys the model
    lacks stay for validation to reject."""
    merged = dict(tree)
    for key, value in tree.items():
        default = getattr(defaults, key) if key in type(defaults).model_fields else None
        if isinstance(default, BaseModel) and isinstance(value, dict):
            merged[key] = {**default.model_dump(), **_over_defaults(default, value)}
    return merged


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"unknown config key '{where}'"
    if not where:
        return f"invalid config: {message}"
    return f"invalid value for '{where}': {message}"


def build_config(tree: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Validate a nested dict plus dotted overrides into a RunConfig, or raise ConfigError; a section the
    tree writes in part keeps the default config's values for the keys it leaves out."""
    tree = json.loads(json.dumps(tree))  # deep copy; config trees are plain data
    for override in overrides:
        apply_override(tree, override)
    try:
        return RunConfig.model_validate(_over_defaults(RunConfig(), tree))
    except ValidationError as error:
        raise ConfigError(_one_line(error)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML config (or the defaults when path is None), apply overrides, validate."""
    tree: Any = {}
    if path is not None:
        if not str(path).strip():
            raise ConfigError("the config file's path is empty; try configs/local.yaml")
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"config file {path} is a folder, not a file; try configs/local.yaml")
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist; try configs/local.yaml")
        if not path.is_file():
            raise ConfigError(f"config file {path} is not a regular file; try configs/local.yaml")
        try:
            tree = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as error:
            raise ConfigError(f"config file {path} is not UTF-8 text (byte {error.start})") from None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"config file {path}{line} is not valid YAML") from None
        tree = {} if tree is None else tree  # an empty file: the defaults
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections at the top level")
    return build_config(tree, overrides)
