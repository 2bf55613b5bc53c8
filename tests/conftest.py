"""Shared test fixtures: paths, the ESConv location, and skipping `gpu` tests without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ESCONV = REPO.parent / "shared" / "data" / "esconv"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

needs_esconv = pytest.mark.skipif(not (ESCONV / "train.jsonl").is_file(), reason=f"ESConv not at {ESCONV}")


def pytest_collection_modifyitems(config, items):
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
