"""The `rlff` command line, run as a real subprocess: commands that load neither a model nor Ray."""

import json
import subprocess
import sys

import pytest
from conftest import ESCONV, REPO, needs_esconv


def rlff(*args):
    return subprocess.run(
        [sys.executable, "-m", "jobs.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_help_lists_subcommands():
    out = rlff("--help")
    assert out.returncode == 0
    for command in ("config", "chat", "data", "prepare", "evaluate", "judge-check"):
        assert command in out.stdout


def test_config_show_prints_the_override():
    out = rlff("config", "show", "--config", "configs/local.yaml", "--set", "learner.lr=3e-6")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["learner"]["lr"] == pytest.approx(3e-6)


def test_misspelt_key_exits_2_with_one_line():
    out = rlff("config", "show", "--config", "configs/local.yaml", "--set", "learner.lrr=3e-6")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["error: unknown config key 'learner.lrr'"]
    assert out.stdout == ""


def test_bad_data_spec_is_one_line():
    out = rlff("data", "stats", "esconv:/definitely/not/here")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert "/definitely/not/here" in out.stderr


def test_data_stats_builtin_json():
    out = rlff("data", "stats", "builtin", "--json")
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert stats["total"] == sum(stats["splits"].values()) == 30


@needs_esconv
@pytest.mark.skipif(not (ESCONV / "FailedESConv.json").is_file(), reason="no FailedESConv.json")
def test_data_stats_esconv_splits():
    out = rlff("data", "stats", f"esconv:{ESCONV}", "--json")
    assert json.loads(out.stdout)["splits"] == {"train": 910, "valid": 195, "test": 195}
    table = rlff("data", "stats", f"esconv:{ESCONV / 'FailedESConv.json'}")
    assert table.returncode == 0
    assert "196 dialogues" in table.stdout


def test_serve_and_object_store_publishing_do_not_mix():
    out = rlff("config", "show", "--set", "serve.enabled=true", "--set", "learner.publish=object_store")
    assert out.returncode == 2 and "needs learner.publish 'filesystem'" in out.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stage", "sft", "--defer-report"], "error: --defer-report goes with --stage rm only"),
        (["--stage", "rm", "--beside", "12"], "error: --beside goes with --stage heldout only"),
        (
            ["--stage", "heldout", "--beside", "0"],
            "error: --beside takes a process id (a positive number), got 0",
        ),
    ],
)
def test_stage_flags_that_do_not_fit_are_one_line(args, message):
    out = rlff("train", "--config", "configs/local.yaml", *args)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [message]


def test_resume_refuses_an_empty_path_and_a_folder_whose_config_names_no_run(tmp_path):
    (tmp_path / "config.json").write_text('{"seed": 1}')
    for args, message in [
        (["--resume="], "error: --resume needs a run folder (runs/<name>), not an empty path"),
        (["--resume", str(tmp_path)], f"error: {tmp_path / 'config.json'} is not the config a run wrote"),
    ]:
        out = rlff("run", *args)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert message in out.stderr


def test_collect_refuses_data_with_no_dialogues_before_starting_ray(tmp_path):
    from esc.config import build_config
    from jobs import UsageError
    from jobs.collect import run_collect

    (tmp_path / "empty.jsonl").write_text("")
    config = build_config({"runs_dir": str(tmp_path / "runs")})
    with pytest.raises(UsageError, match="holds no dialogues to collect from"):
        run_collect(config, f"esconv:{tmp_path / 'empty.jsonl'}", limit=1)
    assert not (tmp_path / "runs").exists()  # nothing written, no Ray started


def test_the_reward_model_stage_refuses_a_file_as_its_out_folder(tmp_path):
    from esc.config import build_config
    from jobs import UsageError
    from jobs.train_rm import rm_folder

    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match="afile is a file; the reward model is saved to a folder"):
        rm_folder(build_config({}), str(tmp_path / "afile"))
    assert rm_folder(build_config({}), str(tmp_path / "rm")) == tmp_path / "rm"


@pytest.mark.parametrize(
    "args", [["chat", "--model="], ["evaluate", "--out", " "], ["serve", "--checkpoint="]]
)
def test_an_empty_option_value_is_refused_not_taken_as_the_default(args, capsys):
    from jobs.cli import main

    assert main(args) == 2
    name = args[1].split("=")[0]
    assert capsys.readouterr().err == f"error: {name} needs a value, not an empty string\n"
