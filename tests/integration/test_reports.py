"""Reports on a real database: the weekly e-mail sent once, the endpoints, the PBX import."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import insert, select

from adapters.pbx.cdr import read_cdr
from config.settings import Settings
from gateway.bootstrap import Adapters, Gateway, bootstrap
from gateway.cli import main
from gateway.clock import ManualClock
from gateway.domain.ports import ExternalRef, OutgoingMail
from gateway.domain.reporting import month, parse_period
from gateway.domain.status import AppealStatus
from gateway.services.pbx_import import import_pbx_calls
from gateway.services.reports import missed_calls_to_call_back
from gateway.services.unit_of_work import NewAppeal
from gateway.storage.reports import SqlPbxCalls
from gateway.storage.tables import deliveries, report_sends
from outbox import outbox_messages
from tests.builders import make_appeal

MOSCOW = ZoneInfo("Europe/Moscow")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cdr"
TOKENS = "supervisor:sv,operator:op,admin:ad"
SUPERVISOR = {"Authorization": "Bearer sv"}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
REPORTS_TOML = """
[[weekly]]
hotline = "122"
recipients = ["infocc@example.ru", "minvp@example.ru"]
send_at = "08:00"
due_by = "10:00"
"""


def msk(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=MOSCOW).astimezone(UTC)


class Outgoing:
    """The SMTP server as the gateway sees it: letters handed over."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMail] = []

    async def send(self, mail: OutgoingMail) -> None:
        self.sent.append(mail)


@pytest.fixture
def reports_file(tmp_path: Path) -> Path:
    path = tmp_path / "reports.toml"
    path.write_text(REPORTS_TOML, encoding="utf-8")
    return path


Build = Callable[..., Gateway]


@pytest.fixture
async def build(database_url: str, reports_file: Path) -> AsyncIterator[Build]:
    built: list[Gateway] = []

    def make(clock: ManualClock, mailer: Outgoing | None = None) -> Gateway:
        settings = Settings(database_url=database_url, api_tokens=TOKENS,
                            reports_file=reports_file)
        gateway = bootstrap(settings, clock=clock, adapters=Adapters(mailer=mailer or Outgoing()))
        built.append(gateway)
        return gateway

    yield make
    for gateway in built:
        await gateway.close()


async def weekly_rows(gateway: Gateway) -> list[Any]:
    async with gateway.engine.connect() as conn:
        rows = await conn.execute(select(outbox_messages.c.idempotency_key,
                                         outbox_messages.c.payload)
                                  .where(outbox_messages.c.action == "weekly_report"))
        return list(rows)


async def seed(gateway: Gateway, count: int, start: datetime, **changes: Any) -> list[str]:
    ids = []
    async with gateway.storage.write() as uow:
        for i in range(count):
            journal = f"J-{start:%Y%m%d%H%M}-{i}"
            appeal = make_appeal(id=str(uuid.uuid5(uuid.NAMESPACE_URL, journal)),
                                 journal_id=journal,
                                 received_at=start + timedelta(minutes=i), **changes)
            uow.appeals.add(NewAppeal(appeal, f"hash{i}", None))
            ids.append(appeal.id)
    return ids


# -- the weekly send [001: 19] -----------------------------------------------------------


async def test_weekly_report_is_enqueued_once_across_a_restart_at_0959_and_1001(
        build: Build) -> None:
    clock = ManualClock(msk(2026, 11, 23, 7, 59))  # Monday, before the send hour
    first = build(clock)
    assert first.weekly_reports is not None
    assert await first.weekly_reports.tick() == []
    clock.set(msk(2026, 11, 23, 9, 59))
    assert await first.weekly_reports.tick() == ["weekly:122:2026-W47"]
    await first.close()

    clock.set(msk(2026, 11, 23, 10, 1))
    second = build(clock)  # the restarted gateway
    assert second.weekly_reports is not None
    assert await second.weekly_reports.tick() == []
    rows = await weekly_rows(second)
    assert [(key, payload["late"]) for key, payload in rows] == [("weekly:122:2026-W47", False)]


