"""The intake API per contracts/gateway-api.md, over HTTP, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import re
import uuid
import zlib
from datetime import datetime
from typing import Any

import pytest

from config.settings import Settings
from tests.conftest import (
    ADMIN,
    DELIVERY,
    INFORMATIONAL_TOPIC,
    OPERATOR,
    RunningApi,
    StartApi,
    valid_call,
)
from tests.integration import raw_http

CALLS = "/api/v1/calls"
OFFSET = re.compile(r"[+-]\d\d:\d\d$")


@pytest.fixture
async def api(start_api: StartApi, database_url: str) -> RunningApi:
    return await start_api(database_url)


async def post(api: RunningApi, body: Any, headers: dict[str, str] | None = None,
               ) -> tuple[int, dict[str, Any]]:
    response = await api.client.post(CALLS, json=body, headers={**OPERATOR, **(headers or {})})
    return response.status, await response.json()


async def post_raw(api: RunningApi, data: bytes, headers: dict[str, str] | None = None,
                   ) -> tuple[int, dict[str, Any]]:
    response = await api.client.post(
        CALLS, data=data,
        headers={**OPERATOR, "Content-Type": "application/json", **(headers or {})})
    return response.status, await response.json()


async def get(api: RunningApi, path: str, headers: dict[str, str] | None = None,
              ) -> tuple[int, dict[str, Any]]:
    response = await api.client.get(path, headers=OPERATOR if headers is None else headers)
    return response.status, await response.json()


def assert_error(body: dict[str, Any], code: str) -> dict[str, str]:
    error = body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    fields: dict[str, str] = error["fields"]
    return fields


# --- accepting a call --------------------------------------------------------------------


async def test_a_valid_call_is_accepted_with_its_route(api: RunningApi) -> None:
    status, body = await post(api, valid_call())

    assert status == 201
    assert uuid.UUID(body["id"])
    assert body["status"] == "accepted"
    assert body["route"]["system"] == "pos"
    assert body["route"]["executor"]
    due_at = body["route"]["due_at"]
    assert OFFSET.search(due_at), due_at
    assert datetime.fromisoformat(due_at) > datetime.fromisoformat("2026-11-23T09:15:00+03:00")


async def test_accepting_a_call_stores_it_and_queues_it_once(api: RunningApi) -> None:
    status, _ = await post(api, valid_call())

    assert status == 201
    assert await api.appeal_count() == 1
    assert await api.outbox_count() == 1


async def test_an_accepted_call_can_be_read_back_with_its_history(api: RunningApi) -> None:
    _, created = await post(api, valid_call())

    status, body = await get(api, f"{CALLS}/{created['id']}")

    assert status == 200
    assert body["id"] == created["id"]
    assert body["journal_id"] == "KRS-2026-000123"
    assert body["status"] == "accepted"
    assert body["topic"] == "Отопление"
    assert body["route"] == created["route"]
    assert body["applicant"]["last_name"] == "Пряников"
    assert body["applicant"]["phone"] == "+79175551234"  # normalised to E.164
    assert [entry["status"] for entry in body["history"]] == ["accepted"]
    assert OFFSET.search(body["history"][0]["at"])
    assert OFFSET.search(body["received_at"])
    assert body["deliveries"] == []
    assert body["deadlines"]["due_at"] == created["route"]["due_at"]


async def test_delivery_role_may_read_a_call(api: RunningApi) -> None:
    _, created = await post(api, valid_call())

    status, body = await get(api, f"{CALLS}/{created['id']}", headers=DELIVERY)

    assert status == 200
    assert body["id"] == created["id"]


async def test_an_unknown_call_id_is_404(api: RunningApi) -> None:
    for appeal_id in (str(uuid.uuid4()), "not-an-id", "%00", "x" * 300):
        status, body = await get(api, f"{CALLS}/{appeal_id}")

        assert status == 404, appeal_id
        assert_error(body, "not_found")


# --- repeats -----------------------------------------------------------------------------


async def test_the_same_journal_entry_again_gives_the_same_answer_and_queues_nothing(
    api: RunningApi,
) -> None:
    first_status, first = await post(api, valid_call())
    again_status, again = await post(api, valid_call())

    assert (first_status, again_status) == (201, 200)
    assert again == first
    assert await api.appeal_count() == 1
    assert await api.outbox_count() == 1


async def test_a_repeat_with_keys_in_another_order_and_extra_spaces_is_the_same_call(
    api: RunningApi,
) -> None:
    _, first = await post(api, valid_call())
    reordered = dict(reversed(list(valid_call(summary=" " + valid_call()["summary"]).items())))

    status, again = await post(api, reordered)

    assert status == 200
    assert again["id"] == first["id"]


async def test_the_same_idempotency_key_again_gives_the_same_answer(api: RunningApi) -> None:
    key = {"Idempotency-Key": "op-7-call-1"}
    _, first = await post(api, valid_call(), key)

    status, again = await post(api, valid_call(), key)

    assert status == 200
    assert again == first
    assert await api.outbox_count() == 1


async def test_the_same_call_resent_under_a_new_idempotency_key_is_a_repeat(
    api: RunningApi,
) -> None:
    _, first = await post(api, valid_call(), {"Idempotency-Key": "first-try"})

    status, again = await post(api, valid_call(), {"Idempotency-Key": "second-try"})

    assert status == 200
    assert again == first
    assert await api.outbox_count() == 1


async def test_a_different_call_under_the_same_journal_id_is_a_conflict(api: RunningApi) -> None:
    _, first = await post(api, valid_call())

    status, body = await post(api, valid_call(summary="Другое: течёт крыша"))

    assert status == 409
    fields = assert_error(body, "conflict")
    assert "journal_id" in fields
    assert first["id"] in fields["journal_id"]
    assert await api.appeal_count() == 1
    assert await api.outbox_count() == 1


async def test_a_different_call_under_the_same_idempotency_key_is_a_conflict(
    api: RunningApi,
) -> None:
    key = {"Idempotency-Key": "op-7-call-1"}
    await post(api, valid_call(), key)

    status, body = await post(api, valid_call(journal_id="KRS-2026-000999"), key)

    assert status == 409
    assert "Idempotency-Key" in assert_error(body, "conflict")
    assert await api.appeal_count() == 1


async def test_the_same_journal_id_on_another_hotline_is_another_call(
    start_api: StartApi, database_url: str
) -> None:
    from config.settings import HotlineSettings

    api = await start_api(
        database_url, hotlines=[HotlineSettings(code="122"), HotlineSettings(code="112")])

    first_status, first = await post(api, valid_call(hotline="122"))
    other_status, other = await post(api, valid_call(hotline="112"))

    assert (first_status, other_status) == (201, 201)
    assert first["id"] != other["id"]
    assert await api.appeal_count() == 2


async def test_an_unconfigured_hotline_is_refused_by_field(api: RunningApi) -> None:
    status, body = await post(api, valid_call(hotline="999"))

    assert status == 422
    assert "hotline" in assert_error(body, "validation")


async def test_twenty_identical_calls_at_once_make_one_appeal(api: RunningApi) -> None:
    results = await asyncio.gather(*(post(api, valid_call()) for _ in range(20)))

    statuses = sorted(status for status, _ in results)
    assert statuses.count(201) == 1
    assert set(statuses) <= {200, 201}
    assert len({body["id"] for _, body in results}) == 1
    assert await api.appeal_count() == 1
    assert await api.outbox_count() == 1


async def test_calls_taken_at_once_are_each_stored_even_beside_a_repeat_and_a_conflict(
    api: RunningApi,
) -> None:
    """Calls arriving together share a transaction; one refused row must not sink the rest."""
    _, first = await post(api, valid_call(journal_id="KRS-2026-100000"))
    bodies = [valid_call(journal_id=f"KRS-2026-1{n:05d}") for n in range(1, 16)]
    bodies.append(valid_call(journal_id="KRS-2026-100000"))  # a repeat
    bodies.append(valid_call(journal_id="KRS-2026-100000", summary="Другое"))  # a conflict

    results = await asyncio.gather(*(post(api, body) for body in bodies))

    statuses = [status for status, _ in results]
    assert statuses[:15] == [201] * 15
    assert results[15] == (200, first)
    assert statuses[16] == 409
    assert len({body["id"] for _, body in results[:15]}) == 15
    assert await api.appeal_count() == 16
    assert await api.outbox_count() == 16
    for _, body in results[:15]:
        status, stored = await get(api, f"{CALLS}/{body['id']}")
        assert status == 200
        assert [h["status"] for h in stored["history"]] == ["accepted"]


# --- refusals ----------------------------------------------------------------------------


async def test_an_anonymous_call_is_refused(api: RunningApi) -> None:
    anonymous = valid_call()
    anonymous["applicant"] = {"last_name": "", "first_name": "", "phone": "+79175551234"}

    status, body = await post(api, anonymous)

    assert status == 422
    fields = assert_error(body, "anonymous")
    assert {"applicant.last_name", "applicant.first_name"} <= set(fields)
    assert await api.appeal_count() == 0
    assert await api.outbox_count() == 0


async def test_a_call_without_a_contact_for_the_answer_is_refused_as_anonymous(
    api: RunningApi,
) -> None:
    call = valid_call(answer_channel="email")
    del call["applicant"]["email"]

    status, body = await post(api, call)

    assert status == 422
    assert "applicant.email" in assert_error(body, "anonymous")


async def test_a_call_without_an_applicant_at_all_is_refused(api: RunningApi) -> None:
    call = valid_call()
    del call["applicant"]

    status, body = await post(api, call)

    assert status == 422
    assert "applicant" in assert_error(body, "validation")


async def test_an_invalid_phone_is_refused_by_field(api: RunningApi) -> None:
    call = valid_call()
    call["applicant"]["phone"] = "12-34"

    status, body = await post(api, call)

    assert status == 422
    assert "applicant.phone" in assert_error(body, "validation")


async def test_a_call_from_the_future_is_refused(api: RunningApi) -> None:
    status, body = await post(api, valid_call(received_at="2026-11-24T09:15:00+03:00"))

    assert status == 422
    assert "received_at" in assert_error(body, "validation")


async def test_a_call_from_more_than_a_year_ago_is_refused_as_a_typing_error(
    api: RunningApi,
) -> None:
    for received_at in ("2025-11-01T09:15:00+03:00", "0001-01-01T00:00:00+14:00"):
        status, body = await post(api, valid_call(received_at=received_at))

        assert status == 422
        assert "received_at" in assert_error(body, "validation")


async def test_a_call_registered_late_is_still_accepted(api: RunningApi) -> None:
    status, _ = await post(api, valid_call(received_at="2026-11-20T09:15:00+03:00"))

    assert status == 201


async def test_a_nul_character_is_refused_by_field(api: RunningApi) -> None:
    for field in ("summary", "journal_id", "operator", "problem_address"):
        body = valid_call()
        body[field] = f"{body[field]}\x00"

        status, answer = await post(api, body)

        assert status == 422, field
        assert field in assert_error(answer, "validation"), field


async def test_a_nul_character_in_the_applicant_is_refused(api: RunningApi) -> None:
    body = valid_call()
    body["applicant"]["last_name"] = "Пря\x00ников"

    status, answer = await post(api, body)

    assert status == 422
    assert "applicant.last_name" in assert_error(answer, "validation")


async def test_a_time_without_offset_is_refused(api: RunningApi) -> None:
    status, body = await post(api, valid_call(received_at="2026-11-23T09:15:00"))

    assert status == 422
    assert "received_at" in assert_error(body, "validation")


async def test_an_unknown_topic_is_refused_by_field(api: RunningApi) -> None:
    status, body = await post(api, valid_call(topic="Полёты на Луну"))

    assert status == 422
    fields = body["error"]["fields"]
    assert "topic" in fields
    assert await api.appeal_count() == 0


async def test_invalid_fields_are_refused_by_name(api: RunningApi) -> None:
    invalid = [("urgency", "very"), ("answer_channel", "pigeon"), ("repeat", "maybe"),
               ("journal_id", ""), ("summary", ""), ("received_at", "вчера"), ("hotline", 122),
               ("topic", None), ("operator", ["Иванова"])]
    for field, value in invalid:
        status, body = await post(api, valid_call(**{field: value}))

        assert status == 422, field
        assert field in assert_error(body, "validation"), field
    assert await api.appeal_count() == 0


async def test_an_invalid_email_is_refused_by_field(api: RunningApi) -> None:
    call = valid_call()
    call["applicant"]["email"] = "not-an-address"

    status, body = await post(api, call)

    assert status == 422
    assert "applicant.email" in assert_error(body, "validation")


async def test_malformed_json_is_refused(api: RunningApi) -> None:
    status, body = await post_raw(api, b'{"journal_id": "KRS-1", ')

    assert status == 422
    assert body["error"]["code"]
    assert body["error"]["message"]


async def test_a_body_that_is_not_utf8_is_refused(api: RunningApi) -> None:
    raw = json.dumps(valid_call(), ensure_ascii=False).encode("cp1251")
    status, body = await post_raw(api, raw)

    assert status == 422
    assert_error(body, "malformed_json")


async def test_an_empty_body_is_refused(api: RunningApi) -> None:
    status, _ = await post_raw(api, b"")

    assert status == 422


async def test_a_json_body_that_is_not_an_object_is_refused(api: RunningApi) -> None:
    for raw in (b"[]", json.dumps([valid_call()]).encode(), b'"call"', b"42", b"null"):
        status, body = await post_raw(api, raw)

        assert status == 422, raw
        assert "body" in assert_error(body, "validation")


async def test_an_unknown_field_is_refused_by_name(api: RunningApi) -> None:
    status, body = await post(api, valid_call(priority="high"))

    assert status == 422
    assert "priority" in assert_error(body, "validation")


async def test_an_unknown_applicant_field_is_refused_by_name(api: RunningApi) -> None:
    call = valid_call()
    call["applicant"]["passport"] = "7300 123456"

    status, body = await post(api, call)

    assert status == 422
    assert "applicant.passport" in assert_error(body, "validation")


async def test_validation_errors_do_not_echo_the_input(api: RunningApi) -> None:
    call = valid_call(urgency="Пряников-срочно")
    call["applicant"]["email"] = "пряников@@example"

    status, body = await post(api, call)

    assert status == 422
    assert "Пряников" not in json.dumps(body, ensure_ascii=False)
    assert "пряников" not in json.dumps(body, ensure_ascii=False)


async def test_a_body_over_64_kib_is_refused(api: RunningApi) -> None:
    status, body = await post(api, valid_call(summary="х" * (65 * 1024)))

    assert status == 413
    assert_error(body, "too_large")
    assert await api.appeal_count() == 0


async def test_an_oversize_body_sent_in_chunks_is_refused(api: RunningApi) -> None:
    payload = json.dumps(valid_call(summary="x" * (70 * 1024))).encode()

    async def chunks() -> Any:
        for start in range(0, len(payload), 8192):
            yield payload[start:start + 8192]

    response = await api.client.post(
        CALLS, data=chunks(), headers={**OPERATOR, "Content-Type": "application/json"})

    assert response.status == 413


async def test_a_bad_idempotency_key_is_refused(api: RunningApi) -> None:
    for key in ("", "   ", "k" * 201):
        status, body = await post(api, valid_call(), {"Idempotency-Key": key})

        assert status == 422, key
        assert "Idempotency-Key" in assert_error(body, "validation")


# --- informational calls [002: 2.8.2] ------------------------------------------------------


async def test_an_informational_call_is_journaled_and_not_forwarded(api: RunningApi) -> None:
    call = valid_call(informational=True, answer_channel=None, topic=INFORMATIONAL_TOPIC)
    call["applicant"] = {"last_name": "Пряников", "first_name": "Всеволод"}

    status, body = await post(api, call)

    assert status == 201
    assert body["route"]["system"] == "none"
    assert await api.outbox_count() == 0
    _, stored = await get(api, f"{CALLS}/{body['id']}")
    assert stored["status"] == "journaled"
    assert [entry["status"] for entry in stored["history"]] == ["journaled"]


async def test_a_call_marked_informational_on_any_topic_is_only_journaled(
    api: RunningApi,
) -> None:
    status, body = await post(api, valid_call(informational=True))

    assert status == 201
    assert body["route"]["system"] == "none"
    assert await api.outbox_count() == 0


async def test_every_call_taken_is_journaled_an_informational_one_without_a_name_too(
    api: RunningApi,
) -> None:
    """[001: 15] «все звонки, принятые сотрудниками, фиксируются»; only registration needs
    a name [002: 2.8.4]."""
    call = valid_call(informational=True, answer_channel=None)
    call["applicant"] = {"last_name": "", "first_name": ""}

    status, body = await post(api, call)

    assert status == 201
    assert body["route"]["system"] == "none"


async def test_an_applicant_of_blank_strings_only_is_anonymous_not_invalid(
    api: RunningApi,
) -> None:
    """The contract: «A blank string is absent» — every field "" is 422 code anonymous."""
    call = valid_call()
    call["applicant"] = {name: "" for name in ("last_name", "first_name", "middle_name",
                                                "phone", "email", "postal_address")}

    status, body = await post(api, call)

    assert status == 422
    fields = assert_error(body, "anonymous")
    assert {"applicant.last_name", "applicant.first_name", "applicant.phone"} <= set(fields)


# --- auth --------------------------------------------------------------------------------


async def test_a_call_without_a_token_is_401(api: RunningApi) -> None:
    response = await api.client.post(CALLS, json=valid_call())

    assert response.status == 401
    assert_error(await response.json(), "unauthorized")
    assert await api.appeal_count() == 0


async def test_a_call_with_a_bad_token_is_401(api: RunningApi) -> None:
    for authorization in ("Bearer wrong", "Bearer ", "Basic b3A6b3A=", "op", "Bearer op op"):
        response = await api.client.post(
            CALLS, json=valid_call(), headers={"Authorization": authorization})

        assert response.status == 401, authorization
    assert await api.appeal_count() == 0


async def test_the_delivery_role_may_not_post_a_call(api: RunningApi) -> None:
    response = await api.client.post(CALLS, json=valid_call(), headers=DELIVERY)

    assert response.status == 403
    assert_error(await response.json(), "forbidden")
    assert await api.appeal_count() == 0


async def test_admin_may_post_a_call(api: RunningApi) -> None:
    response = await api.client.post(CALLS, json=valid_call(), headers=ADMIN)

    assert response.status == 201


async def test_reading_calls_needs_a_token(api: RunningApi) -> None:
    _, created = await post(api, valid_call())

    for path in (f"{CALLS}/{created['id']}", CALLS):
        response = await api.client.get(path)
        assert response.status == 401


async def test_auth_comes_before_the_body_is_judged(api: RunningApi) -> None:
    response = await api.client.post(CALLS, data=b"not json")

    assert response.status == 401


# --- the list ----------------------------------------------------------------------------


async def test_the_list_pages_through_every_call_once(api: RunningApi) -> None:
    created = set()
    for n in range(5):
        _, body = await post(api, valid_call(journal_id=f"KRS-2026-{n:06d}"))
        created.add(body["id"])

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = f"{CALLS}?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, page = await get(api, query)
        assert status == 200
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert sorted(seen) == sorted(created)


async def test_the_list_filters_by_status(api: RunningApi) -> None:
    _, forwarded = await post(api, valid_call())
    _, journaled = await post(api, valid_call(journal_id="KRS-2026-000777", informational=True))

    _, accepted_page = await get(api, f"{CALLS}?status=accepted")
    _, journaled_page = await get(api, f"{CALLS}?status=journaled")
    _, delivered_page = await get(api, f"{CALLS}?status=delivered")

    assert [item["id"] for item in accepted_page["items"]] == [forwarded["id"]]
    assert [item["id"] for item in journaled_page["items"]] == [journaled["id"]]
    assert delivered_page == {"items": [], "next_cursor": None}


async def test_the_list_filters_by_updated_since(api: RunningApi) -> None:
    await post(api, valid_call())

    _, before = await get(api, f"{CALLS}?updated_since=2026-11-23T00:00:00%2B00:00")
    _, after = await get(api, f"{CALLS}?updated_since=2026-11-24T00:00:00%2B00:00")

    assert len(before["items"]) == 1
    assert after["items"] == []


def cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


async def test_a_bad_cursor_is_refused(api: RunningApi) -> None:
    await post(api, valid_call())
    bad = [
        "garbage", "bm90LWpzb24", "WzFd", "W10", "%%%",
        cursor_of(["2026-11-23T07:00:00+00:00", "\x00"]),
        cursor_of(["2026-11-23T07:00:00", str(uuid.UUID(int=1))]),
        cursor_of(["0001-01-01T00:00:00+14:00", str(uuid.UUID(int=1))]),
        cursor_of([1, 2]),
        cursor_of({"at": "2026-11-23T07:00:00+00:00"}),
    ]
    for cursor in bad:
        status, body = await get(api, f"{CALLS}?cursor={cursor}")

        assert status == 422, cursor
        assert "cursor" in assert_error(body, "validation")


async def test_bad_list_parameters_are_refused_by_name(api: RunningApi) -> None:
    bad = ["limit=0", "limit=100000", "limit=ten", "sort=id", "updated_since=yesterday",
           "status=lost", "status=%00", "updated_since=2026-11-23T00:00:00",
           "updated_since=0001-01-01T00:00:00%2B14:00"]
    for query in bad:
        status, body = await get(api, f"{CALLS}?{query}")

        assert status == 422, query
        assert query.split("=")[0] in assert_error(body, "validation"), query


# --- health and status -------------------------------------------------------------------


async def test_healthz_is_open(api: RunningApi) -> None:
    response = await api.client.get("/healthz")

    assert response.status == 200


async def test_readyz_answers_when_the_database_is_reachable(api: RunningApi) -> None:
    response = await api.client.get("/readyz")

    assert response.status == 200


async def test_status_needs_the_admin_role(api: RunningApi) -> None:
    assert (await api.client.get("/status")).status == 401
    assert (await api.client.get("/status", headers=OPERATOR)).status == 403
    assert (await api.client.get("/status", headers=DELIVERY)).status == 403


async def test_status_reports_counts_and_no_personal_data(api: RunningApi) -> None:
    call = valid_call()
    await post(api, call)
    await post(api, valid_call(journal_id="KRS-2026-000777", informational=True))

    status, report = await get(api, "/status", headers=ADMIN)

    assert status == 200
    assert report["outbox"]["pending"] == 1
    assert report["outbox"]["by_target"]["pos"]["pending"] == 1
    assert {"leased", "done", "dead", "oldest_pending_age_s"} <= set(report["outbox"])
    assert report["appeals"]["by_status"] == {"accepted": 1, "journaled": 1}
    assert report["appeals"]["overdue"] == 0
    for poller in report["pollers"].values():
        assert {"last_success_at", "last_error", "lag_s"} <= set(poller)
    assert report["version"]
    text = json.dumps(report, ensure_ascii=False)
    personal = [*call["applicant"].values(), call["problem_address"], call["summary"],
                "+79175551234", "Пряников", "Всеволод", "Кролюницкого", "Гончарова",
                call["journal_id"], call["operator"]]
    for value in personal:
        assert value not in text, value


# --- repeats spelt differently (issue 12) --------------------------------------------------


def _spelt_differently(change: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same call twice: first as valid_call() has it, then spelt another way."""
    first, again = valid_call(), valid_call()
    if change == "phone":
        again["applicant"]["phone"] = "+7 (917) 555-12-34"
    elif change == "default answer channel":
        del first["answer_channel"]  # not said: by phone
    elif change == "UTC offset":
        again["received_at"] = "2026-11-23T06:15:00Z"
    elif change == "topic case":
        again["topic"] = "  ОТОПЛЕНИЕ "
    elif change == "email case":
        again["applicant"]["email"] = "Vsevolod.Pryanikov@EXAMPLE.ru"
    return first, again


