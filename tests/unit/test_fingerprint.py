"""Cached stages rebuild only when their inputs change (jobs/fingerprint.py)."""

from jobs.fingerprint import fingerprint, is_current, mark


def test_fingerprint_follows_settings_and_file_contents_not_dates(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("a\n")
    base = fingerprint({"lr": 1e-4, "seed": 0}, [data])
    assert fingerprint({"seed": 0, "lr": 1e-4}, [data]) == base  # key order does not matter
    assert fingerprint({"lr": 2e-4, "seed": 0}, [data]) != base
    data.touch()  # a new date alone
    assert fingerprint({"lr": 1e-4, "seed": 0}, [data]) == base
    data.write_text("b\n")
    assert fingerprint({"lr": 1e-4, "seed": 0}, [data]) != base


def test_mark_then_is_current(tmp_path):
    out = tmp_path / "stage"
    assert not is_current(out, "abc")
    mark(out, "abc")
    assert is_current(out, "abc")
    assert not is_current(out, "abd")
