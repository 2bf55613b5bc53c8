from jobs.launcher import init_failure, report_restarts


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


def test_a_failed_constructor_reads_as_its_actor_and_last_exception_line():
    # the shape of Ray 2.60's ActorDiedError text when __init__ raised (seen with a real actor)
    message = (
        "The actor died because of an error raised in its creation task,"
        " \x1b[36mray::rlff-local-6fd5bb7c-counselor-0:Counselor.__init__()\x1b[39m (pid=4630)\n"
        '  File "/x/actors/counselor.py", line 40, in __init__\n'
        "    raise ValueError('wrapped')\n"
        "ValueError: wrapped\n\nDuring handling of the above exception, another exception occurred:\n"
        '  File "/x/esc/models.py", line 117, in _resolve_external\n'
        "esc.models.ModelNotFoundError: model folder /nope does not exist; give a folder with config.json\n"
    )
    assert init_failure(message) == (
        "the Counselor actor could not start: ModelNotFoundError: model folder /nope does not exist; give a"
        " folder with config.json"
    )
    assert init_failure("no traceback here") == "a role actor could not start (its log says why)"
    unnamed = "creation task, ray::Judge.__init__() (pid=1)\nKeyError: 'x'"
    assert init_failure(unnamed) == "the Judge actor could not start: KeyError: 'x'"
