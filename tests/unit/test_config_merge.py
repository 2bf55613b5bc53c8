"""A section a config file or override writes in part keeps the default config's values for the rest: a
nested section's default can differ from its class's (`actors.store.max_concurrency` is 32, the
`ActorConfig` class default 64), and writing one key of it must not reset the others to the class's."""

import pytest

from esc.config import ConfigError, LearnerConfig, RunConfig, _over_defaults, build_config, load_config
from esc.config_placement import Placement


def test_a_partial_actor_section_in_yaml_keeps_the_roles_default():
    config = load_config("configs/endpoint.yaml")  # actors: {rollout_worker: {nice: 5}, ...}
    assert config.actors.rollout_worker.nice == 5
    assert config.actors.rollout_worker.max_concurrency == 8
    assert config.actors.seeker.max_concurrency == 64  # a role whose default is the class default


def test_an_override_into_a_nested_section_keeps_its_other_defaults():
    config = load_config("configs/local.yaml", ["actors.store.nice=5"])
    assert (config.actors.store.nice, config.actors.store.max_concurrency) == (5, 32)
    assert load_config(None, ["actors.rm_trainer.nice=3"]).actors.rm_trainer.max_concurrency == 4


def test_a_partial_learner_placement_keeps_its_reserved_cpu():
    config = build_config({"learner": {"placement": {"replicas": 2}}})
    assert (config.learner.placement.replicas, config.learner.placement.num_cpus) == (2, 1.0)


def test_merging_leaves_sections_the_tree_does_not_write_as_the_defaults():
    assert build_config({}) == RunConfig()
    assert build_config({"actors": {}}).actors == RunConfig().actors


@pytest.mark.parametrize(
    "tree, overrides, message",
    [
        ({"actors": {"store": {"nice": 5, "bogus": 1}}}, [], "unknown config key 'actors.store.bogus'"),
        (
            {"actors": {"rollout_worker": {"nice": 5}}},
            ["actors.rollout_worker.bogus=1"],
            "unknown config key 'actors.rollout_worker.bogus'",
        ),
        (
            {"actors": {"rollout_worker": {"nice": 99}}},
            [],
            "invalid value for 'actors.rollout_worker.nice': Input should be less than or equal to 19",
        ),
        (
            {"actors": {"store": 5}},
            [],
            "invalid value for 'actors.store': Input should be a valid dictionary or instance of ActorConfig",
        ),
        (
            {"actors": {"store": {"nice": 5, "replicas": 2}}},
            [],
            "invalid value for 'actors': actors.store takes replicas 1 and no torch_threads: one store holds"
            " a run's records and runs no model",
        ),
    ],
)
def test_errors_inside_a_partial_section_read_as_before(tree, overrides, message):
    with pytest.raises(ConfigError) as error:
        build_config(tree, overrides)
    assert str(error.value) == message


def test_a_list_written_in_yaml_replaces_the_default_list(tmp_path):
    path = tmp_path / "edges.yaml"
    path.write_text("future:\n  class_edges: [0.5]\n")
    assert RunConfig().future.class_edges == [-0.25, 0.25]
    config = load_config(path)
    assert config.future.class_edges == [0.5] and config.future.horizon == 2


def test_a_mapping_valued_field_replaces_the_default_mapping():
    # no shipped default holds a non-empty mapping, so lay a tree over a section default that does
    defaults = LearnerConfig(placement=Placement(num_cpus=1.0, resources={"policy_gpu": 1}))
    tree = _over_defaults(defaults, {"placement": {"resources": {"learner_gpu": 2}}})
    assert tree["placement"]["resources"] == {"learner_gpu": 2}
    assert tree["placement"]["num_cpus"] == 1.0
