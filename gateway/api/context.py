"""What the handlers may use, handed over by the wiring module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, Protocol

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.domain.ports import Clock
from gateway.services.callbacks import CallbackDesk
from gateway.services.delivery_desk import DeliveryDesk
from gateway.services.intake import IntakeService
from gateway.services.journal import JournalDesk
from gateway.services.mail_replies import UnmatchedMailDesk
from gateway.services.official_answers import OfficialAnswers
from gateway.services.outbox_admin import OutboxAdmin
from gateway.services.reports import ReportService
from gateway.services.supervision import Supervision
from gateway.services.unit_of_work import Storage
from gateway.storage.readiness import WriteProbe
from outbox import OutboxMetrics, OutboxStore


class StatusReporter(Protocol):
    async def report(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class ApiServices:
    engine: AsyncEngine
    storage: Storage
    intake: IntakeService
    status: StatusReporter
    clock: Clock
    version: str
    outbox: OutboxStore
    outbox_admin: OutboxAdmin
    readiness: WriteProbe
    zone_of: Callable[[str], tzinfo]
    max_body_bytes: int = 64 * 1024
    metrics: OutboxMetrics | None = None
    deliveries: DeliveryDesk | None = None
    callbacks: CallbackDesk | None = None
    journal: JournalDesk | None = None
    supervision: Supervision | None = None
    body_timeout_s: float = 30.0
    reports: ReportService | None = None
    answers: OfficialAnswers | None = None
    unmatched_mail: UnmatchedMailDesk | None = None


SERVICES_KEY = web.AppKey("services", ApiServices)
