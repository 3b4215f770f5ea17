"""The ПОС adapter in the EAS dialect, against the EAS simulator and respx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx
from aiohttp.test_utils import TestServer

from adapters.pos import eas_wire as wire
from adapters.pos.eas_client import AMBIGUOUS, EasClient, TokenRefused
from adapters.pos.eas_simulator import SIM_KEY, EasSimulator, create_eas_app
from gateway.domain.appeal import AppealStatus
from outbox import Permanent, Transient
from tests.builders import APPLICANT, make_appeal

CREDENTIALS = {"client_id": "sim-client", "client_secret": "sim-secret",
               "oauth_client": "sim-oauth", "oauth_secret": "sim-oauth-secret"}
BASE = "https://pos.test"


def eas_appeal(**changes: object):  # type: ignore[no-untyped-def]
    return make_appeal(applicant=replace(APPLICANT, epgu_id=1000000001), **changes)


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = create_eas_app()
    async with TestServer(app) as srv:
        yield srv


def sim_of(server: TestServer) -> EasSimulator:
    return server.app[SIM_KEY]


def client_for(url: str, **changes: object) -> EasClient:
    return EasClient(url, region_id=73, ogrn="1000000000000", **{**CREDENTIALS, **changes})  # type: ignore[arg-type]


async def test_creates_with_marker_journal_id_and_received_at(server: TestServer) -> None:
    async with client_for(str(server.make_url(""))) as pos:
        ref = await pos.register(eas_appeal())
    sim = sim_of(server)
    stored = sim.appeals[int(ref.id)]
    assert stored.request["description"].startswith("Центр мониторинга 112 № KRS-2026-000123. ")
    assert stored.request["applicant"]["epguId"] == 1000000001
    assert stored.request["createdAt"].endswith("Z")
    assert ref.stage == "MODERATION_NEW"


async def test_lost_create_parks_the_row_and_never_creates_twice(server: TestServer) -> None:
    sim = sim_of(server)
    sim.lose_next_create = True
    appeal = eas_appeal()
    async with client_for(str(server.make_url(""))) as pos:
        with pytest.raises(Permanent) as parked:
            await pos.register(appeal)
        assert parked.value.reason.startswith(AMBIGUOUS)
        assert "Центр мониторинга 112 № KRS-2026-000123" in parked.value.reason
        # The outbox's next claim of the same row (attempt > 1) must not send again.
        with pytest.raises(Permanent) as again:
            await pos.register(appeal, lookup_first=True)
        assert again.value.reason.startswith(AMBIGUOUS)
    assert len(sim.appeals) == 1
    assert list(sim.creates.values()) == [1]


async def test_not_sent_failure_is_retried_and_creates_once(server: TestServer) -> None:
    appeal = eas_appeal()
    async with client_for("http://127.0.0.1:1") as down:
        with pytest.raises(Transient) as first:
            await down.register(appeal)
        assert not isinstance(first.value, Permanent)
    async with client_for(str(server.make_url(""))) as pos:
        pos._not_sent.update({appeal.registration_key: None})  # the same process, restarted pool
        ref = await pos.register(appeal, lookup_first=True)
    assert sim_of(server).creates.total() == 1
    assert ref.id


async def test_token_expiry_mid_run_reauthenticates_once(server: TestServer) -> None:
    sim = sim_of(server)
    async with client_for(str(server.make_url(""))) as pos:
        first = await pos.register(eas_appeal())
        assert pos.token_calls == 1
        sim.tokens.clear()  # every token ПОС issued expires
        second = await pos.register(eas_appeal(id="other", journal_id="KRS-2026-000124"))
        assert pos.token_calls == 2
        update = await pos.get_update(first.id)
    assert first.id != second.id
    assert sim.creates.total() == 2
    assert update is not None and update.status is AppealStatus.REGISTERED


async def test_wrong_credentials_are_a_configuration_error(server: TestServer) -> None:
    async with client_for(str(server.make_url("")), client_secret="wrong") as pos:
        with pytest.raises(TokenRefused):
            await pos.register(eas_appeal())
    assert sim_of(server).creates.total() == 0


async def test_without_epgu_id_nothing_is_sent(server: TestServer) -> None:
    async with client_for(str(server.make_url(""))) as pos:
        with pytest.raises(Permanent, match="epguId"):
            await pos.register(make_appeal())
    assert sim_of(server).creates.total() == 0


async def test_history_maps_codes_answer_and_executor(server: TestServer) -> None:
    sim = sim_of(server)
    async with client_for(str(server.make_url(""))) as pos:
        ref = await pos.register(eas_appeal())
        sim.event(int(ref.id), "FORWARD_TO_SUBORDINATE", organization="Администрация района")
        sim.event(int(ref.id), "SOME_NEW_CODE")
        moving = await pos.get_update(ref.id)
        assert moving is not None
        assert moving.status is AppealStatus.IN_PROGRESS and moving.stage == "SOME_NEW_CODE"
        sim.event(int(ref.id), "SEND_RESPONSE", comment="Отопление включено")
        assert await pos.get_update(ref.id) is None  # not due yet: the schedule holds it
        pos.schedule.forget(ref.id)
        answered = await pos.get_update(ref.id)
        assert answered is not None
        assert answered.status is AppealStatus.ANSWER_READY
        assert answered.answer is not None and answered.answer.text == "Отопление включено"
        assert answered.answer.organization == "Администрация района"
        assert answered.planned_completion is not None
        # Terminal: never read again.
        assert not pos.schedule.is_due(ref.id, datetime.now(UTC) + timedelta(days=365))


@respx.mock
async def test_5xx_after_sending_parks_instead_of_retrying() -> None:
    respx.post(f"{BASE}{wire.TOKEN_PATH}").respond(200, json={"access_token": "t"})
    create = respx.post(f"{BASE}{wire.CREATE_PATH}").respond(500, text="boom")
    async with client_for(BASE) as pos:
        with pytest.raises(Permanent) as parked:
            await pos.register(eas_appeal())
    assert parked.value.reason.startswith(AMBIGUOUS)
    assert "boom" not in parked.value.reason
    assert create.call_count == 1


@respx.mock
async def test_401_on_create_reauthenticates_and_replays_once() -> None:
    token = respx.post(f"{BASE}{wire.TOKEN_PATH}").mock(side_effect=[
        httpx.Response(200, json={"access_token": "old"}),
        httpx.Response(200, json={"access_token": "new"}),
    ])
    create = respx.post(f"{BASE}{wire.CREATE_PATH}").mock(side_effect=[
        httpx.Response(401),
        httpx.Response(200, json={"posId": 563000001, "status": "MODERATION_NEW"}),
    ])
    async with client_for(BASE) as pos:
        ref = await pos.register(eas_appeal())
    assert ref.id == "563000001"
    assert token.call_count == 2 and create.call_count == 2
    assert create.calls[1].request.headers["Authorization"] == "Bearer new"
    sent = json.loads(create.calls[1].request.content)
    assert sent["regionId"] == 73 and sent["organizationInfo"] == {"ogrn": "1000000000000"}
    assert token.calls[0].request.headers["Authorization"].startswith("Basic ")


@respx.mock
async def test_a_second_401_after_a_fresh_token_is_permanent() -> None:
    respx.post(f"{BASE}{wire.TOKEN_PATH}").respond(200, json={"access_token": "t"})
    create = respx.post(f"{BASE}{wire.CREATE_PATH}").respond(403)
    async with client_for(BASE) as pos:
        with pytest.raises(Permanent, match="configuration"):
            await pos.register(eas_appeal())
    assert create.call_count == 2
