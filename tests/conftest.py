"""Shared test fixtures: paths, the ESConv location, the tier markers, and skipping `gpu` tests
without a GPU.

Every test is marked with its folder's tier (tests/unit -> `unit`, and so on), so `pytest -m unit`
runs the fast tier; tests/README.md says what each tier may use."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ESCONV = REPO.parent / "shared" / "data" / "esconv"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TIERS = ("unit", "integration", "e2e", "gpu", "vllm", "deepspeed")
# Tiers whose packages are large or slow to build: collected only when their folder is named on the
# command line (`make test-vllm`, `make test-deepspeed`), never by a bare `pytest` or `make test`.
OPT_IN = ("vllm", "deepspeed")

# A suite a script starts in the background (`make test &`) inherits SIGINT ignored, and so would every
# `rlff` process a test starts: the tests that stop a run with Ctrl-C would find it ignored (a
# clean-clone CI run started so failed test_run_resume, 2026-12-07). The test process takes Python's
# usual handler back, so the processes it starts begin with SIGINT at its default, as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

needs_esconv = pytest.mark.skipif(not (ESCONV / "train.jsonl").is_file(), reason=f"ESConv not at {ESCONV}")


def tier_of(path: Path) -> str | None:
    """The tier of a test file: the folder under tests/ it sits in, or None outside the tiers."""
    try:
        folder = Path(path).resolve().relative_to(REPO / "tests").parts[0]
    except ValueError:
        return None
    return folder if folder in TIERS else None


def pytest_ignore_collect(collection_path, config):
    tier = tier_of(collection_path)
    if tier not in OPT_IN:
        return None
    named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    folder = REPO / "tests" / tier
    return not any(arg == folder or folder in arg.parents for arg in named) or None


# tryfirst: the markers must be on the items before `-m` deselects by them.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = tier_of(item.path)
        if tier:
            item.add_marker(tier)
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# What to do to run the tests a skip reason names (matched on the reason's start).
HOW_TO_RUN = {
    "Debian chromium is not installed": "sudo apt-get install chromium (or run with CI=true to fail instead)",
    "ESConv not": "put ESConv (thu-coai/Emotional-Support-Conversation, CC BY-NC) at that path",
    "no FailedESConv.json": "put ESConv's FailedESConv.json beside its splits (../shared/data/esconv)",
    "DeepSpeed": "DS_BUILD_OPS=0 .venv/bin/pip install --no-build-isolation deepspeed",
    "needs a CUDA GPU": "run on a machine with a CUDA GPU",
}


def skip_summary(reasons: list[str]) -> list[str]:
    """One line per distinct skip reason: how many tests did not run, why, and how to run them."""
    lines = []
    for reason, count in Counter(r.removeprefix("Skipped: ") for r in reasons).items():
        fix = next((how for start, how in HOW_TO_RUN.items() if reason.startswith(start)), None)
        lines.append(f"did not run {count} test(s): {reason}" + (f"; to run them: {fix}" if fix else ""))
    return lines


def pytest_terminal_summary(terminalreporter):
    reports = terminalreporter.stats.get("skipped", [])
    reasons = [r.longrepr[2] if isinstance(r.longrepr, tuple) else str(r.longrepr) for r in reports]
    for line in skip_summary(reasons):
        terminalreporter.write_line(line, yellow=True, bold=True)