@pytest.mark.parametrize(
    "change", ["phone", "default answer channel", "UTC offset", "topic case", "email case"])
async def test_a_repeat_spelt_differently_is_the_same_call(api: RunningApi, change: str) -> None:
    first_call, again_call = _spelt_differently(change)
    first_status, first = await post(api, first_call)

    status, again = await post(api, again_call)

    assert (first_status, status) == (201, 200)
    assert again == first
    assert await api.appeal_count() == 1
    assert await api.outbox_count() == 1


async def test_a_repeat_under_the_same_key_spelt_differently_is_the_same_call(
    api: RunningApi,
) -> None:
    key = {"Idempotency-Key": "op-7-call-1"}
    _, first = await post(api, valid_call(), key)
    again_call = valid_call(received_at="2026-11-23T07:15:00+01:00", topic="отопление")
    again_call["applicant"]["phone"] = "+79175551234"

    status, again = await post(api, again_call, key)

    assert status == 200
    assert again == first


# --- what reaches the edge: headers, bodies, encodings (issue 12) ---------------------------


def _server(api: RunningApi) -> tuple[str, int]:
    server = api.client.server
    assert server.port is not None
    return str(server.host), server.port


async def test_an_idempotency_key_that_is_not_utf8_is_refused_by_name(api: RunningApi) -> None:
    data = raw_http.request_bytes(
        "POST", CALLS,
        {"Authorization": b"Bearer op", "Content-Type": b"application/json",
         "Idempotency-Key": b"op-7-\xff\xfe-call"},
        json.dumps(valid_call()).encode())

    status, body = await raw_http.exchange(*_server(api), data)

    assert status == 422
    assert "Idempotency-Key" in assert_error(raw_http.json_body(body), "validation")
    assert await api.appeal_count() == 0