async def test_a_gateway_down_at_ten_sends_when_it_comes_back_and_says_it_is_late(
        build: Build) -> None:
    clock = ManualClock(msk(2026, 11, 24, 12, 0))  # Tuesday noon: it was down all Monday
    mailer = Outgoing()
    gateway = build(clock, mailer)
    await seed(gateway, 2, msk(2026, 11, 18, 9, 0))
    assert gateway.weekly_reports is not None
    assert await gateway.weekly_reports.tick() == ["weekly:122:2026-W47"]
    await _dispatch(gateway)
    assert len(mailer.sent) == 1
    mail = mailer.sent[0]
    assert "(с опозданием)" in mail.subject
    assert mail.to == ("infocc@example.ru", "minvp@example.ru")
    assert mail.idempotency_key == "weekly:122:2026-W47"
    (attachment,) = mail.attachments
    assert attachment.media_type == XLSX
    ws = openpyxl.load_workbook(io.BytesIO(attachment.content)).active
    assert [c.value for c in ws[1]] == ["Дата и время звонка", "Тематика сообщения", "Суть",
                                        "ФИО оператора"]
    assert ws.max_row == 3
    async with gateway.engine.connect() as conn:
        sent = (await conn.execute(select(report_sends.c.sent_at, report_sends.c.late))).one()
    assert sent.sent_at is not None and sent.late is True


async def _dispatch(gateway: Gateway) -> None:
    """Runs the dispatcher until the weekly row is done."""
    dispatcher = gateway.daemon.dispatcher
    task = asyncio.create_task(dispatcher.run())
    try:
        for _ in range(200):
            async with gateway.engine.connect() as conn:
                state = (await conn.execute(select(outbox_messages.c.state).where(
                    outbox_messages.c.action == "weekly_report"))).scalar_one()
            if state in ("done", "dead"):
                break
            await asyncio.sleep(0.05)
    finally:
        await dispatcher.stop()
        await task
    assert state == "done"


async def test_a_monday_that_is_a_holiday_still_counts(build: Build) -> None:
    # 2026-05-11: the holiday of 9 May moved to Monday; the report is due all the same.
    clock = ManualClock(msk(2026, 5, 11, 9, 0))
    gateway = build(clock)
    assert gateway.weekly_reports is not None
    assert await gateway.weekly_reports.tick() == ["weekly:122:2026-W19"]


@pytest.mark.postgres
async def test_two_replicas_on_postgresql_enqueue_the_week_once(
        migrated_postgres_url: str, reports_file: Path) -> None:
    clock = ManualClock(msk(2026, 11, 23, 9, 0))
    settings = Settings(database_url=migrated_postgres_url, reports_file=reports_file)
    replicas = [bootstrap(settings, clock=clock, adapters=Adapters(mailer=Outgoing()))
                for _ in range(2)]
    try:
        for _ in range(5):
            results = await asyncio.gather(*(r.weekly_reports.tick()  # type: ignore[union-attr]
                                             for r in replicas))
            assert sum(len(keys) for keys in results) <= 1
        assert len(await weekly_rows(replicas[0])) == 1
    finally:
        for r in replicas:
            await r.close()


# -- the endpoints -----------------------------------------------------------------------


async def test_report_endpoints_return_xlsx_to_supervisors_only(build: Build) -> None:
    gateway = build(ManualClock(msk(2026, 12, 2, 12, 0)))
    await seed(gateway, 3, msk(2026, 11, 17, 10, 0), status=AppealStatus.REGISTERED,
               external=ExternalRef("pos", "ext-1", "P-1", "in_work"))
    client = TestClient(TestServer(gateway.app))
    await client.start_server()
    try:
        for path in ("/api/v1/reports/weekly?hotline=122&week=2026-W47",
                     "/api/v1/reports/monthly?hotline=122&month=2026-11",
                     "/api/v1/reports/reconcile?from=2026-11-16&to=2026-11-22",
                     "/api/v1/reports/callload?hotline=122&from=2026-11-16&to=2026-11-22"):
            response = await client.get(path, headers=SUPERVISOR)
            assert response.status == 200, path
            assert response.content_type == XLSX
            openpyxl.load_workbook(io.BytesIO(await response.read()))
        weekly = await client.get("/api/v1/reports/weekly?hotline=122&week=2026-W47",
                                  headers=SUPERVISOR)
        assert openpyxl.load_workbook(io.BytesIO(await weekly.read())).active.max_row == 4
        # `to` is inclusive: the calls of the 17th are in a 17..17 reconciliation.
        one_day = await client.get("/api/v1/reports/reconcile?from=2026-11-17&to=2026-11-17",
                                   headers=SUPERVISOR)
        ws = openpyxl.load_workbook(io.BytesIO(await one_day.read()))["Сверка"]
        assert [ws.cell(r, 1).value for r in range(2, 5)] == [
            "J-202611170700-0", "J-202611170700-1", "J-202611170700-2"]
        operator = await client.get("/api/v1/reports/weekly?hotline=122&week=2026-W47",
                                    headers={"Authorization": "Bearer op"})
        assert operator.status == 403
        bad = await client.get("/api/v1/reports/monthly?hotline=122&month=2026-13",
                               headers=SUPERVISOR)
        assert bad.status == 422 and "month" in (await bad.json())["error"]["fields"]
        unknown = await client.get("/api/v1/reports/weekly?hotline=999&week=2026-W47",
                                   headers=SUPERVISOR)
        assert unknown.status == 422
    finally:
        await client.close()


