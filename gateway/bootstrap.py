"""The one place that wires the gateway together from settings.

Everything the core needs arrives through `bootstrap(...)`: tests hand in fakes through
the same door (a manual clock, an in-memory outbox, a fixed router), the CLI hands in
nothing and gets the real thing.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

import gateway
from config.calendar import build_work_calendar
from config.deadlines import load_deadline_policies
from config.routing import load_router
from config.settings import Settings, parse_api_tokens
from gateway.api.app import build_app
from gateway.api.context import ApiServices
from gateway.clock import SystemClock
from gateway.domain.ports import Clock
from gateway.services.intake import IntakeService
from gateway.services.planning import DeadlinePlanner, PolicyDeadlines, RoutePlanner
from gateway.services.status import StatusReport
from gateway.storage.database import create_engine, is_sqlite
from outbox.store import OutboxStore, PostgresOutboxStore, SQLiteOutboxStore

log = structlog.get_logger(__name__)

POLLED_SYSTEMS = ("pos", "delo")


@dataclass
class Gateway:
    """A built gateway: its API app and the background tasks `run` starts and stops."""

    settings: Settings
    engine: AsyncEngine
    clock: Clock
    outbox: OutboxStore
    intake: IntakeService
    status: StatusReport
    app: web.Application
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def start_background(self) -> None:
        """Starts the daemon's loops (outbox dispatcher, pollers, SLA watch)."""

    async def stop_background(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def close(self) -> None:
        await self.stop_background()
        await self.engine.dispose()


def bootstrap(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    clock: Clock | None = None,
    outbox: OutboxStore | None = None,
    routes: RoutePlanner | None = None,
    deadlines: DeadlinePlanner | None = None,
) -> Gateway:
    engine = engine or create_engine(settings.database_url)
    clock = clock or SystemClock()
    if outbox is None:
        outbox = (SQLiteOutboxStore(engine) if is_sqlite(settings.database_url)
                  else PostgresOutboxStore(engine))
    if routes is None or deadlines is None:
        loaded_routes, loaded_deadlines = load_planners(settings)
        routes = routes or loaded_routes
        deadlines = deadlines or loaded_deadlines
    intake = IntakeService(
        engine=engine,
        enqueue=outbox.enqueue,
        routes=routes,
        deadlines=deadlines,
        clock=clock,
        hotlines=frozenset(h.code for h in settings.hotlines),
    )
    status = StatusReport(engine, outbox, clock, gateway.__version__, POLLED_SYSTEMS)
    tokens = (
        parse_api_tokens(settings.api_tokens.get_secret_value()) if settings.api_tokens else {}
    )
    if not tokens:
        log.warning("auth.no_tokens", hint="set GATEWAY_API_TOKENS=role:token,...; every "
                    "protected call answers 401 until then")
    app = build_app(
        ApiServices(
            engine=engine,
            intake=intake,
            status=status,
            clock=clock,
            version=gateway.__version__,
            max_body_bytes=settings.http.max_body_bytes,
            outbox=outbox,
            zone_of=settings.zone_of,
        ),
        tokens,
    )
    return Gateway(settings, engine, clock, outbox, intake, status, app)


def load_planners(settings: Settings) -> tuple[RoutePlanner, DeadlinePlanner]:
    """Routing, deadlines and the calendar from their files; any problem stops start-up."""
    policies = load_deadline_policies(settings.deadlines_file)
    router = load_router(
        settings.routing_file,
        settings.topics_file,
        hotlines=[h.code for h in settings.hotlines],
        deadline_policies=policies.names,
    )
    calendar = build_work_calendar(settings.calendar_overrides_file)
    return router, PolicyDeadlines(policies, calendar, settings.zone_of)