async def test_calls_sent_beside_a_bad_key_are_each_stored(api: RunningApi) -> None:
    bad = raw_http.request_bytes(
        "POST", CALLS,
        {"Authorization": b"Bearer op", "Content-Type": b"application/json",
         "Idempotency-Key": b"\xc3\x28"},
        json.dumps(valid_call(journal_id="KRS-2026-200000")).encode())

    results = await asyncio.gather(
        raw_http.exchange(*_server(api), bad),
        *(post(api, valid_call(journal_id=f"KRS-2026-2{n:05d}")) for n in range(1, 9)))

    assert results[0][0] == 422
    assert [status for status, _ in results[1:]] == [201] * 8
    assert await api.appeal_count() == 8


async def test_one_call_the_database_refuses_does_not_sink_the_calls_taken_with_it(
    api: RunningApi,
) -> None:
    """Calls taken at once share a transaction; a call no door should have let through
    (here a lone surrogate, which no database encodes) fails alone."""
    from gateway.api.wire import CallIn

    calls = [CallIn.model_validate(valid_call(journal_id=f"KRS-2026-3{n:05d}")).to_command()
             for n in range(8)]
    poisoned = dataclasses.replace(calls[3], summary="нет отопления \udc80")
    calls[3] = poisoned

    results = await asyncio.gather(
        *(api.gateway.intake.accept(call, None, actor="operator") for call in calls),
        return_exceptions=True)

    assert isinstance(results[3], Exception)
    accepted = [r for n, r in enumerate(results) if n != 3]
    assert all(not isinstance(r, BaseException) and r.created for r in accepted), accepted
    assert await api.appeal_count() == 7
    assert await api.outbox_count() == 7