# -- the PBX and the call-load journal ---------------------------------------------------


async def test_pbx_import_is_idempotent_and_feeds_the_call_load_journal(build: Build) -> None:
    gateway = build(ManualClock(msk(2026, 11, 25, 12, 0)))
    zone = gateway.settings.zone_of("122")
    calls = read_cdr(FIXTURES / "Master.csv", hotline="122", zone=zone).calls
    store = SqlPbxCalls(gateway.engine, gateway.outbox)
    first = await import_pbx_calls(store, calls, gateway.clock, zone,
                                   callbacks=gateway.callbacks)
    again = await import_pbx_calls(store, calls, gateway.clock, zone,
                                   callbacks=gateway.callbacks)
    assert (first.new, first.to_call_back, first.tasks_created) == (6, 1, 1)
    assert (again.new, again.repeated, again.tasks_created) == (0, 6, 0)
    # [001: 13–14] the missed inbound call became one callback task, due by 12:00 next day.
    assert gateway.callbacks is not None
    worklist = await gateway.callbacks.worklist()
    [task] = worklist.tasks
    [missed] = missed_calls_to_call_back(calls, zone)
    assert (task.hotline, task.missed_at) == ("122", missed.started_at)
    due = task.due_at.astimezone(zone)
    assert (due.hour, due.minute) == (12, 0) and due.date() > missed.started_at.date()
    # The gateway's own callback tries count as outgoing calls too.
    (appeal_id,) = await seed(gateway, 1, msk(2026, 11, 20, 10, 0))
    async with gateway.engine.begin() as conn:
        for outcome, hour in (("no_answer", 14), ("delivered", 15)):
            await conn.execute(insert(deliveries).values(
                appeal_id=appeal_id, channel="phone",
                outcome=outcome, at=msk(2026, 11, 23, hour), by=None, source="gateway",
                recorded_at=msk(2026, 11, 23, hour)))
    assert gateway.reports is not None
    report = await gateway.reports.callload("122", parse_period("2026-11-23..2026-11-24"))
    monday, tuesday = report.days
    assert (monday.received, monday.lost, monday.outgoing, monday.connected) == (3, 2, 4, 2)
    assert (tuesday.received, tuesday.lost) == (1, 0)


async def test_monthly_report_reads_the_database_without_personal_data(build: Build) -> None:
    gateway = build(ManualClock(msk(2026, 12, 2, 12, 0)))
    ready = msk(2026, 11, 10, 12, 0)
    await seed(gateway, 5, msk(2026, 11, 10, 10, 0), status=AppealStatus.DELIVERED,
               answer_ready_at=ready, delivered_at=ready + timedelta(hours=1))
    await seed(gateway, 2, msk(2026, 11, 30, 23, 30))  # late on the month's last day
    await seed(gateway, 1, msk(2026, 12, 1, 0, 30))  # the next month: not counted
    assert gateway.reports is not None
    report = await gateway.reports.monthly("122", month("2026-11"))
    assert report.total == 7
    assert dict(report.by_route)["pos"] == 7
    assert report.answered_on_time == 5
    assert report.to_answer.median_h == pytest.approx(2 - 5 / 60, abs=0.1)
    assert report.to_delivery.median_h == pytest.approx(1.0)


@pytest.mark.usefixtures("restore_logging")
def test_cli_writes_reports_and_imports_cdr(database_url: str, reports_file: Path,
                                            tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_DATABASE_URL", database_url)
    monkeypatch.setenv("GATEWAY_REPORTS_FILE", str(reports_file))
    assert main(["pbx", "import", str(FIXTURES / "Master.csv")]) == 0
    broken = tmp_path / "broken.csv"
    broken.write_bytes((FIXTURES / "Master.csv").read_bytes() + b'"","1","2"\n')
    assert main(["pbx", "import", str(broken)]) == 1  # line 7 reported, the rest stored
    out = tmp_path / "callload.xlsx"
    assert main(["report", "callload", "--hotline", "122", "--period",
                 "2026-11-23..2026-11-24", "--out", str(out)]) == 0
    ws = openpyxl.load_workbook(out).active
    assert (ws["C3"].value, ws["D3"].value) == (3, 2)
    week = tmp_path / "weekly.xlsx"
    assert main(["report", "weekly", "--hotline", "122", "--period", "2026-W47",
                 "--out", str(week)]) == 0
    assert openpyxl.load_workbook(week).active["A1"].value == "Дата и время звонка"
    assert main(["report", "monthly", "--period", "2026-99", "--out", str(week)]) == 1

