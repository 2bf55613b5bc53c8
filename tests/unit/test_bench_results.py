"""bench/results.py --add: one benchmark's rows replace its old rows in the results table only."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load_results_module():
    spec = importlib.util.spec_from_file_location("bench_results", REPO / "bench" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_add_replaces_rows_in_the_results_table_and_leaves_other_tables_alone(tmp_path):
    results = load_results_module()
    results.ROOT = tmp_path
    (tmp_path / "bench").mkdir()
    (tmp_path / "docs").mkdir()
    old = {"name": "publish_to_serve_latency", "value": 1.0, "unit": "s", "goal": "<= 0.5", "met": False}
    (tmp_path / "bench" / "results.json").write_text(json.dumps([old]))
    page = [
        "# Benchmarks", results.BEGIN,
        "| publish_to_serve_latency | 1.0 | s | <= 0.5 | **no** | `cmd` |",
        results.END, "", "| figure | script | what |", "|---|---|---|",
        "| publish_to_serve_latency | `bench/serving.py` | how it is measured |",
    ]  # fmt: skip
    (tmp_path / "docs" / "benchmarks.md").write_text("\n".join(page))
    raw = {
        "name": "serving", "machine": "m", "publish_to_serve_s": [0.4, 0.5],
        "publish_to_serve_median_s": 0.45, "publish_to_serve_max_s": 0.5, "throughput_ratio": 4.2,
        "errors": 0, "batch": 16,
        "many_clients_p50_s": 10.0, "many_clients_p99_s": 11.0,
    }  # fmt: skip
    results.add(raw, "2026-12-05")
    text = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "| publish_to_serve_latency | `bench/serving.py` | how it is measured |" in text
    table = text[text.index(results.BEGIN) : text.index(results.END)]
    assert "| publish_to_serve_latency | 1.0 |" not in table
    assert "| publish_to_serve_latency | 0.45 |" in table and "| serve_load_16_clients | 4.2 |" in table
    stored = {r["name"]: r for r in json.loads((tmp_path / "bench" / "results.json").read_text())}
    assert stored["publish_to_serve_latency"]["met"] is True
    assert stored["serve_load_16_clients"]["met"] is False


def test_a_run_all_output_replaces_its_rows_and_keeps_the_others_with_their_dates(tmp_path):
    results = load_results_module()
    results.ROOT = tmp_path
    (tmp_path / "bench").mkdir()
    (tmp_path / "docs").mkdir()
    old = [
        {"name": "batched_inference", "value": 3.0, "unit": "x", "goal": ">= 3", "met": True,
         "machine": "m", "date": "2026-11-28", "command": "c"},
        {"name": "chaos_soak", "value": 14, "unit": "kills (measured 2026-12-05)", "goal": ">= 10",
         "met": True, "machine": "m", "date": "2026-12-05", "command": "c"},
        {"name": "make_run_first", "value": 27.2, "unit": "minutes", "goal": "<= 40", "met": True,
         "machine": "m", "date": "2026-12-04", "command": "c"},
    ]  # fmt: skip
    (tmp_path / "bench" / "results.json").write_text(json.dumps(old))
    (tmp_path / "docs" / "benchmarks.md").write_text("\n".join(["# B", results.BEGIN, results.END, ""]))
    out = tmp_path / "out"
    out.mkdir()
    raw = {"name": "batched_inference", "machine": "m", "ratio": 4.1, "sequential_tokens_per_s": 25.0,
           "batched_tokens_per_s": 102.5, "requests": 8}  # fmt: skip
    (out / "batched_inference.json").write_text(json.dumps(raw))
    results.sys.argv = ["results.py", str(out), "2026-12-06"]
    results.main()
    stored = {r["name"]: r for r in json.loads((tmp_path / "bench" / "results.json").read_text())}
    assert set(stored) == {"batched_inference", "chaos_soak", "make_run_first"}
    assert stored["batched_inference"]["value"] == 4.1 and stored["batched_inference"]["date"] == "2026-12-06"
    assert stored["chaos_soak"]["unit"] == "kills (measured 2026-12-05)"  # not dated twice
    assert stored["make_run_first"]["unit"] == "minutes (measured 2026-12-04)"
    table = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "| make_run_first | 27.2 | minutes (measured 2026-12-04) |" in table


def _decode_side(b1: float, b8: float, linear: bool) -> dict:
    side = {
        "model_mb": 538.1, "bound_tokens_per_s": 48.5, "b1_tokens_per_s": b1, "b8_tokens_per_s": b8,
        "b1_share_of_bound": round(b1 / 48.5, 3), "b8_over_b1": round(b8 / b1, 2),
    }  # fmt: skip
    if linear:
        side |= {"linear_b1_ms": 24.0, "linear_b8_ms": 48.0, "linear_b8_over_b1": 4.0}
    return side


def test_decode_bound_rows_name_the_speedup_of_the_linear_layers_when_it_was_measured():
    results = load_results_module()
    for linear in (True, False):
        raw = {
            "name": "decode_bound", "read_gb_s": 26.1,
            "float32": _decode_side(28.6, 117.2, linear), "bfloat16": _decode_side(25.3, 160.1, linear),
        }  # fmt: skip
        rows = {name: (value, unit, met) for name, value, unit, _, met in results.figures(raw)}
        value, unit, met = rows["decode_b8_over_b1"]
        assert value == 4.1 and met is False
        assert ("so 4.0x alone (bfloat16 4.0x)" in unit) is linear
        assert unit.endswith(")") and unit.count("(") == unit.count(")")


def test_make_run_time_rows_without_the_cached_run_leave_its_rows_out():
    results = load_results_module()
    raw = {
        "name": "make_run_time", "first_s": 1800.0, "first_minutes_to_format": 12.4,
        "reward_model_s": 400.0, "sft_s": 300.0, "seeker_sft_s": 150.0,
    }  # fmt: skip
    rows = {name: (value, unit, met) for name, value, unit, _, met in results.figures(raw)}
    assert set(rows) == {"make_run_first", "make_run_minutes_to_format"}
    assert rows["make_run_first"][0] == 30.0 and rows["make_run_first"][2] is True
    value, unit, met = rows["make_run_minutes_to_format"]
    assert value == 12.4 and met is False and "cached" not in unit
    assert results.rows_of({**raw, "first_only": True}, "2026-12-06")[0]["command"].endswith("--first-only")
    both = {**raw, "cached_s": 900.0, "cached_minutes_to_format": 0.6}
    rows = {name: (value, unit, met) for name, value, unit, _, met in results.figures(both)}
    assert rows["make_run_cached"][0] == 15.0
    assert rows["make_run_minutes_to_format"][1].endswith("(the cached run: 0.6)")
