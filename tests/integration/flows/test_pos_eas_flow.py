"""The gateway speaking ПОС's EAS dialect end to end: parked creates, people resolving
them, per-appeal status reads. Real SQLite, the EAS simulator on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from adapters.pos.eas_simulator import SIM_KEY, EasSimulator, create_eas_app
from config.settings import OutboxSettings, PosEasSettings, PosSettings, Settings
from gateway.bootstrap import Gateway, bootstrap
from gateway.cli import pos_marker
from gateway.clock import ManualClock
from gateway.domain.appeal import AppealStatus
from gateway.domain.ports import ExternalUpdate
from gateway.services.export_import import ExportedRow, ImportReport, import_rows
from gateway.services.outbox_admin import OutboxAdmin, is_parked
from outbox import State
from tests.integration.flows.conftest import (
    ADMIN,
    API_TOKENS,
    APPLICANT,
    OPERATOR,
    call_body,
    now_minute,
)

EPGU = 1000000001


@dataclass
class EasFlow:
    gw: Gateway
    client: TestClient[web.Request, web.Application]
    sim: EasSimulator
    clock: ManualClock

    async def post_call(self, **applicant: Any) -> dict[str, Any]:
        body = call_body(self.clock.now(), applicant={**APPLICANT, **applicant})
        response = await self.client.post("/api/v1/calls", json=body, headers=OPERATOR)
        assert response.status == 201, await response.text()
        data: dict[str, Any] = await response.json()
        return {**data, "journal_id": body["journal_id"]}

    async def get(self, appeal_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/v1/calls/{appeal_id}", headers=OPERATOR)
        assert response.status == 200, await response.text()
        data: dict[str, Any] = await response.json()
        return data

    async def drain(self) -> None:
        await asyncio.wait_for(self.gw.daemon.dispatcher.drain(), timeout=60)

    async def dead(self) -> list[dict[str, Any]]:
        response = await self.client.get("/api/v1/outbox", params={"state": "dead"},
                                         headers=ADMIN)
        items: list[dict[str, Any]] = (await response.json())["items"]
        return items


@pytest.fixture
async def eas_flow(tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[EasFlow]]]:
    from gateway.storage.migrate import upgrade

    async with contextlib.AsyncExitStack() as stack:

        async def start() -> EasFlow:
            server = TestServer(create_eas_app())
            await server.start_server()
            stack.push_async_callback(server.close)
            database_url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
            await asyncio.to_thread(upgrade, database_url)
            settings = Settings(
                database_url=database_url, api_tokens=SecretStr(API_TOKENS),
                pos=PosSettings(
                    base_url=str(server.make_url("")).rstrip("/"), dialect="eas",
                    timeout_s=5.0,
                    eas=PosEasSettings(
                        client_id=SecretStr("sim-client"), client_secret=SecretStr("sim-secret"),
                        oauth_client=SecretStr("sim-oauth"),
                        oauth_secret=SecretStr("sim-oauth-secret"), region_id=73,
                        no_epgu_email=["gzhi"])),
                outbox=OutboxSettings(concurrency=4, lease_s=30.0, poll_interval_s=0.05),
            )
            clock = ManualClock(now_minute())
            gw = bootstrap(settings, clock=clock, registry=CollectorRegistry())
            stack.push_async_callback(gw.close)
            client: TestClient[web.Request, web.Application] = TestClient(TestServer(gw.app))
            await client.start_server()
            stack.push_async_callback(client.close)
            return EasFlow(gw, client, server.app[SIM_KEY], clock)

        yield start


async def test_a_lost_create_is_parked_found_in_pos_and_never_sent_twice(
        eas_flow: Callable[[], Awaitable[EasFlow]]) -> None:
    flow = await eas_flow()
    flow.sim.lose_next_create = True
    accepted = await flow.post_call(epgu_id=EPGU)

    await flow.drain()

    dead = await flow.dead()
    assert len(dead) == 1 and is_parked(dead[0]["last_error"])
    marker = f"Центр мониторинга 112 № {accepted['journal_id']}"
    assert marker in dead[0]["last_error"]
    appeal = await flow.get(accepted["id"])
    assert appeal["status"] == "failed"
    assert marker in (appeal["history"][-1]["note"] or "")
    # "Re-drive every dead letter" must not resend a parked create.
    admin = OutboxAdmin(flow.gw.outbox, flow.gw.storage, flow.gw.clock)
    assert (await admin.redrive_all_dead("test")).rows == 0

    pos_id = str(next(iter(flow.sim.appeals)))
    found = await flow.client.post(f"/api/v1/calls/{accepted['id']}/pos-record",
                                   json={"pos_id": pos_id}, headers=OPERATOR)
    assert found.status == 403
    found = await flow.client.post(f"/api/v1/calls/{accepted['id']}/pos-record",
                                   json={"pos_id": pos_id}, headers=ADMIN)
    assert found.status == 200, await found.text()
    registered = await flow.get(accepted["id"])
    assert registered["status"] == "registered" and registered["external"]["id"] == pos_id

    # Even a re-drive of the row afterwards sends nothing: the appeal is registered.
    retry = await flow.client.post(f"/api/v1/outbox/{dead[0]['id']}/retry", headers=ADMIN)
    assert retry.status == 200
    await flow.drain()
    assert flow.sim.creates.total() == 1


async def test_not_there_then_redrive_sends_once(
        eas_flow: Callable[[], Awaitable[EasFlow]]) -> None:
    flow = await eas_flow()
    await flow.post_call(epgu_id=EPGU)
    await flow.drain()  # one registered call: the gateway holds a token now
    flow.sim.settings.error_rate = 1.0  # ПОС answers 5xx: nobody knows whether it landed
    accepted = await flow.post_call(epgu_id=EPGU)
    await flow.drain()
    dead = await flow.dead()
    assert len(dead) == 1 and is_parked(dead[0]["last_error"])
    assert flow.sim.creates.total() == 1

    flow.sim.settings.error_rate = 0.0  # a person checked ПОС: not there → send
    retry = await flow.client.post(f"/api/v1/outbox/{dead[0]['id']}/retry", headers=ADMIN)
    assert retry.status == 200
    await flow.drain()

    assert (await flow.get(accepted["id"]))["status"] == "registered"
    assert flow.sim.creates.total() == 2
    assert all(count == 1 for count in flow.sim.creates.values())


async def test_status_is_read_per_appeal_and_send_response_is_answer_ready(
        eas_flow: Callable[[], Awaitable[EasFlow]]) -> None:
    flow = await eas_flow()
    accepted = await flow.post_call(epgu_id=EPGU)
    await flow.drain()
    appeal = await flow.get(accepted["id"])
    assert appeal["status"] == "registered"
    pos_id = appeal["external"]["id"]
    flow.sim.event(int(pos_id), "TAKE_TO_WORK")
    flow.sim.event(int(pos_id), "SEND_RESPONSE", comment="Отопление включено")

    result = await flow.gw.pollers["pos"].reconcile()

    assert result.checked == 1
    answered = await flow.get(accepted["id"])
    assert answered["status"] == "answer_ready"
    response = await flow.client.get("/status", headers=ADMIN)
    assert (await response.json())["pollers"]["pos"]["due_lag_s"] == 0.0  # terminal: not due


async def test_a_call_without_epgu_id_takes_the_fallback_with_the_reason_recorded(
        eas_flow: Callable[[], Awaitable[EasFlow]]) -> None:
    flow = await eas_flow()
    accepted = await flow.post_call()  # the caller has no Госуслуги id

    appeal = await flow.get(accepted["id"])

    assert appeal["route"]["system"] == "email"
    assert "epguId" in (appeal["history"][0]["note"] or "")
    await flow.drain()
    assert flow.sim.creates.total() == 0
    with_id = await flow.post_call(epgu_id=EPGU)
    assert (await flow.get(with_id["id"]))["route"]["system"] == "pos"


async def test_a_delivery_is_recorded_locally_and_left_to_confirm_in_pos(
        eas_flow: Callable[[], Awaitable[EasFlow]]) -> None:
    flow = await eas_flow()
    accepted = await flow.post_call(epgu_id=EPGU)
    await flow.drain()
    pos_id = (await flow.get(accepted["id"]))["external"]["id"]
    flow.sim.event(int(pos_id), "SEND_RESPONSE", comment="Отопление включено")
    await flow.gw.pollers["pos"].reconcile()

    response = await flow.client.post(
        f"/api/v1/calls/{accepted['id']}/delivery", headers={"Authorization": "Bearer dl-token"},
        json={"channel": "phone", "delivered_at": flow.clock.now().isoformat(), "by": "Иванова"})
    assert response.status in (200, 201), await response.text()
    await flow.drain()

    assert (await flow.get(accepted["id"]))["status"] == "delivered"
    dead = await flow.dead()
    assert [d["action"] for d in dead] == ["confirm_delivery"]
    assert "confirm in ПОС" in dead[0]["last_error"] and pos_id in dead[0]["last_error"]


# -- ПОС's Excel export settles what people would check in ПОС's UI ---------------------------


def _export_row(row: int, number: str, status: AppealStatus, fact: str,
                clock: ManualClock) -> ExportedRow:
    stage = {AppealStatus.IN_PROGRESS: "execution",
             AppealStatus.DELIVERED: "answer_delivered"}[status]
    return ExportedRow(row, number, ExternalUpdate(
        system="pos", external_id=number, appeal_id=None, stage=stage, status=status,
        updated_at=clock.now()), fact=fact)


async def _import(flow: EasFlow, rows: list[ExportedRow]) -> ImportReport:
    return await import_rows(flow.gw.storage, "pos", rows, clock=flow.gw.clock,
                             zone_of=lambda _: UTC, outbox=flow.gw.outbox,
                             marker_of=pos_marker)


async def test_a_parked_create_found_in_the_export_is_registered_without_another_create(
        eas_flow: Callable[[], Awaitable[EasFlow]]) -> None:
    flow = await eas_flow()
    flow.sim.lose_next_create = True
    accepted = await flow.post_call(epgu_id=EPGU)
    await flow.drain()
    assert (await flow.get(accepted["id"]))["status"] == "failed"
    pos_id = str(next(iter(flow.sim.appeals)))
    journal = accepted["journal_id"]
    text = f"Центр мониторинга 112 № {journal}. Нет отопления"

    report = await _import(flow, [
        # Another appeal whose journal id merely begins with ours: not a match.
        _export_row(2, "999", AppealStatus.IN_PROGRESS,
                    f"Центр мониторинга 112 № {journal}7. Другое", flow.clock),
        _export_row(3, pos_id, AppealStatus.IN_PROGRESS, text, flow.clock),
    ])

    assert (report.found, report.applied, report.unmatched) == (1, 1, [2])
    appeal = await flow.get(accepted["id"])
    assert appeal["status"] == "in_progress" and appeal["external"]["id"] == pos_id
    assert await flow.dead() == []  # the parked row is cancelled, not left for a person
    cancelled = await flow.gw.outbox.list_messages(State.CANCELLED)
    assert [row.action for row in cancelled] == ["register"]
    assert f"ПОС {pos_id}" in (cancelled[0].last_error or "")
    await flow.drain()
    assert flow.sim.creates.total() == 1
    # A second import of the same file changes nothing and finds nothing more.
    again = await _import(flow, [_export_row(3, pos_id, AppealStatus.IN_PROGRESS, text,
                                             flow.clock)])
    assert (again.found, again.applied, again.unchanged) == (0, 0, 1)


async def test_a_parked_create_whose_marker_starts_two_rows_is_left_for_a_person(
        eas_flow: Callable[[], Awaitable[EasFlow]]) -> None:
    flow = await eas_flow()
    flow.sim.lose_next_create = True
    accepted = await flow.post_call(epgu_id=EPGU)
    await flow.drain()
    text = f"Центр мониторинга 112 № {accepted['journal_id']}. Нет отопления"

    report = await _import(flow, [
        _export_row(2, "501", AppealStatus.IN_PROGRESS, text, flow.clock),
        _export_row(3, "502", AppealStatus.IN_PROGRESS, text, flow.clock)])

    assert report.found == 0 and report.doubtful == [[2, 3]]
    assert (await flow.get(accepted["id"]))["status"] == "failed"
    assert len(await flow.dead()) == 1


async def test_an_export_showing_delivery_closes_the_confirm_in_pos_item(
        eas_flow: Callable[[], Awaitable[EasFlow]]) -> None:
    flow = await eas_flow()
    accepted = await flow.post_call(epgu_id=EPGU)
    await flow.drain()
    pos_id = (await flow.get(accepted["id"]))["external"]["id"]
    flow.sim.event(int(pos_id), "SEND_RESPONSE", comment="Отопление включено")
    await flow.gw.pollers["pos"].reconcile()
    response = await flow.client.post(
        f"/api/v1/calls/{accepted['id']}/delivery", headers={"Authorization": "Bearer dl-token"},
        json={"channel": "phone", "delivered_at": flow.clock.now().isoformat(), "by": "Иванова"})
    assert response.status in (200, 201), await response.text()
    await flow.drain()
    assert [d["action"] for d in await flow.dead()] == ["confirm_delivery"]

    still_working = await _import(flow, [_export_row(
        2, pos_id, AppealStatus.IN_PROGRESS, "Центр мониторинга 112", flow.clock)])
    assert still_working.confirmed == 0 and len(await flow.dead()) == 1
    report = await _import(flow, [_export_row(
        2, pos_id, AppealStatus.DELIVERED, "Центр мониторинга 112", flow.clock)])

    assert report.confirmed == 1
    assert await flow.dead() == []
    cancelled = await flow.gw.outbox.list_messages(State.CANCELLED)
    assert [row.action for row in cancelled] == ["confirm_delivery"]
    assert (await flow.get(accepted["id"]))["status"] == "delivered"
