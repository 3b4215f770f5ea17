"""The background half of `gateway run`: the outbox dispatcher, the pollers, the SLA watch.

Shutdown order matters: stop claiming and settle what is in flight first (nothing
half-done is left leased), then stop the loops that only read, then close connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import structlog

from outbox import Dispatcher

log = structlog.get_logger(__name__)


class Loop(Protocol):
    async def run(self) -> None: ...


class Daemon:
    def __init__(
        self,
        dispatcher: Dispatcher,
        loops: Sequence[tuple[str, Loop]],
        closers: Sequence[Callable[[], Awaitable[Any]]] = (),
    ) -> None:
        self.dispatcher = dispatcher
        self._loops = list(loops)
        self._closers = list(closers)
        self._tasks: list[asyncio.Task[None]] = []
        self._dispatch_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._dispatch_task = asyncio.create_task(self.dispatcher.run(), name="outbox")
        for name, loop in self._loops:
            self._tasks.append(asyncio.create_task(loop.run(), name=name))
        log.info("daemon.started", loops=[name for name, _ in self._loops])

    async def stop(self) -> None:
        if self._dispatch_task is not None:
            await self.dispatcher.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatch_task
            self._dispatch_task = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for close in self._closers:
            with contextlib.suppress(Exception):
                await close()
        self._closers.clear()
        log.info("daemon.stopped")