async def test_json_nested_too_deeply_is_refused_as_malformed(api: RunningApi) -> None:
    for raw in (b"[" * 1500 + b"]" * 1500,
                b'{"summary": ' + b"[" * 1500 + b"]" * 1500 + b"}",
                b'{"a":' * 1500 + b"1" + b"}" * 1500):
        status, body = await post_raw(api, raw)

        assert status == 422
        assert_error(body, "malformed_json")


async def test_a_cursor_of_nested_arrays_is_refused(api: RunningApi) -> None:
    for depth in (1500, 100):
        cursor = base64.urlsafe_b64encode(
            b"[" * depth + b"]" * depth).decode().rstrip("=")

        status, body = await get(api, f"{CALLS}?cursor={cursor}")

        assert status == 422, depth
        assert "cursor" in assert_error(body, "validation")


async def test_a_body_that_is_not_the_deflate_it_claims_is_refused(api: RunningApi) -> None:
    for encoding in ("deflate", "gzip"):
        status, body = await post_raw(api, b"not compressed at all",
                                      {"Content-Encoding": encoding})

        assert status == 422, encoding
        assert "body" in assert_error(body, "malformed_json")
    assert await api.appeal_count() == 0


async def test_a_deflated_call_is_accepted(api: RunningApi) -> None:
    raw = zlib.compress(json.dumps(valid_call()).encode())

    status, _ = await post_raw(api, raw, {"Content-Encoding": "deflate"})

    assert status == 201


