"""Freed memory goes back to the OS (glibc): resident size drops after a large freed allocation; a peak
window reports the largest resident size inside it, and the learner's stages record theirs."""

import ctypes

import psutil
import pytest

from esc.memory import peak_rss_gb, release_free_memory, start_peak_window
from learner.loop import Stages


def test_released_pages_leave_the_resident_set():
    if not release_free_memory():
        pytest.skip("malloc_trim is glibc-only")
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    blocks = [libc.malloc(4096) for _ in range(40_000)]  # ~160 MB in small chunks on the heap
    for block in blocks:
        ctypes.memset(block, 1, 4096)
    blocks.append(libc.malloc(64))  # a live block on top keeps the heap from shrinking by itself
    for block in blocks[:-1]:
        libc.free(block)
    before = psutil.Process().memory_info().rss
    assert release_free_memory()
    assert before - psutil.Process().memory_info().rss > 100 * 2**20
    libc.free(blocks[-1])


def test_a_peak_window_sees_a_freed_allocation_and_a_new_window_forgets_it():
    if not start_peak_window():
        pytest.skip("no /proc/self/clear_refs: the peak cannot be reset here")
    resident = psutil.Process().memory_info().rss / 1e9
    stages = Stages()
    with stages("big"):
        block = b"\x01" * 300_000_000  # every page written, so every page resident
        del block
    with stages("small"):
        pass
    assert stages.figures["stage_big_peak_gb"] - resident > 0.25
    assert stages.figures["stage_small_peak_gb"] < stages.figures["stage_big_peak_gb"] - 0.25
    assert set(stages.figures) == {f"stage_{n}_{k}" for n in ("big", "small") for k in ("s", "peak_gb")}
    assert peak_rss_gb() == pytest.approx(stages.figures["stage_small_peak_gb"], abs=0.05)
