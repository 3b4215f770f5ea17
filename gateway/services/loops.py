"""A step run every interval until cancelled: the daemon's sweeps and schedules."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


async def every(interval_s: float, step: Callable[[], Awaitable[object]], *,
                failed: str) -> None:
    """Runs `step` now and then about every `interval_s` (±10 %, so replicas drift apart).
    A failure is logged as the event `failed`, by its class only; the next round tries again."""
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged; the next round tries again
            log.warning(failed, error_type=type(exc).__name__)
        await asyncio.sleep(interval_s * random.uniform(0.9, 1.1))
