"""esc.placement.lower_priority: every thread of the process, not only the caller (Linux keeps a
niceness per thread)."""

import os
import sys
import threading

import pytest

from esc.placement import lower_priority

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")


def _nice(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def test_it_reaches_threads_other_than_the_caller_and_threads_they_start_later():
    ready, done = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def other():
        seen["tid"] = threading.get_native_id()
        ready.set()
        done.wait(10)
        child = threading.Thread(target=lambda: seen.setdefault("child", _nice(threading.get_native_id())))
        child.start()
        child.join()

    def caller():  # in a thread of its own, as a Ray actor's init is, so this test's process keeps its own
        thread = threading.Thread(target=other)
        thread.start()
        ready.wait(10)
        before = _nice(seen["tid"])
        lower_priority(2)
        seen["after"], seen["before"] = _nice(seen["tid"]), before
        done.set()
        thread.join()

    # a child process: niceness never goes down again without privilege
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            runner = threading.Thread(target=caller)
            runner.start()
            runner.join()
            want = min(19, seen["before"] + 2)
            code = 0 if seen["after"] == want and seen["child"] == want and _nice(os.getpid()) == want else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