async def test_outbox_ids_beyond_the_database_range_are_not_found(api: RunningApi) -> None:
    for message_id in (2**63, 2**64 + 1, 10**30):
        response = await api.client.post(f"/api/v1/outbox/{message_id}/retry", headers=ADMIN)

        assert response.status == 404, message_id
        assert_error(await response.json(), "not_found")
    status, body = await get(api, f"/api/v1/outbox?after_id={2**63}", headers=ADMIN)
    assert status == 422
    assert "after_id" in assert_error(body, "validation")


async def test_a_request_id_that_is_not_printable_ascii_is_replaced(api: RunningApi) -> None:
    for given in (b"req-\xff", "req-й".encode()):
        data = raw_http.request_bytes("GET", "/healthz", {"X-Request-Id": given}, b"")

        status, head = await raw_http.exchange_head(*_server(api), data)

        assert status == 200
        assert re.search(rb"\r\nX-Request-Id: [0-9a-f]{32}\r\n", head), head
    response = await api.client.get("/healthz", headers={"X-Request-Id": "req-7"})
    assert response.headers["X-Request-Id"] == "req-7"


@pytest.mark.parametrize("cancel_handlers", [True, False])
async def test_a_client_that_hangs_up_mid_body_is_no_server_error(
    database_url: str, restore_logging: None, cancel_handlers: bool,
) -> None:
    """Servers may cancel the handler (aiohttp's test server does) or let its read fail."""
    from aiohttp import web

    from gateway.bootstrap import bootstrap
    from gateway.clock import ManualClock
    from gateway.logs import configure_logging
    from tests.conftest import API_TOKENS, FIXED_NOW

    captured = io.StringIO()
    configure_logging("debug", stream=captured)
    gateway = bootstrap(Settings(database_url=database_url, api_tokens=API_TOKENS),
                        clock=ManualClock(FIXED_NOW))
    runner = web.AppRunner(gateway.app, access_log=None, handle_signals=False,
                           handler_cancellation=cancel_handlers)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        body = json.dumps(valid_call()).encode()
        data = raw_http.request_bytes(
            "POST", CALLS, {"Authorization": b"Bearer op", "Content-Type": b"application/json"},
            body[:40], content_length=len(body))

        await raw_http.hang_up_mid_body("127.0.0.1", port, data)
        lines = await _log_lines_until(captured, "http.request")
    finally:
        await runner.cleanup()
        await gateway.close()

    request = next(line for line in lines if line["event"] == "http.request")
    assert request["status"] == 499
    assert any(line["event"] == "http.client_disconnected" for line in lines)
    assert [line for line in lines if line["level"] in ("error", "critical")] == []


