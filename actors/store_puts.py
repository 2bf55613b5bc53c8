"""Puts from one process's concurrent tasks to the replay store, coalesced into fewer calls.

A rollout worker works on several contexts at once (`rollout.in_flight`) and puts each finished group
with its own `put_many` call. Through a Ray actor every call costs a round trip (about 0.6 ms of CPU
in the store actor and as much in the worker here, `bench/store_actor.py`), whatever it carries.
`CoalescedPuts` sends a put at once when no call of its own is in flight; puts that arrive while one is
in flight wait for it and then go together, in arrival order, in the next call. No timer: a lone put is
never delayed, and a burst of puts costs one call per round trip instead of one per put.

The store answers each row separately ('stored', 'duplicate', 'full'), so each caller gets exactly the
statuses of its own records, as if it had called `put_many` itself; an error of the shared call (the
store actor died) reaches every caller whose records it carried. A malformed record (the store's
ValueError, which stores none of that call) is the one caller's: a shared call refused so is sent again
as one call per caller, so only the caller with the malformed record gets the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

PutMany = Callable[[list[dict[str, Any]]], Awaitable[list[str]]]


class CoalescedPuts:
    """`await puts.put(records)` -> the store's statuses of `records`; concurrent puts share calls."""

    def __init__(self, put_many: PutMany):
        self._put_many = put_many
        self._queue: list[tuple[list[dict[str, Any]], asyncio.Future[list[str]]]] = []
        self._sender: asyncio.Task[None] | None = None
        self._alone = 0  # how many of the next calls carry one caller's records only
        self.calls = 0  # put_many calls made, for tests and benchmarks

    async def put(self, records: list[dict[str, Any]]) -> list[str]:
        answer: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._queue.append((list(records), answer))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send())
        return await answer

    async def _send(self) -> None:
        """Send what is queued, one call at a time, until the queue is empty."""
        try:
            while self._queue:
                take = 1 if self._alone else len(self._queue)
                self._alone = max(0, self._alone - 1)
                batch, self._queue = self._queue[:take], self._queue[take:]
                rows = [row for records, _ in batch for row in records]
                self.calls += 1
                try:
                    statuses = await self._put_many(rows)
                    if len(statuses) != len(rows):
                        raise RuntimeError(f"the store gave {len(statuses)} statuses for {len(rows)} rows")
                except ValueError as error:  # a malformed record: the store stored none of this call
                    if len(batch) > 1:  # whose? each caller's records again, in a call of their own
                        self._queue, self._alone = batch + self._queue, len(batch)
                    else:
                        _fail(batch, error)
                    continue
                except Exception as error:  # the store's or Ray's: each caller of this call raises it
                    _fail(batch, error)
                    continue
                except BaseException:  # this task was cancelled (its loop is closing)
                    _fail(batch, RuntimeError("the put was cancelled before the store answered"))
                    raise
                start = 0
                for records, answer in batch:
                    if not answer.done():  # a caller cancelled meanwhile still had its records stored
                        answer.set_result(list(statuses[start : start + len(records)]))
                    start += len(records)
        finally:
            _fail(self._queue, RuntimeError("the put was cancelled before it was sent"))
            self._queue, self._sender, self._alone = [], None, 0


def _fail(batch: list[tuple[list[dict[str, Any]], asyncio.Future[list[str]]]], error: Exception) -> None:
    for _, answer in batch:
        if not answer.done():
            answer.set_exception(error)
