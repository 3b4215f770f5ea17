"""Issue 13 over HTTP, on SQLite and PostgreSQL: the contract's callbacks, journal fields,
interim answers, supervisor actions and overdue kinds (contracts/gateway-api.md v1.1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.clock import ManualClock
from gateway.domain.appeal import AppealStatus
from gateway.domain.ports import Answer, ExternalUpdate
from tests.conftest import (
    ADMIN,
    DELIVERY,
    FIXED_NOW,
    OPERATOR,
    SUPERVISOR,
    RunningApi,
    StartApi,
    valid_call,
)

MOSCOW = ZoneInfo("Europe/Moscow")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(FIXED_NOW)


@pytest.fixture
async def api(start_api: StartApi, database_url: str, clock: ManualClock) -> RunningApi:
    return await start_api(database_url, clock=clock)


async def call(api: RunningApi, method: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    response = await api.client.request(method, path, json=body,
                                         headers=OPERATOR if headers is None else headers)
    return response.status, await response.json()


async def answered_call(api: RunningApi, journal_id: str = "KRS-2026-000123") -> str:
    """A call whose answer came back from ПОС: ready to give by phone."""
    status, body = await call(api, "POST", "/api/v1/calls", valid_call(journal_id=journal_id))
    assert status == 201
    appeal_id: str = body["id"]
    now = api.gateway.clock.now()
    async with api.gateway.storage.write() as uow:
        appeal = await uow.appeals.get(appeal_id)
        assert appeal is not None
        appeal.apply_remote(ExternalUpdate(
            "pos", f"9{journal_id[-3:]}", appeal_id, "Ответ готов", AppealStatus.ANSWER_READY,
            now,
            answer=Answer("Отопление включено")), now, extends_deadline=False, zone=MOSCOW)
    return appeal_id


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_a_missed_call_is_a_callback_task_due_at_noon_next_working_day(
        api: RunningApi) -> None:
    """[001: 14] «По каждому пропущенному … вызову … необходимо перезвонить в соответствии
    с п. 13»; the same hotline + phone + at again is 200."""
    missed = {"hotline": "122", "phone": "+79175551234", "at": "2026-11-23T09:40:00+03:00",
              "voicemail": "Перезвоните по поводу отопления"}

    status, body = await call(api, "POST", "/api/v1/missed-calls", missed)
    assert status == 201
    assert at(body["due_at"]) == datetime(2026, 11, 24, 12, 0, tzinfo=MOSCOW)

    again_status, again = await call(api, "POST", "/api/v1/missed-calls", missed)
    assert (again_status, again["id"]) == (200, body["id"])

    status, worklist = await call(api, "GET", "/api/v1/callbacks?state=open")
    assert status == 200
    [item] = worklist["items"]
    assert (item["kind"], item["id"], item["attempts"]) == ("missed_call", body["id"], 0)
    assert item["voicemail"] == "Перезвоните по поводу отопления"


async def test_missed_calls_in_bulk(api: RunningApi) -> None:
    items = [{"hotline": "122", "phone": "+7917555123" + str(n),
              "at": f"2026-11-23T09:4{n}:00+03:00"} for n in range(3)]

    status, body = await call(api, "POST", "/api/v1/missed-calls", {"items": items})

    assert status == 201
    assert len({item["id"] for item in body["items"]}) == 3
    bad_status, bad = await call(api, "POST", "/api/v1/missed-calls",
                                 {"items": [{**items[0], "phone": "12"}]})
    assert bad_status == 422 and "items.0.phone" in bad["error"]["fields"]


async def test_a_try_too_soon_is_409_with_when_and_a_fourth_is_exhausted(
        api: RunningApi, clock: ManualClock) -> None:
    """[001: 13] «еще 2 раза с интервалом 30-60 минут»."""
    _, task = await call(api, "POST", "/api/v1/missed-calls",
                         {"hotline": "122", "phone": "+79175551234",
                          "at": "2026-11-23T09:40:00+03:00"})
    path = f"/api/v1/callbacks/{task['id']}/attempts"
    status, first = await call(api, "POST", path, {"outcome": "no_answer"})
    assert status == 201 and first["attempts"] == 1

    clock.advance(timedelta(minutes=10))
    status, body = await call(api, "POST", path, {"outcome": "busy"})
    assert status == 409 and body["error"]["code"] == "too_soon"
    assert at(body["error"]["fields"]["next_allowed_at"]) == FIXED_NOW + timedelta(minutes=30)

    for _ in range(2):
        clock.advance(timedelta(minutes=40))
        status, _ = await call(api, "POST", path, {"outcome": "no_answer"}, DELIVERY)
        assert status == 201
    clock.advance(timedelta(minutes=40))
    status, body = await call(api, "POST", path, {"outcome": "no_answer"})
    assert status == 409 and body["error"]["code"] == "attempts_exhausted"


async def test_an_answer_by_phone_shows_its_callback_term_before_the_first_try(
        api: RunningApi, clock: ManualClock) -> None:
    """[001: 13] «не позднее 12:00 часов следующего рабочего дня», in the worklist before
    anyone tries; an attempt `at` is checked against the clock only."""
    appeal_id = await answered_call(api)

    _, worklist = await call(api, "GET", "/api/v1/deliveries?state=ready")
    [ready] = worklist["items"]
    assert at(ready["callback_due_at"]) == datetime(2026, 11, 24, 12, 0, tzinfo=MOSCOW)
    _, callbacks = await call(api, "GET", "/api/v1/callbacks")
    assert [(i["kind"], i["id"]) for i in callbacks["items"]] == [("answer", appeal_id)]

    status, body = await call(api, "POST", f"/api/v1/calls/{appeal_id}/attempts",
                              {"outcome": "no_answer",
                               "at": (clock.now() - timedelta(days=8)).isoformat()})
    assert status == 422 and "at" in body["error"]["fields"]
    # Before the call was received is fine: the clock is the only check.
    status, _ = await call(api, "POST", f"/api/v1/calls/{appeal_id}/attempts",
                           {"outcome": "no_answer",
                            "at": (clock.now() - timedelta(days=2)).isoformat()})
    assert status == 201
    status, body = await call(api, "POST", f"/api/v1/calls/{appeal_id}/attempts",
                              {"outcome": "busy",
                               "at": (clock.now() - timedelta(days=2, minutes=-10)).isoformat()})
    assert status == 409 and body["error"]["code"] == "too_soon"


async def test_journal_fields_at_intake_and_by_patch(api: RunningApi) -> None:
    """[001: appendix 2] «Итог консультации», «Результат рассмотрения» and the «Комментарий»
    it requires, «с указанием даты и времени» for a callback."""
    status, body = await call(api, "POST", "/api/v1/calls", valid_call(
        consultation_outcome="forwarded", review_result="unsatisfied"))
    assert status == 422 and "comment" in body["error"]["fields"]

    status, body = await call(api, "POST", "/api/v1/calls", valid_call(
        consultation_outcome="forwarded"))
    assert status == 201
    path = f"/api/v1/calls/{body['id']}"

    status, body = await call(api, "PATCH", path, {"review_result": "callback_needed",
                                                   "comment": "перезвонить завтра"})
    assert status == 422 and "comment" in body["error"]["fields"]
    status, body = await call(api, "PATCH", path, {"review_result": "callback_needed",
                                                   "comment": "перезвонить 24.11.2026 10:00"})
    assert status == 200
    assert body["journal"] == {"consultation_outcome": "forwarded",
                               "review_result": "callback_needed",
                               "comment": "перезвонить 24.11.2026 10:00"}
    status, body = await call(api, "PATCH", path, {"review_result": "bogus"})
    assert status == 422


async def test_an_interim_answer_is_recorded_and_shown(api: RunningApi) -> None:
    """[002: 2.8.10] the reason and the expected date, given to the applicant."""
    _, accepted = await call(api, "POST", "/api/v1/calls", valid_call())
    status, body = await call(api, "POST", f"/api/v1/calls/{accepted['id']}/interim", {
        "reason": "Нужна проверка подрядчика", "expected_at": "2026-12-01T18:00:00+03:00",
        "channel": "phone", "by": "Иванова А.А."})

    assert status == 201
    assert body["interims"][0]["reason"] == "Нужна проверка подрядчика"
    assert at(body["deadlines"]["interim_expected_at"]) == datetime(
        2026, 12, 1, 18, 0, tzinfo=MOSCOW)
    assert body["deadlines"]["interim_due"] is False


async def test_resolve_is_for_supervisors_and_closes_a_flagged_appeal(
        api: RunningApi, clock: ManualClock) -> None:
    """[001: 13] after three failed callbacks the supervisor decides."""
    appeal_id = await answered_call(api)
    for _ in range(3):
        clock.advance(timedelta(minutes=40))
        status, _ = await call(api, "POST", f"/api/v1/calls/{appeal_id}/attempts",
                               {"outcome": "no_answer"})
        assert status == 201
    _, board = await call(api, "GET", "/api/v1/calls?flag=needs_supervisor", SUPERVISOR)
    assert [item["id"] for item in board["items"]] == [appeal_id]

    resolution = {"action": "close_unreachable", "reason": "телефон недоступен"}
    status, _ = await call(api, "POST", f"/api/v1/calls/{appeal_id}/resolve", resolution)
    assert status == 403
    status, body = await call(api, "POST", f"/api/v1/calls/{appeal_id}/resolve", resolution,
                              SUPERVISOR)
    assert status == 200 and body["status"] == "closed"
    status, _ = await call(api, "POST", f"/api/v1/calls/{appeal_id}/resolve",
                           {"action": "reschedule", "reason": "x",
                            "until": "2026-11-30T10:00:00+03:00"}, SUPERVISOR)
    assert status == 409


async def test_status_counts_each_kind_of_overdue_and_the_list_filters_by_kind(
        api: RunningApi, clock: ManualClock) -> None:
    """[001: 15] a registration later than an hour is flagged and counted; every kind on
    its own in /status."""
    late = valid_call(received_at="2026-11-23T07:30:00+03:00")
    _, body = await call(api, "POST", "/api/v1/calls", late)

    status, report = await call(api, "GET", "/status", headers=ADMIN)
    assert status == 200
    assert report["appeals"]["overdue_by_kind"] == {
        "answer": 0, "feedback": 0, "request": 0, "registration": 1, "callback": 0}
    _, page = await call(api, "GET", "/api/v1/calls?overdue=registration")
    assert [item["id"] for item in page["items"]] == [body["id"]]
    assert page["items"][0]["deadlines"]["overdue_kinds"] == ["registration"]
    _, page = await call(api, "GET", "/api/v1/calls?overdue=feedback")
    assert page["items"] == []

    clock.set(datetime(2026, 11, 26, 15, 1, tzinfo=UTC))  # after 18:00 Thursday in Moscow
    await api.gateway.sla.sweep()
    _, report = await call(api, "GET", "/status", headers=ADMIN)
    assert report["appeals"]["overdue_by_kind"]["feedback"] == 1


async def test_an_unproductive_call_is_journaled_without_a_name_or_contact(
        api: RunningApi) -> None:
    """[001: 15] every call taken is journaled; the topic «Нерезультативный звонок»
    [001: appendix 2] has nobody to register or answer."""
    unproductive = valid_call(topic="Нерезультативный звонок", summary="Тишина в трубке")
    unproductive["applicant"] = {"last_name": "", "first_name": "", "phone": "",
                                 "email": "", "postal_address": ""}

    status, body = await call(api, "POST", "/api/v1/calls", unproductive)

    assert status == 201, body
    assert body["route"]["system"] == "none"
