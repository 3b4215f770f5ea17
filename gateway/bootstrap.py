"""The one place that wires the gateway together from settings.

`bootstrap(settings)` builds every part from the settings; a part passed as a keyword is
used instead. Today's callers pass few: tests a `ManualClock` and their own metrics
registry, the CLI's database-only commands an empty `Adapters()` so that no outside
system is contacted. The outbox is always a SQL store; there is no in-memory one here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

import gateway
from config.calendar import build_work_calendar
from config.deadlines import load_deadline_policies
from config.errors import ConfigError
from config.reports import ReportsConfig, load_reports_config
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
    Mailbox,
    Mailer,
    ReadBacklog,
    RecordReader,
    Registrar,
    StatusSource,
    WorkCalendar,
)
from gateway.domain.reporting import WorkingHours
from gateway.domain.route import EmailTarget, EpguFallback, Route, TargetSystem
from gateway.domain.routing import Router, default_deadline_policy
from gateway.services.callbacks import CallbackDesk
from gateway.services.delivery_desk import DeliveryDesk
from gateway.services.forwarding import Forwarding
from gateway.services.intake import IntakeService
from gateway.services.journal import JournalDesk
from gateway.services.loops import every
from gateway.services.mail_replies import MailReplies, UnmatchedMailDesk
from gateway.services.official_answers import OfficialAnswers
from gateway.services.outbox_admin import OutboxAdmin
from gateway.services.planning import PolicyDeadlines, RoutePlanner
from gateway.services.polling import Poller
from gateway.services.report_mailing import WeeklyReportMailing, WeeklySchedule
from gateway.services.reports import ReportService
from gateway.services.sla import SlaWatch
from gateway.services.status import StatusReport
from gateway.services.supervision import Supervision
from gateway.storage.database import Timeouts, create_engine
from gateway.storage.readiness import WriteProbe
from gateway.storage.reports import SqlReportData, SqlReportSends
from gateway.storage.unit_of_work import SqlStorage
from outbox import (
    Dispatcher,
    DispatcherSettings,
    Handlers,
    OutboxMetrics,
    SqlOutboxStore,
    store_for,
)

if TYPE_CHECKING:
    from adapters.pos.eas_client import EasClient
    from adapters.pos.eas_dictionaries import Dictionaries

log = structlog.get_logger(__name__)

Closer = Callable[[], Awaitable[Any]]


@dataclass
class Adapters:
    """The outside world as the core sees it: the ports, by target system."""

    registrars: dict[str, Registrar] = field(default_factory=dict)
    confirmers: dict[str, DeliveryConfirmer] = field(default_factory=dict)
    sources: dict[str, StatusSource] = field(default_factory=dict)
    readers: dict[str, RecordReader] = field(default_factory=dict)
    mailer: Mailer | None = None
    letters: LetterComposer | None = None
    mailbox: Mailbox | None = None  # the contact centre's mailbox, for officials' replies
    closers: list[Closer] = field(default_factory=list)
    loops: list[tuple[str, Loop]] = field(default_factory=list)  # the adapters' own upkeep


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
    answers: OfficialAnswers
    mail: MailReplies | None
    daemon: Daemon
    app: web.Application
    reports: ReportService | None = None
    weekly_reports: WeeklyReportMailing | None = None
    callbacks: CallbackDesk | None = None

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
    """The gateway built from `settings`, with any part given here used instead.

    Routing, deadlines and the calendar are read from their files unless both `routes`
    and `deadlines` are given; adapters are built from the settings unless given.
    """
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
        epgu_fallback=epgu_fallback(settings, routes),
    )
    forwarding = Forwarding(
        storage, clock, registrars=adapters.registrars, confirmers=adapters.confirmers,
        mailer=adapters.mailer, letters=adapters.letters,
        request_answer_due=deadlines.request_answer_due,
    )
    reports_config = load_reports_config(settings.reports_file)
    reports = build_reports(settings, reports_config, engine, clock, deadlines.calendar)
    weekly = WeeklyReportMailing(
        reports, SqlReportSends(engine, outbox), clock, schedules=weekly_schedules(
            reports_config), zone_of=settings.zone_of, mailer=adapters.mailer)
    metrics = OutboxMetrics(registry or CollectorRegistry(), max_age_s=settings.metrics.cache_s)
    dispatcher = Dispatcher(
        outbox, Handlers(forwarding.registrations() + weekly.registrations()),
        settings=DispatcherSettings(
            batch_size=settings.outbox.batch_size,
            concurrency=settings.outbox.concurrency,
            target_concurrency=settings.outbox.target_concurrency,
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
            reader=adapters.readers.get(system),
            reconcile_every_s=_reconcile_every(settings, system),
        )
        for system, source in adapters.sources.items()
    }
    for system, poller in pollers.items():
        reader = adapters.readers.get(system)
        if isinstance(reader, ReadBacklog):
            poller.health.due_lag_s = reader.due_lag_s
    callbacks = CallbackDesk(storage, clock, deadlines.callback_rule, deadlines.calendar,
                             settings.zone_of, frozenset(h.code for h in settings.hotlines))
    sla = SlaWatch(storage, clock, first_callback_due=callbacks.first_due)
    answers = OfficialAnswers(storage, clock, deadlines.request_answer_latest)
    mail = (MailReplies(storage, adapters.mailbox, clock,
                        interval_s=settings.imap.poll_interval_s)
            if adapters.mailbox is not None else None)
    loops: list[tuple[str, Loop]] = [(f"poller.{name}", p) for name, p in pollers.items()]
    loops.append(("sla", sla))
    loops.append(("reports.weekly", weekly))
    loops.append(("requests", answers))
    if mail is not None:
        loops.append(("mail", mail))
    loops.extend(adapters.loops)
    daemon = Daemon(dispatcher, loops, adapters.closers)

    health = {name: poller.health for name, poller in pollers.items()}
    if mail is not None:
        health["mail"] = mail.health
    status = StatusReport(storage, outbox, clock, gateway.__version__, health)
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
            body_timeout_s=settings.http.body_timeout_s, reports=reports,
            answers=answers, unmatched_mail=UnmatchedMailDesk(storage, clock),
        ),
        tokens,
    )
    return Gateway(settings, engine, storage, clock, outbox, intake, status, forwarding, pollers,
                   sla, answers, mail, daemon, app, reports, weekly, callbacks)


def epgu_fallback(settings: Settings, routes: RoutePlanner) -> EpguFallback | None:
    """Under the EAS dialect, where ПОС-bound calls without an epguId go (pos-eas.md §9.5)."""
    if settings.pos.dialect != "eas" or not settings.pos.eas.no_epgu_email:
        return None
    if not isinstance(routes, Router):
        return None
    authorities = []
    for authority_id in settings.pos.eas.no_epgu_email:
        found = routes.table.authority(authority_id)
        if found is None:
            raise ConfigError(f"pos.eas.no_epgu_email names {authority_id!r}, which is not an "
                              "e-mail authority of the routing table")
        authorities.append(found)
    return EpguFallback(Route(
        system=TargetSystem.EMAIL, executor="; ".join(a.name for a in authorities),
        email=tuple(EmailTarget(a.name, a.recipients) for a in authorities),
        deadline_policy=default_deadline_policy(TargetSystem.EMAIL)))


def build_reports(settings: Settings, config: ReportsConfig, engine: AsyncEngine, clock: Clock,
                  calendar: WorkCalendar) -> ReportService:
    """The report service on the database, drawing with XlsxWriter."""
    from adapters.reports.xlsx import XlsxReportWriter

    hours = WorkingHours(config.working_hours.start, config.working_hours.end)
    return ReportService(SqlReportData(engine), XlsxReportWriter(), clock,
                         zone_of=settings.zone_of, calendar=calendar, hours=hours,
                         hotlines=frozenset(h.code for h in settings.hotlines))


def weekly_schedules(config: ReportsConfig) -> list[WeeklySchedule]:
    return [WeeklySchedule(w.hotline, tuple(str(r) for r in w.recipients), w.send_at, w.due_by)
            for w in config.weekly]


def load_planners(settings: Settings) -> tuple[RoutePlanner, PolicyDeadlines]:
    """Routing, deadlines and the calendar from their files; any problem stops start-up."""
    policies = load_deadline_policies(settings.deadlines_file)
    calendar = build_work_calendar(settings.calendar_overrides_file)
    router = load_router(
        settings.routing_file,
        settings.topics_file,
        hotlines=[h.code for h in settings.hotlines],
        deadline_policies=policies.names,
        calendar=calendar,
        zone_of=settings.zone_of,
    )
    return router, PolicyDeadlines(policies, calendar, settings.zone_of)


class EveryLoop:
    """A daemon loop that runs one step now and then every interval (services/loops.py)."""

    def __init__(self, interval_s: float, step: Callable[[], Awaitable[object]], *,
                 failed: str) -> None:
        self._interval_s = interval_s
        self._step = step
        self._failed = failed

    async def run(self) -> None:
        await every(self._interval_s, self._step, failed=self._failed)


async def sync_pos_dictionaries(client: EasClient, path: Path) -> Dictionaries:
    """ПОС's EAS dictionaries fetched and stored whole (adapters/pos/eas_dictionaries.py)."""
    from adapters.pos.eas_dictionaries import save

    dictionaries = await client.read_dictionaries()
    save(path, dictionaries)
    log.info("pos.dictionaries_synced", regions=len(dictionaries.regions),
             subjects=len(dictionaries.subjects), subsubjects=len(dictionaries.subsubjects))
    return dictionaries


