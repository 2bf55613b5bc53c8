"""The docs: generated reference pages match the code, and every relative link points somewhere real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobs.reference import config_reference, metrics_glossary

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize(
    ("page", "generate"), [("configuration.md", config_reference), ("metrics.md", metrics_glossary)]
)
def test_generated_pages_are_up_to_date(page, generate):
    committed = (ROOT / "docs" / page).read_text()
    assert committed == generate(), f"docs/{page} is out of date; run `make docs`"


def leaf_keys(model, prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        nested = getattr(field.annotation, "model_fields", None)
        keys += leaf_keys(field.annotation, f"{prefix}{name}.") if nested else [f"{prefix}{name}"]
    return keys


def test_every_config_key_and_metric_is_documented():
    from actors.metrics_hub import METRICS
    from esc.config import RunConfig

    reference = config_reference()
    keys = leaf_keys(RunConfig)
    assert "actors.counselor.num_cpus" in keys and len(keys) > 100
    assert [k for k in keys if f"| `{k}` |" not in reference] == []
    glossary = metrics_glossary()
    assert [name for name in METRICS if f"| `{name}` |" not in glossary] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.name} links to {target}, which does not exist"


def test_reference_shows_a_nested_section_default_not_its_class_default():
    # LearnerConfig holds Placement(num_cpus=1.0); the Placement class default is 0.0
    reference = config_reference()
    assert "| `learner.placement.num_cpus` | float | `1.0` |" in reference
    assert "| `actors.store.max_concurrency` | int | `32` |" in reference
