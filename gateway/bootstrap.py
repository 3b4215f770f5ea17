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
from gateway.services.delivery_desk import DeliveryDesk
from gateway.services.forwarding import Forwarding
from gateway.services.intake import IntakeService
from gateway.services.planning import PolicyDeadlines, RoutePlanner
from gateway.services.polling import Poller
from gateway.services.sla import SlaWatch
from gateway.services.status import StatusReport
from gateway.storage.database import Database, Timeouts, create_engine
from gateway.storage.readiness import WriteProbe
from outbox.dispatcher import Dispatcher, DispatcherSettings
from outbox.handlers import Handlers
from outbox.metrics import OutboxMetrics
from outbox.store import OutboxStore, SqlOutboxStore, store_for

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
    db: Database
    clock: Clock
    outbox: OutboxStore
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
    outbox: OutboxStore | None = None,
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
    db = Database(engine, outbox.transaction if isinstance(outbox, SqlOutboxStore) else None)

    intake = IntakeService(
        db=db, enqueue=outbox.enqueue, routes=routes, deadlines=deadlines, clock=clock,
        hotlines=frozenset(h.code for h in settings.hotlines),
    )
    forwarding = Forwarding(
        db, clock, registrars=adapters.registrars, confirmers=adapters.confirmers,
        mailer=adapters.mailer, letters=adapters.letters,
        request_answer_due=deadlines.request_answer_due, enqueue=outbox.enqueue,
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
            system, source, db, clock, enqueue=outbox.enqueue, zone_of=settings.zone_of,
            interval_s=_poll_interval(settings, system), page_size=_page_size(settings, system),
        )
        for system, source in adapters.sources.items()
    }
    sla = SlaWatch(db, clock)
    loops: list[tuple[str, Loop]] = [(f"poller.{name}", p) for name, p in pollers.items()]
    loops.append(("sla", sla))
    daemon = Daemon(dispatcher, loops, adapters.closers)

    status = StatusReport(engine, outbox, clock, gateway.__version__, tuple(pollers))
    desk = DeliveryDesk(db, outbox.enqueue, clock, deadlines.callback_rule,
                        deadlines.calendar, settings.zone_of)
    tokens = (
        parse_api_tokens(settings.api_tokens.get_secret_value()) if settings.api_tokens else {}
    )
    app = build_app(
        ApiServices(
            engine=engine, db=db, intake=intake, status=status, clock=clock,
            version=gateway.__version__, max_body_bytes=settings.http.max_body_bytes,
            outbox=outbox, zone_of=settings.zone_of, metrics=metrics, deliveries=desk,
            readiness=WriteProbe(db, timeout_s=limits.ready_timeout_s,
                                 min_free_bytes=limits.min_free_mb * 1024 * 1024),
            body_timeout_s=settings.http.body_timeout_s,
        ),
        tokens,
    )
    return Gateway(settings, engine, db, clock, outbox, intake, status, forwarding, pollers, sla,
                   daemon, app)


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
    from adapters.email.letters import LetterTemplates, TemplateLetters
    from adapters.email.mailer import SmtpMailer, TlsMode
    from adapters.email.mailer import SmtpSettings as MailerSettings

    built = Adapters()
    if settings.pos.base_url:
        from adapters.pos.client import PosClient
        from adapters.pos.mapping import load_mapping

        assert settings.pos.token is not None  # enforced by the settings
        pos = PosClient(
            settings.pos.base_url, settings.pos.token.get_secret_value(),
            mapping=load_mapping(settings.pos.mapping_file), timeout=settings.pos.timeout_s,
        )
        built.registrars["pos"] = built.confirmers["pos"] = built.sources["pos"] = pos
        built.closers.append(pos.aclose)
    else:
        log.warning("pos.not_configured", hint="set GATEWAY_POS__BASE_URL and "
                    "GATEWAY_POS__TOKEN; calls routed to ПОС wait as dead letters until then")
    if settings.delo.base_url:
        from adapters.delo.client import DeloClient

        assert settings.delo.username is not None and settings.delo.password is not None
        delo = DeloClient(
            settings.delo.base_url, settings.delo.username,
            settings.delo.password.get_secret_value(), timeout_s=settings.delo.timeout_s,
            hotline_zone=settings.zone_of,
        )
        built.registrars["delo"] = built.confirmers["delo"] = built.sources["delo"] = delo
        built.closers.append(delo.aclose)
    smtp = settings.smtp
    mailer = SmtpMailer(MailerSettings(
        host=smtp.host, port=smtp.port, sender=smtp.sender, tls=TlsMode(smtp.security),
        username=smtp.username,
        password=smtp.password.get_secret_value() if smtp.password else None,
        command_timeout_s=smtp.timeout_s,
    ))
    built.mailer = mailer
    built.letters = TemplateLetters(LetterTemplates(tz=settings.zone_of(
        settings.hotlines[0].code if settings.hotlines else "")))
    built.closers.append(mailer.aclose)
    return built


def _poll_interval(settings: Settings, system: str) -> float:
    return settings.delo.poll_interval_s if system == "delo" else settings.pos.poll_interval_s


def _page_size(settings: Settings, system: str) -> int:
    return settings.delo.page_size if system == "delo" else settings.pos.page_size