def build_adapters(settings: Settings) -> Adapters:
    """ПОС and «Дело» adapters when their base URL is set; the SMTP mailer and letters always."""
    from adapters.email import factory as email_factory
    from adapters.email.letters import LetterTemplates, TemplateLetters

    built = Adapters()
    if settings.pos.base_url and settings.pos.dialect == "eas":
        from adapters.pos import factory as pos_factory

        eas = pos_factory.build_eas(settings.pos)
        # No list and no delivery confirmation in EAS: read per open appeal; a delivery
        # stays local and its row is left as "confirm in ПОС" for ministry staff.
        built.registrars["pos"] = built.sources["pos"] = built.readers["pos"] = eas
        built.confirmers["pos"] = eas
        built.closers.append(eas.aclose)
        built.loops.append(("pos.dictionaries", EveryLoop(
            settings.pos.eas.dictionaries_every_s,
            lambda: sync_pos_dictionaries(eas, settings.pos.eas.dictionaries_file),
            failed="pos.dictionaries_sync_failed")))
    elif settings.pos.base_url:
        from adapters.pos import factory as pos_factory

        pos = pos_factory.build(settings.pos)
        built.registrars["pos"] = built.confirmers["pos"] = built.sources["pos"] = pos
        built.readers["pos"] = pos
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
    from adapters.email import imap_factory

    built.mailbox = imap_factory.build(settings.imap)
    if built.mailbox is not None:
        built.closers.append(built.mailbox.aclose)
    return built


def _reconcile_every(settings: Settings, system: str) -> float:
    """For EAS the per-appeal walk is the only reading; each appeal is read when due."""
    if system != "pos":
        return 0.0
    if settings.pos.dialect == "eas":
        return settings.pos.eas.poll_tick_s
    return settings.pos.reconcile_interval_s


def _poll_interval(settings: Settings, system: str) -> float:
    return settings.delo.poll_interval_s if system == "delo" else settings.pos.poll_interval_s


def _page_size(settings: Settings, system: str) -> int:
    return settings.delo.page_size if system == "delo" else settings.pos.page_size
