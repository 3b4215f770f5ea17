"""Group commit: concurrent writers of the same kind share one transaction.

Every statement through the async drivers is a round trip (a thread hop for aiosqlite, a
network trip for asyncpg), and a transaction adds its own begin, commit and pool checkout.
Under load most of a call's cost was those trips, not SQL. A `Batcher` lets requests that
arrive while a batch is being written wait and go together in the next one: one
transaction and multi-row statements for many calls. Nothing waits for a timer: the
first request of a quiet moment is written at once, alone.

One item must not sink the others: when a batch fails, its items go again one by one,
so only the item at fault fails. A flush is therefore all or nothing (one transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

Item = TypeVar("Item")
Result = TypeVar("Result")

# Per item: its result, or the exception to raise in its submitter.
Flush = Callable[[Sequence[Item]], Awaitable[Sequence["Result | BaseException"]]]

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Waiting(Generic[Item, Result]):
    item: Item
    done: asyncio.Future[Result]


class Batcher(Generic[Item, Result]):
    """Coalesces concurrent `submit`s into calls of `flush` with up to `max_batch` items.

    A submitter cancelled while waiting does not take its item back: once submitted, the
    item is written (as a transaction already sent would be), and a repeat of the request
    finds it. The item's outcome is then dropped: the submitter is gone.
    """

    def __init__(self, flush: Flush[Item, Result], *, max_batch: int = 200,
                 name: str = "batch") -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._flush = flush
        self._max_batch = max_batch
        self._name = name
        self._waiting: list[_Waiting[Item, Result]] = []
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    async def submit(self, item: Item) -> Result:
        if self._closed:
            raise RuntimeError(f"{self._name} batcher is closed")
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(item, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all(), name=f"{self._name}-writer")
        return await done

    async def aclose(self) -> None:
        """Refuses new items and waits until every submitted one is written."""
        self._closed = True
        if self._writer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._writer)

    async def _write_all(self) -> None:
        batch: list[_Waiting[Item, Result]] = []
        try:
            while self._waiting:
                batch = self._waiting[:self._max_batch]
                del self._waiting[:self._max_batch]
                await self._write(batch)
        except asyncio.CancelledError:
            # Stopped mid-batch (shutdown): nobody may wait forever for a result.
            for waiting in [*batch, *self._waiting]:
                if not waiting.done.done():
                    waiting.done.cancel()
            self._waiting.clear()
            raise
        finally:
            self._writer = None

    async def _write(self, batch: list[_Waiting[Item, Result]]) -> None:
        outcomes = await self._outcomes([w.item for w in batch])
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.done.done():
                continue
            if isinstance(outcome, BaseException):
                waiting.done.set_exception(outcome)
            else:
                waiting.done.set_result(outcome)

    async def _outcomes(self, items: Sequence[Item]) -> list[Result | BaseException]:
        """Each item's outcome; a failed batch is split into items flushed one by one."""
        try:
            outcomes = list(await self._flush(items))
            if len(outcomes) != len(items):
                raise RuntimeError(f"{self._name}: {len(outcomes)} outcomes for "
                                   f"{len(items)} items")
            return outcomes
        except Exception as exc:  # noqa: BLE001 - the flush failed: find whose fault it was
            log.warning("batch.failed", batch=self._name, size=len(items),
                        error=type(exc).__name__)
            if len(items) == 1:
                return [exc]
        alone: list[Result | BaseException] = []
        for item in items:
            alone.extend(await self._outcomes([item]))
        return alone
