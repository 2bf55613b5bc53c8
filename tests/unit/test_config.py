import json
import subprocess
import sys

import pytest

from esc.config import ConfigError, RunConfig, build_config, load_config

REPO_CONFIGS = ["configs/local.yaml", "configs/gpu.yaml", "configs/endpoint.yaml"]


def test_defaults_are_the_embedded_setup():
    config = RunConfig()
    assert config.counselor.model == "smollm2-135m"
    assert config.judge.scorer == "likelihood"
    assert config.episode.max_turns == 8
    assert config.future.horizon == 2


@pytest.mark.parametrize("path", REPO_CONFIGS)
def test_shipped_configs_validate(path):
    config = load_config(path)
    assert config.name in {"local", "gpu", "endpoint"}


def test_endpoint_config_trains_here_and_asks_the_server_for_the_rest():
    config = load_config("configs/endpoint.yaml")
    roles = (config.seeker, config.system_agent, config.judge)
    assert {r.backend for r in roles} == {"openai"} and config.counselor.backend == "hf"
    assert {r.api_key_env for r in roles} == {"RLFF_ENDPOINT_KEY"}  # the key comes from the environment
    assert config.judge.scorer == "likelihood" and config.rollout.future_fraction == 1.0
    assert config.reward_refresh.every > 0 and config.reward_refresh.data_weight > 0


def test_gpu_config_places_every_role_on_gpus():
    config = load_config("configs/gpu.yaml")
    assert (config.seeker.backend, config.judge.backend) == ("vllm", "vllm")
    assert (
        config.counselor.backend == "hf" and config.counselor.device == "cuda"
    )  # it loads published weights
    assert (config.learner.strategy, config.learner.zero_stage, config.learner.use_gpu) == (
        "deepspeed",
        2,
        True,
    )
    assert all(getattr(config.actors, r).num_gpus >= 1 for r in ("seeker", "counselor", "judge"))
    assert config.serve.enabled and config.serve.placement.num_gpus == 1


def test_overrides_are_typed():
    config = load_config(
        "configs/local.yaml",
        ["learner.lr=3e-6", "counselor.reasoning=false", "episode.max_turns=4", "name=trial-2"],
    )
    assert config.learner.lr == pytest.approx(3e-6)
    assert config.counselor.reasoning is False
    assert config.episode.max_turns == 4
    assert config.name == "trial-2"


@pytest.mark.parametrize(
    "override, message",
    [
        ("learner.lrr=3e-6", "unknown config key 'learner.lrr'"),
        ("lerner.lr=3e-6", "unknown config key 'lerner'"),
        ("learner.lr=-1", "invalid value for 'learner.lr'"),
        ("episode.max_turns=zero", "invalid value for 'episode.max_turns'"),
        ("learner.lr", "is not of the form section.key=value"),
        ("learner.lr.x=1", "'lr' is a value, not a section"),
        ("learner.lr=[1", "the value is not valid YAML; quote it"),
        ("name=!!python/object:os.system", "the value is not valid YAML"),
        ("name=a\x07b", "the value is not valid YAML"),
        ("name=..", "'..' would be runs_dir itself or the folder above it"),
        ("name=.", "invalid value for 'name'"),
        # text that reads as a mapping stays text: the field's own check speaks
        ("name=a: b", "invalid value for 'name': String should match pattern"),
    ],
)
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(ConfigError) as error:
        load_config("configs/local.yaml", [override])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "tree, message",
    [
        ({"counselor": {"backend": "openai"}}, "needs base_url"),
        ({"future": {"class_edges": [0.5, 0.0]}}, "strictly ascending"),
        ({"rollout": {"group_size": 1}}, "rollout.group_size"),
        (
            {"reward_refresh": {"every": 2}, "rollout": {"future_fraction": 0.0}},
            "reward_refresh.every retrains on simulated futures",
        ),
        (  # 4 ranks would take a group each, 4 an update, while the staleness gate admits 2
            {"learner": {"batch_size": 2, "placement": {"replicas": 4}}},
            "learner.batch_size 2 must be a multiple of learner.placement.replicas 4",
        ),
    ],
)
def test_cross_field_rules(tree, message):
    with pytest.raises(ConfigError, match=message):
        build_config(tree)


def test_a_small_budget_needs_no_other_change():
    # the overlong penalty starts at a token count, so shrinking the budget below it just turns it off
    config = load_config("configs/local.yaml", ["counselor.max_new_tokens=8"])
    assert config.learner.overlong_start == 64 and config.counselor.max_new_tokens == 8


def test_judge_on_openai_keeps_the_likelihood_scorer_and_a_concurrency_limit():
    config = build_config({"judge": {"backend": "openai", "base_url": "http://x/v1", "max_concurrent": 32}})
    assert config.judge.scorer == "likelihood"
    assert (config.judge.max_concurrent, config.seeker.max_concurrent) == (32, 8)
    with pytest.raises(ConfigError, match="judge.max_concurrent"):
        build_config({"judge": {"max_concurrent": 0}})


def test_overriding_one_system_agent_field_keeps_its_other_defaults():
    config = load_config(None, ["system_agent.model=tiny-random"])
    assert config.system_agent.model == "tiny-random"
    assert config.system_agent.reasoning is False and config.system_agent.max_new_tokens == 64


def test_cross_field_errors_read_as_sentences():
    with pytest.raises(ConfigError) as error:
        build_config({"counselor": {"backend": "openai"}})
    assert str(error.value) == (
        "invalid value for 'counselor': backend 'openai' needs base_url, e.g. http://127.0.0.1:8001/v1"
    )


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("learner:\n  lr: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+ is not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)
    scalar.write_text("[]\n")  # an empty list is no mapping either (not the defaults)
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="path is empty"):
        load_config("")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin.yaml is not UTF-8 text \(byte 9\)"):
        load_config(latin)


def test_a_text_value_with_a_colon_stays_text_and_braces_make_a_mapping():
    config = load_config(None, ["data.scenarios=esconv:", "actors.seeker.resources={rollout_node: 1}"])
    assert config.data.scenarios == "esconv:" and config.actors.seeker.resources == {"rollout_node": 1}


def test_resolved_config_is_written_to_the_run_dir(tmp_path):
    config = load_config("configs/local.yaml", [f"runs_dir={tmp_path}", "name=r1", "learner.lr=2e-6"])
    path = config.write_resolved()
    assert path == tmp_path / "r1" / "config.json"
    assert RunConfig.model_validate(json.loads(path.read_text())) == config


def test_every_field_is_documented():
    def walk(model):
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, RunConfig.__mro__[1]):
                walk(annotation)
            else:
                assert field.description, f"{model.__name__}.{name} has no description"

    walk(RunConfig)


def test_config_module_imports_without_torch_or_ray():
    code = "import sys, esc.config; print(sorted(m for m in ('torch', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_domain_layer_never_imports_ray():
    code = (
        "import pkgutil, importlib, sys, esc, esc.backends\n"
        "names = [m.name for m in pkgutil.walk_packages(esc.__path__, 'esc.')]\n"
        "[importlib.import_module(n) for n in names]\n"
        "print(len(names), 'ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, has_ray = out.stdout.split()
    assert int(count) >= 10 and has_ray == "False"