async def _log_lines_until(captured: io.StringIO, event: str) -> list[dict[str, Any]]:
    """The log so far, once a line with `event` is in it (the server logs it after the
    client is gone, on its own schedule)."""
    for _ in range(500):
        lines = [json.loads(line) for line in captured.getvalue().splitlines()]
        if any(line["event"] == event for line in lines):
            return lines
        await asyncio.sleep(0.01)
    raise AssertionError(f"{event} was never logged")


# --- invisible and blank text (issue 12) ----------------------------------------------------


@pytest.mark.parametrize("name", ["\u200b", "\ufeff", "\u200d\u200c", " \u2060 ", "   "])
async def test_a_name_of_invisible_characters_is_anonymous(api: RunningApi, name: str) -> None:
    call = valid_call()
    call["applicant"]["last_name"] = name

    status, body = await post(api, call)

    assert status == 422
    assert "applicant.last_name" in assert_error(body, "anonymous")
    assert await api.appeal_count() == 0


async def test_a_blank_contact_is_absent(api: RunningApi) -> None:
    call = valid_call(answer_channel="email")
    call["applicant"]["email"] = "  "

    status, body = await post(api, call)

    assert status == 422
    assert "applicant.email" in assert_error(body, "anonymous")


async def test_invisible_characters_are_not_stored(api: RunningApi) -> None:
    call = valid_call()
    call["applicant"]["last_name"] = "\u200bПряников\ufeff"

    _, created = await post(api, call)
    status, stored = await get(api, f"{CALLS}/{created['id']}")

    assert status == 200
    assert stored["applicant"]["last_name"] == "Пряников"
