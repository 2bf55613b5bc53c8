"""Freed memory goes back to the OS (glibc): resident size drops after a large freed allocation."""

import ctypes

import psutil
import pytest

from esc.memory import release_free_memory


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
