from jobs.launcher import report_restarts


def test_restart_report_lines_and_count():
    before = {"judge-0": 10, "worker-0": 20, "seeker-0": 30, "counselor-0": None}
    after = {"judge-0": None, "worker-0": 21, "seeker-0": 30, "counselor-0": 40}
    lines, restarted = report_restarts(before, after)
    assert lines == [
        "actor judge-0 is down (pid 10); Ray is restarting it",
        "actor worker-0 restarted (pid 20 -> 21)",
        "actor counselor-0 is back (pid 40)",
    ]
    assert restarted == 2
    assert report_restarts(after, after) == ([], 0)
