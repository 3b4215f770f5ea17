"""The weekly report goes out by itself [001: 19: «еженедельно, до 10:00 часов понедельника»].

A loop looks at the clock; from the configured hour on Monday (local time) it records the
send of the past week and enqueues its e-mail in one transaction, under the idempotency
key `weekly:{hotline}:{iso_week}`. The record's unique key lets only one replica, once,
do it; a gateway that was down at 10:00 does it when it comes back and the letter says it
is late. A Monday that is a holiday is still the Monday: the weekday decides, not the
working calendar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Protocol

import structlog

from gateway.domain.ports import Attachment, Clock, Mailer, OutgoingMail
from gateway.domain.reporting import BadPeriod, iso_week, previous_week
from gateway.services.loops import every
from gateway.services.reports import ReportService
from outbox import Message, NewMessage, Permanent, Registration, RetryPolicy

log = structlog.get_logger(__name__)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
WEEKLY = ("email", "weekly_report")
# The report is due by 10:00; a letter that could not go for a day is still worth sending.
WEEKLY_POLICY = RetryPolicy(max_attempts=30, max_age_s=3 * 24 * 3600.0, timeout_s=120.0)


@dataclass(frozen=True, slots=True)
class WeeklySchedule:
    hotline: str
    recipients: tuple[str, ...]
    send_at: time = time(8, 0)  # local; from this hour on Monday the send is enqueued
    due_by: time = time(10, 0)  # [001: 19] «до 10:00 часов понедельника»


class ReportSends(Protocol):
    async def claim(self, kind: str, hotline: str, period: str, *, due_at: datetime,
                    now: datetime, late: bool, message: NewMessage) -> bool: ...

    async def mark_sent(self, kind: str, hotline: str, period: str, at: datetime) -> None: ...


def weekly_key(hotline: str, week: str) -> str:
    return f"weekly:{hotline}:{week}"


class WeeklyReportMailing:
    def __init__(self, reports: ReportService, sends: ReportSends, clock: Clock, *,
                 schedules: Sequence[WeeklySchedule], zone_of: Callable[[str], tzinfo],
                 mailer: Mailer | None, interval_s: float = 60.0) -> None:
        self._reports = reports
        self._sends = sends
        self._clock = clock
        self._schedules = {s.hotline: s for s in schedules if s.recipients}
        self._zone_of = zone_of
        self._mailer = mailer
        self._interval_s = interval_s

    def registrations(self) -> list[Registration]:
        if self._mailer is None:
            return []
        target, action = WEEKLY
        return [Registration(target, action, self.send, WEEKLY_POLICY)]

    async def run(self) -> None:
        await every(self._interval_s, self.tick, failed="reports.schedule_failed")

    async def tick(self) -> list[str]:
        """Enqueues every weekly send that is due and not yet recorded; their keys."""
        enqueued = []
        now = self._clock.now()
        for schedule in self._schedules.values():
            zone = self._zone_of(schedule.hotline)
            local = now.astimezone(zone)
            monday = local.date() - timedelta(days=local.weekday())
            if local < datetime.combine(monday, schedule.send_at, zone):
                continue  # Monday's hour has not come: last week's send was done last week
            week = previous_week(monday).label
            due_at = datetime.combine(monday, schedule.due_by, zone)
            late = now > due_at
            key = weekly_key(schedule.hotline, week)
            message = NewMessage(
                ordering_key=f"report:weekly:{schedule.hotline}", target=WEEKLY[0],
                action=WEEKLY[1], idempotency_key=key,
                payload={"hotline": schedule.hotline, "week": week, "late": late,
                         "due_at": due_at.isoformat()})
            if await self._sends.claim("weekly", schedule.hotline, week, due_at=due_at,
                                       now=now, late=late, message=message):
                log.info("reports.weekly_enqueued", hotline=schedule.hotline, week=week,
                         late=late)
                enqueued.append(key)
        return enqueued

    async def send(self, message: Message) -> None:
        assert self._mailer is not None
        hotline = str(message.payload.get("hotline", ""))
        schedule = self._schedules.get(hotline)
        if schedule is None:
            raise Permanent(f"no weekly report recipients for hotline {hotline}")
        try:
            period = iso_week(str(message.payload.get("week", "")))
        except BadPeriod as exc:
            raise Permanent(str(exc)) from None
        content = await self._reports.weekly_file(hotline, period)
        late = bool(message.payload.get("late"))
        await self._mailer.send(weekly_letter(schedule, period.label, period.first,
                                              content, late, message.idempotency_key))
        await self._sends.mark_sent("weekly", hotline, period.label, self._clock.now())
        log.info("reports.weekly_sent", hotline=hotline, week=period.label, late=late,
                 recipient_count=len(schedule.recipients))


def weekly_letter(schedule: WeeklySchedule, week: str, monday: date, content: bytes,
                  late: bool, key: str) -> OutgoingMail:
    sunday = monday + timedelta(days=6)
    span = f"{monday:%d.%m.%Y}–{sunday:%d.%m.%Y}"
    subject = f"Еженедельный отчёт, линия {schedule.hotline}, {span}"
    text = (f"Отчёт о звонках на линию {schedule.hotline} за неделю {span} ({week}) "
            "по форме приложения № 3 — во вложении.\n")
    if late:
        subject += " (с опозданием)"
        text += (f"Отчёт отправлен с опозданием: срок — до {schedule.due_by:%H:%M} "
                 f"понедельника; шлюз в это время не работал.\n")
    return OutgoingMail(
        to=schedule.recipients, subject=subject, text=text, idempotency_key=key,
        attachments=(Attachment(f"weekly-{schedule.hotline}-{week}.xlsx", XLSX, content),))
