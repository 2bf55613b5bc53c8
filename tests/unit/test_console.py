"""The run's console: one readable progress line per update, library chatter in a file."""

import logging
import warnings

import pytest

from jobs.console import LIBRARY_LOGGERS, Progress, progress_line, quiet_libraries


@pytest.fixture
def restore_logging():
    names = (*LIBRARY_LOGGERS, "py.warnings")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate) for n in names}
    yield
    logging.captureWarnings(False)
    for handler in logging.getLogger("py.warnings").handlers:
        handler.close()
    for name, (handlers, propagate) in saved.items():
        logging.getLogger(name).handlers, logging.getLogger(name).propagate = handlers, propagate


def test_progress_line_names_every_figure():
    line = progress_line(
        3,
        8,
        3,
        {"reward_mean": 0.3812, "format_rate": 0.95},
        {"heldout_reward": 0.41, "heldout_reward_lo": 0.35, "heldout_reward_hi": 0.47, "weights_version": 0},
        41.0,
    )
    assert line == (
        "update 3/8  v3  held-out reward 0.410 [0.350, 0.470] @v0  train reward 0.381  format 0.95"
        "  41 s/update  ~3m25s left"
    )
    assert "held-out reward -" in progress_line(1, 8, 1, {}, {}, None)


def test_progress_prints_once_per_new_version_and_measures_from_its_start(capsys):
    now = [100.0]
    progress = Progress(planned=4, start_version=2, clock=lambda: now[0])
    assert progress.update({}) is None
    now[0] = 130.0
    line = progress.update({"learner": {"weights_version": 3, "reward_mean": 0.5}})
    assert line is not None and line.startswith("update 3/4  v3") and "30 s/update  ~30s left" in line
    assert progress.update({"learner": {"weights_version": 3}}) is None  # same version: no new line
    assert capsys.readouterr().out == line + "\n"


def test_library_records_and_warnings_go_to_the_file_not_the_terminal(tmp_path, capsys, restore_logging):
    log = quiet_libraries(tmp_path / "run.log")
    logging.getLogger("ray.train").warning("a repeated Ray Train warning")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a deprecation", DeprecationWarning, stacklevel=1)
    for handler in logging.getLogger("ray").handlers:
        handler.flush()
    captured = capsys.readouterr()
    assert "repeated Ray Train" not in captured.err + captured.out
    text = log.read_text()
    assert "a repeated Ray Train warning" in text and "a deprecation" in text


def test_a_second_call_closes_the_first_file_handler(tmp_path, restore_logging):
    quiet_libraries(tmp_path / "first.log")
    first = logging.getLogger("py.warnings").handlers[0]
    quiet_libraries(tmp_path / "second.log")
    assert first.stream is None  # closed by the second call, not left to the garbage collector
    assert all(
        logger.handlers[0].baseFilename.endswith("second.log")
        for logger in map(logging.getLogger, (*LIBRARY_LOGGERS, "py.warnings"))
    )
