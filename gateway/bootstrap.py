"""The one place that wires the gateway together from settings.

Everything the core needs arrives through `bootstrap(...)`: tests hand in fakes through
the same door (a manual clock, an in-memory outbox, a fixed router, fake adapters), the
CLI hands in nothing and gets the real thing built from settings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

import gateway
from config.calendar import build_work_calendar
from config.deadlines import load_deadline_policies
from config.routing import load_router
from config.settings import Settings, parse_api_tokens
from gateway.api.app import build_app
from gateway.api.context import ApiServices
from gateway.clock import SystemClock
from gateway.daemon import Daemon, Loop
from gateway.domain.ports import (
    Clock,
    DeliveryConfirmer,
    LetterComposer,
    Mailer,
    Registrar,
    StatusSource,
)
from gateway.services.callbacks import CallbackDesk
from gateway.services.delivery_desk import DeliveryDesk
from gateway.services.forwarding import Forwarding
from gateway.services.intake import IntakeService
from gateway.services.journal import JournalDesk
from gateway.services.outbox_admin import OutboxAdmin
from gateway.services.planning import PolicyDeadlines, RoutePlanner
from gateway.services.polling import Poller
from gateway.services.sla import SlaWatch
from gateway.services.status import StatusReport
from gateway.services.supervision import Supervision
from gateway.storage.database import Timeouts, create_engine
from gateway.storage.readiness import WriteProbe
from gateway.storage.unit_of_work import SqlStorage
from outbox import (
    Dispatcher,
    DispatcherSettings,
    Handlers,
    OutboxMetrics,
    SqlOutboxStore,
    store_for,
)

log = structlog.get_logger(__name__)

Closer = Callable[[], Awaitable[Any]]


@dataclass
class Adapters:
    """The outside world as the core sees it: the ports, by target system."""

    registrars: dict[str, Registrar] = field(default_factory=dict)
    confirmers: dict[str, DeliveryConfirmer] = field(default_factory=dict)
    sources: dict[str, StatusSource] = field(default_factory=dict)
    mailer: Mailer | None = None
    letters: LetterComposer | None = None
    closers: list[Closer] = field(default_factory=list)


@dataclass
class Gateway:
    """A built gateway: its API app and the daemon `gateway run` starts and stops."""

    settings: Settings
    engine: AsyncEngine
    storage: SqlStorage
    clock: Clock
    outbox: SqlOutboxStore
    intake: IntakeService
    status: StatusReport
    forwarding: Forwarding
    pollers: dict[str, Poller]
    sla: SlaWatch
    daemon: Daemon
    app: web.Application

    async def close(self) -> None:
        await self.intake.aclose()
        await self.daemon.stop()
        await self.forwarding.aclose()
        await self.engine.dispose()


def bootstrap(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    clock: Clock | None = None,
    outbox: SqlOutboxStore | None = None,
    routes: RoutePlanner | None = None,
    deadlines: PolicyDeadlines | None = None,
    adapters: Adapters | None = None,
    registry: CollectorRegistry | None = None,
) -> Gateway:
    limits = settings.database
    engine = engine or create_engine(settings.database_url, timeouts=Timeouts(
        statement_s=limits.statement_timeout_s, lock_s=limits.lock_timeout_s,
        connect_s=limits.connect_timeout_s, busy_s=limits.busy_timeout_s))
    clock = clock or SystemClock()
    outbox = outbox if outbox is not None else store_for(engine)
    if routes is None or deadlines is None:
        loaded_routes, loaded_deadlines = load_planners(settings)
        routes = routes or loaded_routes
        deadlines = deadlines or loaded_deadlines
    adapters = adapters if adapters is not None else build_adapters(settings)
    storage = SqlStorage(engine, outbox, clock)

    intake = IntakeService(
        storage=storage, routes=routes, deadlines=deadlines, clock=clock,
        hotlines=frozenset(h.code for h in settings.hotlines),
    )
    forwarding = Forwarding(
        storage, clock, registrars=adapters.registrars, confirmers=adapters.confirmers,
        mailer=adapters.mailer, letters=adapters.letters,
        request_answer_due=deadlines.request_answer_due,
    )
    metrics = OutboxMetrics(registry or CollectorRegistry(), max_age_s=settings.metrics.cache_s)
    dispatcher = Dispatcher(
        outbox, Handlers(forwarding.registrations()),
        settings=DispatcherSettings(
            batch_size=settings.outbox.batch_size,
            concurrency=settings.outbox.concurrency,
            lease_s=settings.outbox.lease_s,
            poll_interval_s=settings.outbox.poll_interval_s,
        ),
        owner=f"{settings.instance_name}:{id(engine):x}",
        metrics=metrics,
    )
    pollers = {
        system: Poller(
            system, source, storage, clock, zone_of=settings.zone_of,
            interval_s=_poll_interval(settings, system), page_size=_page_size(settings, system),
        )
        for system, source in adapters.sources.items()
    }
    callbacks = CallbackDesk(storage, clock, deadlines.callback_rule, deadlines.calendar,
                             settings.zone_of, frozenset(h.code for h in settings.hotlines))
    sla = SlaWatch(storage, clock, first_callback_due=callbacks.first_due)
    loops: list[tuple[str, Loop]] = [(f"poller.{name}", p) for name, p in pollers.items()]
    loops.append(("sla", sla))
    daemon = Daemon(dispatcher, loops, adapters.closers)

    status = StatusReport(storage, outbox, clock, gateway.__version__, tuple(pollers))
    desk = DeliveryDesk(storage, clock, deadlines.callback_rule, deadlines.calendar,
                        settings.zone_of)
    tokens = (
        parse_api_tokens(settings.api_tokens.get_secret_value()) if settings.api_tokens else {}
    )
    app = build_app(
        ApiServices(
            engine=engine, storage=storage, intake=intake, status=status, clock=clock,
            version=gateway.__version__, max_body_bytes=settings.http.max_body_bytes,
            outbox=outbox, outbox_admin=OutboxAdmin(outbox, storage, clock),
            zone_of=settings.zone_of, metrics=metrics, deliveries=desk, callbacks=callbacks,
            journal=JournalDesk(storage, clock),
            supervision=Supervision(storage, clock, routes, deadlines),
            readiness=WriteProbe(engine, outbox.transaction, timeout_s=limits.ready_timeout_s,
                                 min_free_bytes=limits.min_free_mb * 1024 * 1024),
            body_timeout_s=settings.http.body_timeout_s,
        ),
        tokens,
    )
    return Gateway(settings, engine, storage, clock, outbox, intake, status, forwarding, pollers,
                   sla, daemon, app)


def load_planners(settings: Settings) -> tuple[RoutePlanner, PolicyDeadlines]:
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


def build_adapters(settings: Settings) -> Adapters:
    """The real adapters for every system the settings configure."""
    from adapters.email import factory as email_factory
    from adapters.email.letters import LetterTemplates, TemplateLetters

    built = Adapters()
    if settings.pos.base_url:
        from adapters.pos import factory as pos_factory

        pos = pos_factory.build(settings.pos)
        built.registrars["pos"] = built.confirmers["pos"] = built.sources["pos"] = pos
        built.closers.append(pos.aclose)
    else:
        log.warning("pos.not_configured", hint="set GATEWAY_POS__BASE_URL and "
                    "GATEWAY_POS__TOKEN; calls routed to ПОС wait as dead letters until then")
    if settings.delo.base_url:
        from adapters.delo import factory as delo_factory
        from config.routing import delo_executor_dues

        delo = delo_factory.build(
            settings.delo, executor_dues=delo_executor_dues(settings.routing_file),
            hotline_zone=settings.zone_of,
        )
        built.registrars["delo"] = built.confirmers["delo"] = built.sources["delo"] = delo
        built.closers.append(delo.aclose)
    mailer = email_factory.build(settings.smtp)
    built.mailer = mailer
    built.letters = TemplateLetters(LetterTemplates(tz=settings.zone_of(
        settings.hotlines[0].code if settings.hotlines else "")))
    built.closers.append(mailer.aclose)
    return built


def _poll_interval(settings: Settings, system: str) -> float:
    return settings.delo.poll_interval_s if system == "delo" else settings.pos.poll_interval_s


def _page_size(settings: Settings, system: str) -> int:
    return settings.delo.page_size if system == "delo" else settings.pos.page_size
