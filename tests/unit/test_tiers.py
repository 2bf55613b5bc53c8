"""The test tiers stay honest: unit tests import no Ray (not even through tests/support) and carry no
`slow` mark, and every test file sits in a tier folder, so `pytest -m unit` is the whole fast tier."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO, TIERS, tier_of

TESTS = REPO / "tests"
UNIT = sorted((TESTS / "unit").glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every absolute module a file imports, at any depth (inside functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def is_ray(name: str) -> bool:
    return name == "ray" or name.startswith("ray.")


def test_imported_modules_sees_every_form_of_import(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text("import ray.util\ndef f():\n    from ray import train\nfrom support import ray_helpers\n")
    assert {"ray.util", "ray", "ray.train", "support.ray_helpers"} <= imported_modules(path)


def test_unit_tests_never_import_ray():
    ray_support = {
        f"support.{path.stem}"
        for path in (TESTS / "support").glob("*.py")
        if any(is_ray(name) for name in imported_modules(path))
    }
    offenders = {
        path.name: sorted(name for name in imported_modules(path) if is_ray(name) or name in ray_support)
        for path in UNIT
    }
    offenders = {name: modules for name, modules in offenders.items() if modules}
    assert not offenders, f"unit tests must not import Ray; move these to tests/integration: {offenders}"


def test_no_unit_test_is_marked_slow():
    marked = [
        path.name
        for path in UNIT
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr == "slow"
        and ast.unparse(node.value).endswith(".mark")
    ]
    assert not marked, f"slow tests belong in tests/integration or tests/e2e: {marked}"


def test_every_test_file_sits_in_a_tier_folder():
    files = [path for path in TESTS.rglob("test_*.py") if "support" not in path.parts]
    assert files and all(tier_of(path) in TIERS for path in files), [
        str(path.relative_to(TESTS)) for path in files if tier_of(path) is None
    ]


def test_skipped_tests_are_summed_up_with_what_runs_them():
    from conftest import skip_summary

    lines = skip_summary(
        ["Skipped: Debian chromium is not installed"] * 2 + ["Skipped: needs a CUDA GPU", "Skipped: other"]
    )
    assert lines[0] == (
        "did not run 2 test(s): Debian chromium is not installed; to run them: sudo apt-get install chromium"
        " (or run with CI=true to fail instead)"
    )
    assert lines[1].endswith("to run them: run on a machine with a CUDA GPU")
    assert lines[2] == "did not run 1 test(s): other"
