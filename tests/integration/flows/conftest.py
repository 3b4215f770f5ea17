"""End-to-end flows of the gateway's daemon: real SQLite, the ПОС simulator, the SMTP sink.

A `Flow` is the whole gateway as `bootstrap` wires it for `gateway run`, with the real
adapters pointed at a ПОС simulator and an SMTP sink on loopback. The tests drive it the
way operators and the daemon do, but step by step: calls through the HTTP API, then
`flow.drain()` (the outbox dispatcher until nothing is due) and `flow.poll()` (one ПОС
poll cycle) instead of waiting for the daemon's loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import itertools
import mailbox
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import tenacity
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from sqlalchemy import select

from adapters.delo.simulator import DeloSimulatorSettings
from adapters.delo.simulator import RunningSimulator as RunningDelo
from adapters.delo.simulator import start_simulator as start_delo
from adapters.email.sink import RunningSink, start_sink
from adapters.pos.simulator import (
    PosSimulatorSettings,
    RunningSimulator,
    SimMessage,
    start_simulator,
)
from config.settings import (
    DeloSettings,
    ImapSettings,
    OutboxSettings,
    PosSettings,
    Settings,
    SmtpSettings,
)
from gateway.bootstrap import Gateway, bootstrap
from gateway.clock import ManualClock
from gateway.services import forwarding
from gateway.services.polling import CycleResult
from gateway.storage.migrate import upgrade
from gateway.storage.tables import appeals, audit_log, deliveries
from outbox import RetryPolicy, outbox_messages

API_TOKENS = "operator:op-token,delivery:dl-token,admin:ad-token"
OPERATOR = {"Authorization": "Bearer op-token"}
DELIVERY = {"Authorization": "Bearer dl-token"}
ADMIN = {"Authorization": "Bearer ad-token"}
POS_TOKEN = "flow-pos-token"

HEATING = "Отопление"  # → ПОС, category 101/10101, organization 5011 → its parent 5001
ANIMALS = "Безнадзорные животные"  # → e-mail to «vet» and «city-admin»
PREFIX = "Центр мониторинга 112. "

APPLICANT: dict[str, Any] = {
    "last_name": "Пряников",
    "first_name": "Всеволод",
    "middle_name": "Аркадьевич",
    "phone": "+79175551234",
    "email": "vsevolod.pryanikov@example.ru",
    "postal_address": "432017, г. Примерск, ул. Кролюницкого, д. 17, кв. 42",
}
PROBLEM_ADDRESS = "г. Примерск, ул. Гончарова, 38"
SUMMARY = "В квартире нет отопления третий день, батареи холодные"
# Strings that must never leak where personal data is banned.
PERSONAL = ("Пряников", "Всеволод", "Аркадьевич", "79175551234", "vsevolod.pryanikov",
            "Кролюницкого")

_journal = itertools.count(1)


def now_minute() -> datetime:
    """The real time, to the minute: intake refuses calls from the (clock's) future."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call_body(received_at: datetime, **overrides: Any) -> dict[str, Any]:
    """A call every rule accepts, routed to ПОС; `overrides` replace top-level fields."""
    body: dict[str, Any] = {
        "journal_id": f"FLOW-{next(_journal):06d}",
        "hotline": "122",
        "received_at": (received_at - timedelta(minutes=5)).isoformat(),
        "operator": "Иванова А.А.",
        "applicant": dict(APPLICANT),
        "problem_address": PROBLEM_ADDRESS,
        "topic": HEATING,
        "summary": SUMMARY,
        "repeat": False,
        "urgency": "urgent",
        "answer_channel": "phone",
        "informational": False,
    }
    body.update(overrides)
    return body


def fast_policy(policy: RetryPolicy) -> RetryPolicy:
    """The same policy with no back-off of its own (Retry-After is still honoured)."""
    return RetryPolicy(max_attempts=policy.max_attempts, max_age_s=policy.max_age_s,
                       wait=tenacity.wait_none(), timeout_s=10.0)


@dataclass
class Flow:
    gw: Gateway
    client: TestClient[web.Request, web.Application]
    pos: RunningSimulator
    sink: RunningSink
    maildir: Path
    clock: ManualClock
    database_url: str
    sim_http: httpx.AsyncClient
    delo: RunningDelo | None = None
    _calls: list[str] = field(default_factory=list)

    # -- the API ---------------------------------------------------------------------

    async def post_call(self, **overrides: Any) -> dict[str, Any]:
        body = call_body(self.clock.now(), **overrides)
        response = await self.client.post("/api/v1/calls", json=body, headers=OPERATOR)
        assert response.status == 201, await response.text()
        accepted: dict[str, Any] = await response.json()
        self._calls.append(accepted["id"])
        return accepted

    async def get(self, appeal_id: str, headers: dict[str, str] = OPERATOR) -> dict[str, Any]:
        response = await self.client.get(f"/api/v1/calls/{appeal_id}", headers=headers)
        assert response.status == 200, await response.text()
        data: dict[str, Any] = await response.json()
        return data

    async def ready(self) -> list[dict[str, Any]]:
        response = await self.client.get("/api/v1/deliveries", params={"state": "ready"},
                                         headers=DELIVERY)
        assert response.status == 200, await response.text()
        items: list[dict[str, Any]] = (await response.json())["items"]
        return items

    async def deliver(self, appeal_id: str, channel: str = "phone", *, by: str = "Иванова А.А.",
                      headers: dict[str, str] = DELIVERY) -> tuple[int, dict[str, Any]]:
        response = await self.client.post(
            f"/api/v1/calls/{appeal_id}/delivery", headers=headers,
            json={"channel": channel, "delivered_at": self.clock.now().isoformat(), "by": by})
        return response.status, await response.json()

    async def attempt(self, appeal_id: str, outcome: str = "no_answer",
                      at: datetime | None = None) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"channel": "phone", "outcome": outcome}
        if at is not None:
            body["at"] = at.isoformat()
        response = await self.client.post(f"/api/v1/calls/{appeal_id}/attempts",
                                          headers=OPERATOR, json=body)
        return response.status, await response.json()

    async def status(self) -> dict[str, Any]:
        response = await self.client.get("/status", headers=ADMIN)
        assert response.status == 200, await response.text()
        data: dict[str, Any] = await response.json()
        return data

    # -- the daemon, one step at a time ------------------------------------------------

    async def drain(self) -> None:
        """The outbox until nothing is due and nothing is in flight."""
        await asyncio.wait_for(self.gw.daemon.dispatcher.drain(), timeout=60)

    async def drain_all(self, timeout_s: float = 60.0) -> None:
        """Drain again and again until no row is pending or leased (waits out Retry-After)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            await self.drain()
            stats = await self.gw.outbox.stats()
            if not stats.by_state.get("pending", 0) and not stats.by_state.get("leased", 0):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"outbox not drained: {stats.by_state}")
            await asyncio.sleep(0.05)

    async def poll(self, system: str = "pos") -> CycleResult:
        return await self.gw.pollers[system].poll_once()

    # -- the ПОС side --------------------------------------------------------------------

    def pos_message(self, external_id: str | int) -> SimMessage:
        return self.pos.sim.messages[int(external_id)]

    async def advance(self, external_id: str | int, to: str = "answer_ready") -> None:
        response = await self.sim_http.post("/_sim/advance",
                                            json={"id": int(external_id), "to": to})
        assert response.status_code == 200, response.text

    async def staff_confirm(self, external_id: str | int, channel: str = "phone",
                            by: str = "Специалист министерства") -> dict[str, Any]:
        response = await self.sim_http.post(f"/_sim/messages/{int(external_id)}/confirm",
                                            json={"channel": channel, "confirmed_by": by})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    async def sim_stats(self) -> dict[str, Any]:
        response = await self.sim_http.get("/_sim/stats")
        assert response.status_code == 200
        data: dict[str, Any] = response.json()
        return data

    # -- composite steps -------------------------------------------------------------

    async def registered_call(self, **overrides: Any) -> tuple[str, str]:
        """A call taken and registered in ПОС: (appeal id, ПОС id)."""
        appeal_id = (await self.post_call(**overrides))["id"]
        await self.drain()
        appeal = await self.get(appeal_id)
        assert appeal["status"] == "registered", appeal
        return appeal_id, appeal["external"]["id"]

    async def answered_call(self, **overrides: Any) -> tuple[str, str]:
        """A call whose answer is ready in the gateway (ПОС answered, the poller saw it)."""
        appeal_id, pos_id = await self.registered_call(**overrides)
        await self.advance(pos_id)
        await self.poll()
        assert (await self.get(appeal_id))["status"] == "answer_ready"
        return appeal_id, pos_id

    # -- the database ----------------------------------------------------------------

    async def audit(self, appeal_id: str | None = None) -> list[dict[str, Any]]:
        query = select(audit_log).order_by(audit_log.c.id)
        if appeal_id is not None:
            query = query.where(audit_log.c.appeal_id == appeal_id)
        async with self.gw.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def deliveries(self, appeal_id: str) -> list[dict[str, Any]]:
        async with self.gw.engine.connect() as conn:
            rows = await conn.execute(select(deliveries).where(deliveries.c.appeal_id == appeal_id)
                                      .order_by(deliveries.c.id))
            return [dict(r) for r in rows.mappings()]

    async def outbox_rows(self, appeal_id: str | None = None) -> list[dict[str, Any]]:
        query = select(outbox_messages).order_by(outbox_messages.c.id)
        if appeal_id is not None:
            query = query.where(outbox_messages.c.ordering_key == appeal_id)
        async with self.gw.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def appeal_row(self, appeal_id: str) -> dict[str, Any]:
        async with self.gw.engine.connect() as conn:
            row = (await conn.execute(select(appeals).where(appeals.c.id == appeal_id))
                   ).mappings().one()
        return dict(row)

    # -- the sink ----------------------------------------------------------------------

    def letters(self) -> list[EmailMessage]:
        box = mailbox.Maildir(str(self.maildir), create=False)
        found = []
        for key in sorted(box.iterkeys()):
            with box.get_file(key) as handle:
                message = email.message_from_bytes(handle.read(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            found.append(message)
        return found


StartFlow = Callable[..., Awaitable[Flow]]


@pytest.fixture
async def start_flow(tmp_path: Path) -> AsyncIterator[StartFlow]:
    """start_flow(clock=None, page_size=200, overlap_s=60, delo=None, imap=None,
    **ПОС simulator settings).

    `delo`: settings of a «Дело» simulator to start and wire in too (None: no «Дело»).
    `imap`: the mailbox the reply reader reads (None: no reader).
    """
    async with contextlib.AsyncExitStack() as stack:
        started = itertools.count()

        async def start(clock: ManualClock | None = None, *, page_size: int = 200,
                        overlap_s: float = 60.0, delo: DeloSimulatorSettings | None = None,
                        imap: ImapSettings | None = None, **sim: Any) -> Flow:
            n = next(started)
            sim.setdefault("stage_seconds", 0)
            pos = await start_simulator(settings=PosSimulatorSettings(token=POS_TOKEN, **sim))
            stack.push_async_callback(pos.close)
            maildir = tmp_path / f"maildir-{n}"
            sink = await start_sink("127.0.0.1", 0, maildir)
            stack.push_async_callback(sink.close)
            delo_sim = None
            delo_settings = DeloSettings()
            if delo is not None:
                delo_sim = await start_delo(settings=delo)
                stack.push_async_callback(delo_sim.close)
                delo_settings = DeloSettings(
                    base_url=delo_sim.url, username=delo.username,
                    password=SecretStr(delo.password), page_size=page_size, timeout_s=5.0,
                    overlap_s=overlap_s)
            database_url = f"sqlite+aiosqlite:///{tmp_path / f'gateway-{n}.db'}"
            await asyncio.to_thread(upgrade, database_url)
            settings = Settings(
                database_url=database_url,
                api_tokens=SecretStr(API_TOKENS),
                pos=PosSettings(base_url=pos.url, token=SecretStr(POS_TOKEN),
                                page_size=page_size, timeout_s=5.0, overlap_s=overlap_s),
                delo=delo_settings,
                smtp=SmtpSettings(host="127.0.0.1", port=sink.port, security="none",
                                  sender="Горячая линия 122 <hotline@gateway.test>",
                                  timeout_s=5.0),
                outbox=OutboxSettings(concurrency=16, lease_s=30.0, poll_interval_s=0.05),
                imap=imap or ImapSettings(),
            )
            clock = clock or ManualClock(now_minute())
            gw = bootstrap(settings, clock=clock, registry=CollectorRegistry())
            stack.push_async_callback(gw.close)
            client: TestClient[web.Request, web.Application] = TestClient(TestServer(gw.app))
            await client.start_server()
            stack.push_async_callback(client.close)
            sim_http = httpx.AsyncClient(base_url=pos.url, timeout=10)
            stack.push_async_callback(sim_http.aclose)
            return Flow(gw, client, pos, sink, maildir, clock, database_url, sim_http, delo_sim)

        yield start


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forwarding's policies without back-off, for runs that fail on purpose (test-only)."""
    for name in ("REGISTER_POLICY", "CONFIRM_POLICY", "MAIL_POLICY"):
        monkeypatch.setattr(forwarding, name, fast_policy(getattr(forwarding, name)))


def max_poll_requests(changed: int, page_size: int) -> int:
    return math.ceil(changed / page_size) + 1
