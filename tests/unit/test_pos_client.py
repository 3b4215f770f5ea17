"""The ПОС adapter against every response class of contracts/pos-api.md (respx)."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx

from adapters.pos.client import (
    AnswerNotReady,
    DeliveryConflict,
    PosClient,
    cursor_since,
    message_text,
)
from adapters.pos.mapping import load_mapping
from adapters.retry_after import parse_retry_after
from gateway.domain.appeal import (
    Appeal,
    Applicant,
    DeliveryChannel,
)
from gateway.domain.route import PosTarget, Route, TargetSystem
from outbox import Ambiguous, Permanent, Transient
from tests import builders

BASE = "https://pos.example.test"
TOKEN = "secret-token"
MESSAGES = "/api/v1/messages"
MSK = timezone(timedelta(hours=3))
SURNAME = "Иванова"
PHONE = "+79161234567"


APPLICANT = Applicant(
    last_name=SURNAME, first_name="Мария", middle_name="Петровна", phone=PHONE,
    email="m.ivanova@example.ru", postal_address="г. Энск, ул. Заявителей, 1",
)
ROUTE = Route(system=TargetSystem.POS, executor="Минтранс",
              pos=PosTarget(category_id=101, subcategory_id=10105, organization_id=5001))


def make_appeal() -> Appeal:
    """The appeal whose create body test_create_sends_the_contract_body spells out."""
    return builders.make_appeal(
        id="apl-0001", applicant=APPLICANT, problem_address="г. Энск, ул. Ямная, 13",
        summary="Яма на дороге у дома 13", received_at=datetime(2026, 11, 23, 9, 15, tzinfo=MSK),
        route=ROUTE,
    )


def message(ident: int = 123456, *, external_id: str = "apl-0001", stage: str = "moderation",
            updated_at: str = "2026-11-23T09:15:01+03:00", **extra: Any) -> dict[str, Any]:
    return {
        "id": ident, "number": f"ПОС-2026-{ident}", "external_id": external_id,
        "stage": stage, "status": "in_work", "organization_id": 5001,
        "updated_at": updated_at, "planned_completion": "2026-12-07",
        "answer": None, "delivery": None, **extra,
    }


CREATED = {"id": 123456, "number": "ПОС-2026-123456", "stage": "moderation",
           "status": "in_work", "updated_at": "2026-11-23T09:15:01+03:00"}


@pytest.fixture
def pos() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def client() -> AsyncIterator[PosClient]:
    adapter = PosClient(BASE, TOKEN, mapping=load_mapping())
    yield adapter
    await adapter.aclose()


def error(code: str, message: str = "") -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


# --- create --------------------------------------------------------------------------


async def test_create_sends_the_contract_body_with_idempotency_key(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    route = pos.post(MESSAGES).respond(201, json=CREATED)

    await client.register(make_appeal())

    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Idempotency-Key"] == "apl-0001"
    body = json.loads(request.content)
    assert body == {
        "source": "operator",
        "external_id": "apl-0001",
        "category_id": 101, "subcategory_id": 10105, "organization_id": 5001,
        "text": "Центр мониторинга 112. Яма на дороге у дома 13",
        "problem_address": "г. Энск, ул. Ямная, 13",
        "applicant": {
            "last_name": SURNAME, "first_name": "Мария", "middle_name": "Петровна",
            "phone": PHONE, "email": "m.ivanova@example.ru",
            "address": "г. Энск, ул. Заявителей, 1",
        },
        "received_at": "2026-11-23T09:15:00+03:00",
    }


async def test_absent_optional_fields_are_left_out_not_sent_as_null(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    route = pos.post(MESSAGES).respond(201, json=CREATED)
    appeal = make_appeal()
    bare = Applicant(last_name=SURNAME, first_name="Мария", phone=PHONE)
    await client.register(replace(appeal, applicant=bare, problem_address=None))

    body = json.loads(route.calls.last.request.content)
    assert "problem_address" not in body
    assert body["applicant"] == {"last_name": SURNAME, "first_name": "Мария", "phone": PHONE}


def test_text_starts_with_the_hotline_marker_once() -> None:
    assert message_text("Центр мониторинга 112", "Яма") == "Центр мониторинга 112. Яма"
    assert message_text("Центр мониторинга 112.", " Яма ") == "Центр мониторинга 112. Яма"
    assert message_text("Центр мониторинга 112", "Центр мониторинга 112. Яма") == (
        "Центр мониторинга 112. Яма"
    )
    assert message_text("", "Яма") == "Яма"


async def test_created_message_becomes_an_external_ref(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    pos.post(MESSAGES).respond(201, json=CREATED)

    ref = await client.register(make_appeal())

    assert (ref.system, ref.id, ref.number, ref.stage) == (
        "pos", "123456", "ПОС-2026-123456", "moderation"
    )
    assert ref.status == "in_work"  # the remote's own status, verbatim


async def test_idempotent_repeat_200_returns_the_same_message(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    pos.post(MESSAGES).mock(side_effect=[httpx.Response(201, json=CREATED),
                                         httpx.Response(200, json=message())])

    first = await client.register(make_appeal())
    again = await client.register(make_appeal())

    assert first.id == again.id == "123456"


@pytest.mark.parametrize(
    "code", ["category_not_allowed", "organization_not_connected", "validation"]
)
async def test_422_is_permanent_with_the_code_and_no_personal_data(
    pos: respx.MockRouter, client: PosClient, code: str,
) -> None:
    pos.post(MESSAGES).respond(422, json=error(code, f"{SURNAME} {PHONE}: bad"))

    with pytest.raises(Permanent) as caught:
        await client.register(make_appeal())

    assert not isinstance(caught.value, Transient)
    assert code in caught.value.reason
    assert SURNAME not in caught.value.reason and PHONE not in caught.value.reason


async def test_422_with_an_odd_code_does_not_echo_it(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    pos.post(MESSAGES).respond(422, json=error(f"{SURNAME} is wrong"))

    with pytest.raises(Permanent) as caught:
        await client.register(make_appeal())

    assert SURNAME not in caught.value.reason


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failures_are_permanent_configuration_errors(
    pos: respx.MockRouter, client: PosClient, status: int,
) -> None:
    pos.post(MESSAGES).respond(status, json=error("forbidden"))

    with pytest.raises(Permanent) as caught:
        await client.register(make_appeal())

    assert caught.value.reason.startswith("configuration:")


async def test_429_honours_retry_after_seconds(pos: respx.MockRouter, client: PosClient) -> None:
    pos.post(MESSAGES).respond(429, headers={"Retry-After": "7"})

    with pytest.raises(Transient) as caught:
        await client.register(make_appeal())

    assert not isinstance(caught.value, Ambiguous)
    assert caught.value.retry_after == 7.0


async def test_429_honours_retry_after_http_date(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    pos.post(MESSAGES).respond(429, headers={"Retry-After": when})

    with pytest.raises(Transient) as caught:
        await client.register(make_appeal())

    assert caught.value.retry_after is not None
    assert 100 < caught.value.retry_after <= 120


def test_retry_after_parsing() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert parse_retry_after("30", now) == 30.0
    assert parse_retry_after("Mon, 23 Nov 2026 12:00:45 GMT", now) == 45.0
    assert parse_retry_after("Mon, 23 Nov 2026 11:00:00 GMT", now) == 0.0  # already past
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


@pytest.mark.parametrize("status", [408, 500, 503])
async def test_408_and_5xx_are_transient(
    pos: respx.MockRouter, client: PosClient, status: int,
) -> None:
    pos.post(MESSAGES).respond(status, text=f"{SURNAME} stack trace")

    with pytest.raises(Transient) as caught:
        await client.register(make_appeal())

    assert not isinstance(caught.value, Ambiguous)
    assert str(status) in caught.value.reason and SURNAME not in caught.value.reason


@pytest.mark.parametrize("status", [502, 504])
async def test_gateway_failure_on_a_write_is_ambiguous_and_looked_up_before_retrying(
    pos: respx.MockRouter, client: PosClient, status: int,
) -> None:
    # The same rules as the «Дело» adapter's (adapters/http_outcomes.py).
    create = pos.post(MESSAGES).respond(status, headers={"Retry-After": "4"})

    with pytest.raises(Ambiguous) as caught:
        await client.register(make_appeal())
    assert caught.value.retry_after == 4.0
    assert str(status) in caught.value.reason

    lookup = pos.get(MESSAGES, params={"external_id": "apl-0001"}).respond(
        200, json={"items": [message()], "next_cursor": None})
    ref = await client.register(make_appeal())
    assert ref.id == "123456" and lookup.call_count == 1 and create.call_count == 1


@pytest.mark.parametrize("status", [502, 504])
async def test_gateway_failure_on_a_delivery_is_ambiguous(
    pos: respx.MockRouter, client: PosClient, status: int,
) -> None:
    pos.post(f"{MESSAGES}/123456/delivery").respond(status)

    with pytest.raises(Ambiguous):
        await client.confirm_delivery("123456", DeliveryChannel.PHONE, datetime.now(UTC))


@pytest.mark.parametrize("status", [502, 504])
async def test_gateway_failure_on_a_read_is_only_transient(
    pos: respx.MockRouter, client: PosClient, status: int,
) -> None:
    pos.get(MESSAGES).respond(status)

    with pytest.raises(Transient) as caught:
        await client.fetch_updates(None, 100)
    assert not isinstance(caught.value, Ambiguous)


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("read"), httpx.WriteTimeout("write"), httpx.ReadError("reset"),
     httpx.RemoteProtocolError("Server disconnected without sending a response.")],
)
async def test_failures_after_sending_are_ambiguous(
    pos: respx.MockRouter, client: PosClient, failure: Exception,
) -> None:
    pos.post(MESSAGES).mock(side_effect=failure)

    with pytest.raises(Ambiguous):
        await client.register(make_appeal())


@pytest.mark.parametrize(
    "failure", [httpx.ConnectError("refused"), httpx.ConnectTimeout("connect")]
)
async def test_failures_before_sending_are_only_transient(
    pos: respx.MockRouter, client: PosClient, failure: Exception,
) -> None:
    pos.post(MESSAGES).mock(side_effect=failure)

    with pytest.raises(Transient) as caught:
        await client.register(make_appeal())

    assert not isinstance(caught.value, Ambiguous)


async def test_lost_response_does_not_create_twice(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    create = pos.post(MESSAGES).mock(side_effect=httpx.ReadTimeout("lost"))
    lookup = pos.get(MESSAGES, params={"external_id": "apl-0001"}).respond(
        200, json={"items": [message()], "next_cursor": None}
    )

    with pytest.raises(Ambiguous):
        await client.register(make_appeal())
    ref = await client.register(make_appeal())  # the same process remembers the doubt

    assert ref.id == "123456"
    assert create.call_count == 1
    assert lookup.call_count == 1


async def test_after_a_restart_the_caller_asks_for_the_lookup(pos: respx.MockRouter) -> None:
    create = pos.post(MESSAGES).respond(201, json=CREATED)
    pos.get(MESSAGES, params={"external_id": "apl-0001"}).respond(
        200, json={"items": [message()], "next_cursor": None}
    )

    async with PosClient(BASE, TOKEN) as fresh:  # no memory of the earlier attempt
        ref = await fresh.register(make_appeal(), lookup_first=True)

    assert ref.id == "123456"
    assert create.call_count == 0


async def test_lookup_finding_nothing_creates(pos: respx.MockRouter, client: PosClient) -> None:
    create = pos.post(MESSAGES).respond(201, json=CREATED)
    lookup = pos.get(MESSAGES, params={"external_id": "apl-0001"}).respond(
        200, json={"items": [], "next_cursor": None}
    )

    ref = await client.register(make_appeal(), lookup_first=True)

    assert ref.id == "123456"
    assert lookup.call_count == 1 and create.call_count == 1
    assert create.calls.last.request.headers["Idempotency-Key"] == "apl-0001"


async def test_lookup_ignores_someone_elses_message(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    create = pos.post(MESSAGES).respond(201, json=CREATED)
    pos.get(MESSAGES, params={"external_id": "apl-0001"}).respond(
        200, json={"items": [message(9, external_id="apl-9999")], "next_cursor": None}
    )

    await client.register(make_appeal(), lookup_first=True)

    assert create.call_count == 1


async def test_a_failed_lookup_keeps_the_outcome_ambiguous(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    create = pos.post(MESSAGES).respond(201, json=CREATED)
    pos.get(MESSAGES).respond(503, headers={"Retry-After": "3"})

    with pytest.raises(Ambiguous) as caught:
        await client.register(make_appeal(), lookup_first=True)

    assert caught.value.retry_after == 3.0
    assert create.call_count == 0


async def test_a_5xx_create_is_looked_up_before_the_next_try(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    # A proxy's 502 may hide a create that did happen.
    create = pos.post(MESSAGES).mock(side_effect=[httpx.Response(502)])
    lookup = pos.get(MESSAGES, params={"external_id": "apl-0001"}).respond(
        200, json={"items": [message()], "next_cursor": None}
    )

    with pytest.raises(Transient):
        await client.register(make_appeal())
    await client.register(make_appeal())

    assert create.call_count == 1 and lookup.call_count == 1


async def test_an_unreadable_success_is_ambiguous(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    pos.post(MESSAGES).respond(201, text="<html>ok</html>")

    with pytest.raises(Ambiguous):
        await client.register(make_appeal())


async def test_a_route_without_pos_target_is_permanent(client: PosClient) -> None:
    appeal = make_appeal()
    with pytest.raises(Permanent):
        await client.register(replace(appeal, route=Route.none()))


# --- polling -------------------------------------------------------------------------


def page(items: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": next_cursor}


async def test_first_poll_asks_for_operator_messages_without_a_since(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    route = pos.get(MESSAGES).respond(200, json=page([], None))

    result = await client.fetch_updates(None, 200)

    params = dict(route.calls.last.request.url.params)
    assert params == {"source": "operator", "limit": "200"}
    assert result.updates == [] and result.next_cursor is None


async def test_limit_is_kept_within_the_contract(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    route = pos.get(MESSAGES).respond(200, json=page([], None))

    await client.fetch_updates(None, 10_000)
    assert route.calls.last.request.url.params["limit"] == "500"
    await client.fetch_updates(None, 0)
    assert route.calls.last.request.url.params["limit"] == "1"


async def test_a_walk_follows_the_remote_cursor_then_resumes_from_the_largest_updated_at(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    since = "2026-11-23T09:00:00+03:00"
    t1, t2, t3 = (f"2026-11-23T10:0{i}:00+03:00" for i in (1, 2, 3))
    route = pos.get(MESSAGES).mock(side_effect=[
        httpx.Response(200, json=page([message(1, updated_at=t1), message(2, updated_at=t2)],
                                      "opaque-A")),
        httpx.Response(200, json=page([message(3, updated_at=t3)], None)),
    ])
    stored = json.dumps({"v": 1, "since": since, "cursor": None, "max": None})

    first = await client.fetch_updates(stored, 2)
    assert first.next_cursor is not None and first.resume_from is None
    second = await client.fetch_updates(first.next_cursor, 2)

    one, two = (dict(c.request.url.params) for c in route.calls)
    # The walk reaches back by the overlap (60 s by default) and keeps that since.
    overlapped = "2026-11-23T08:59:00+03:00"
    assert one == {"source": "operator", "limit": "2", "updated_since": overlapped}
    assert two == {"source": "operator", "limit": "2", "updated_since": overlapped,
                   "cursor": "opaque-A"}
    assert [u.external_id for u in [*first.updates, *second.updates]] == ["1", "2", "3"]
    assert second.next_cursor is None and second.resume_from is not None
    assert json.loads(second.resume_from)["since"] == "2026-11-23T10:03:00+03:00"
    assert json.loads(second.resume_from)["cursor"] is None


async def test_an_empty_last_page_keeps_the_largest_updated_at_of_earlier_pages(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    late = "2026-11-23T11:00:00+03:00"
    pos.get(MESSAGES).mock(side_effect=[
        httpx.Response(200, json=page([message(1, updated_at=late)], "opaque-B")),
        httpx.Response(200, json=page([], None)),
    ])

    first = await client.fetch_updates(None, 1)
    last = await client.fetch_updates(first.next_cursor, 1)

    assert last.resume_from is not None
    assert json.loads(last.resume_from)["since"] == late


async def test_nothing_changed_keeps_the_since(pos: respx.MockRouter, client: PosClient) -> None:
    since = "2026-11-23T09:00:00+03:00"
    pos.get(MESSAGES).respond(200, json=page([], None))

    result = await client.fetch_updates(json.dumps({"v": 1, "since": since}), 100)

    assert result.resume_from is not None
    assert json.loads(result.resume_from)["since"] == since


@pytest.mark.parametrize("changed,page_size", [(0, 50), (7, 3), (6, 3), (100, 10)])
async def test_a_cycle_costs_at_most_ceil_changed_over_page_size_plus_one(
    pos: respx.MockRouter, client: PosClient, changed: int, page_size: int,
) -> None:
    items = [message(i, updated_at=f"2026-11-23T10:00:{i % 60:02d}.{i:06d}+03:00")
             for i in range(changed)]
    pages = [items[i:i + page_size] for i in range(0, changed, page_size)] or [[]]
    responses = [httpx.Response(200, json=page(p, f"c{n}" if n < len(pages) - 1 else None))
                 for n, p in enumerate(pages)]
    route = pos.get(MESSAGES).mock(side_effect=responses)

    cursor: str | None = None
    seen = 0
    while True:
        result = await client.fetch_updates(cursor, page_size)
        seen += len(result.updates)
        if result.next_cursor is None:
            break
        cursor = result.next_cursor

    assert seen == changed
    assert route.call_count <= math.ceil(changed / page_size) + 1


async def test_updates_carry_our_status_the_answer_and_the_delivery(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    ready = message(1, stage="answer_ready", answer={
        "text": "Яму заделали", "approved_at": "2026-11-25T12:00:00+03:00",
        "organization": "Минтранс"})
    delivered = message(2, external_id="apl-0002", stage="answer_delivered", delivery={
        "channel": "hand", "confirmed_at": "2026-11-26T10:00:00+03:00",
        "confirmed_by": "Петров П.П."})
    rejected = message(3, stage="rejected", answer={"text": "Не по адресу"})
    moderation = message(4, stage="moderation")
    pos.get(MESSAGES).respond(200, json=page([ready, delivered, rejected, moderation], None))

    result = await client.fetch_updates(None, 100)

    one, two, three, four = result.updates
    assert (one.status, one.stage, one.appeal_id) == ("answer_ready", "answer_ready", "apl-0001")
    assert one.answer is not None and one.answer.text == "Яму заделали"
    assert one.planned_completion is not None and one.planned_completion.isoformat() == (
        "2026-12-07"
    )
    assert two.status == "delivered"
    assert two.delivery is not None and two.delivery.channel is DeliveryChannel.HAND
    assert two.delivery.confirmed_by == "Петров П.П."
    assert three.status == "rejected" and three.answer is not None
    assert four.status == "registered"


async def test_unknown_stages_and_broken_items_do_not_stop_the_poll(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    odd = message(1, stage="archived")
    broken = {"id": 2, "stage": "execution"}  # no updated_at
    pos.get(MESSAGES).respond(200, json=page([odd, broken, message(3, stage="execution")],
                                             None))

    result = await client.fetch_updates(None, 100)

    assert [(u.external_id, u.status) for u in result.updates] == [
        ("1", "in_progress"), ("3", "in_progress")
    ]


@pytest.mark.parametrize("stored", ["not json", '{"v": 2}', '{"v": 1, "since": "yesterday"}',
                                    '{"v": 1, "max": 5}'])
async def test_a_garbage_cursor_is_permanent(client: PosClient, stored: str) -> None:
    with pytest.raises(Permanent):
        await client.fetch_updates(stored, 100)


async def test_polling_can_start_from_a_chosen_moment(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    route = pos.get(MESSAGES).respond(200, json=page([], None))

    await client.fetch_updates(cursor_since(datetime(2026, 11, 1, tzinfo=MSK)), 100)

    assert route.calls.last.request.url.params["updated_since"] == "2026-10-31T23:59:00+03:00"


@pytest.mark.parametrize(("overlap_s", "sent"), [
    (0, "2026-11-23T09:00:00+03:00"), (5, "2026-11-23T08:59:55+03:00"),
    (600, "2026-11-23T08:50:00+03:00"),
])
async def test_each_cycle_re_reads_the_overlap_window_for_late_commits(
    pos: respx.MockRouter, overlap_s: float, sent: str,
) -> None:
    newest = "2026-11-23T09:00:00+03:00"
    late = "2026-11-23T08:59:58+03:00"  # committed after `newest` was read, stamped before
    route = pos.get(MESSAGES).respond(200, json=page([message(7, updated_at=late)], None))
    async with PosClient(BASE, TOKEN, overlap_s=overlap_s) as client:
        result = await client.fetch_updates(json.dumps({"v": 1, "since": newest}), 100)

    assert route.calls.last.request.url.params["updated_since"] == sent
    assert [u.external_id for u in result.updates] == ["7"]
    # The next cycle starts from the newest change already read, never behind it.
    assert result.resume_from is not None
    assert json.loads(result.resume_from)["since"] == newest


@pytest.mark.parametrize("status", [500, 503])
async def test_a_failing_poll_is_transient(
    pos: respx.MockRouter, client: PosClient, status: int,
) -> None:
    pos.get(MESSAGES).respond(status)

    with pytest.raises(Transient):
        await client.fetch_updates(None, 100)


async def test_a_poll_timeout_is_transient_not_ambiguous(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    pos.get(MESSAGES).mock(side_effect=httpx.ReadTimeout("slow"))

    with pytest.raises(Transient) as caught:
        await client.fetch_updates(None, 100)

    assert not isinstance(caught.value, Ambiguous)


# --- delivery ------------------------------------------------------------------------

DELIVERY = f"{MESSAGES}/123456/delivery"
WHEN = datetime(2026, 11, 26, 10, 0, tzinfo=MSK)


async def test_confirm_delivery_posts_the_channel(pos: respx.MockRouter, client: PosClient) -> None:
    route = pos.post(DELIVERY).respond(200, json=message(stage="answer_delivered"))

    await client.confirm_delivery("123456", DeliveryChannel.PHONE, WHEN, "дозвонились")

    assert json.loads(route.calls.last.request.content) == {
        "channel": "phone", "confirmed_at": "2026-11-26T10:00:00+03:00",
        "comment": "дозвонились",
    }


async def test_confirming_again_with_the_same_channel_is_fine(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    route = pos.post(DELIVERY).respond(200, json=message(stage="answer_delivered"))

    await client.confirm_delivery("123456", DeliveryChannel.EMAIL, WHEN)
    await client.confirm_delivery("123456", DeliveryChannel.EMAIL, WHEN)

    assert route.call_count == 2
    assert "comment" not in json.loads(route.calls.last.request.content)


async def test_answer_not_ready_is_told_apart(pos: respx.MockRouter, client: PosClient) -> None:
    pos.post(DELIVERY).respond(409, json=error("answer_not_ready"))

    with pytest.raises(AnswerNotReady) as caught:
        await client.confirm_delivery("123456", DeliveryChannel.PHONE, WHEN)

    assert isinstance(caught.value, Permanent)


async def test_another_channel_after_delivery_is_a_conflict(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    pos.post(DELIVERY).respond(409, json=error("already_delivered", f"by {SURNAME}"))

    with pytest.raises(DeliveryConflict) as caught:
        await client.confirm_delivery("123456", DeliveryChannel.POST, WHEN)

    assert not isinstance(caught.value, AnswerNotReady)
    assert caught.value.code == "already_delivered"
    assert SURNAME not in caught.value.reason


async def test_a_lost_confirmation_is_ambiguous_and_safe_to_repeat(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    pos.post(DELIVERY).mock(side_effect=[httpx.ReadTimeout("lost"),
                                         httpx.Response(200, json=message())])

    with pytest.raises(Ambiguous):
        await client.confirm_delivery("123456", DeliveryChannel.PHONE, WHEN)
    await client.confirm_delivery("123456", DeliveryChannel.PHONE, WHEN)


@pytest.mark.parametrize("status,outcome", [(404, Permanent), (401, Permanent),
                                            (429, Transient), (500, Transient)])
async def test_other_delivery_answers(
    pos: respx.MockRouter, client: PosClient, status: int, outcome: type[Exception],
) -> None:
    pos.post(DELIVERY).respond(status)

    with pytest.raises(outcome):
        await client.confirm_delivery("123456", DeliveryChannel.PHONE, WHEN)


async def test_one_message_is_read_by_its_id_for_the_reconciliation(
    pos: respx.MockRouter, client: PosClient,
) -> None:
    pos.get(f"{MESSAGES}/123456").respond(200, json=message(123456, stage="execution"))
    pos.get(f"{MESSAGES}/999").respond(404, json=error("not_found"))
    pos.get(f"{MESSAGES}/777").respond(503)

    update = await client.get_update("123456")
    assert update is not None
    assert (update.external_id, update.status, update.appeal_id) == (
        "123456", "in_progress", "apl-0001")
    assert await client.get_update("999") is None  # ПОС does not know it
    with pytest.raises(Transient):
        await client.get_update("777")


async def test_a_rerouted_appeal_is_created_as_a_new_message_under_a_key_of_its_own(
        client: PosClient) -> None:
    """A ПОС rejection re-routed by a supervisor needs a new registration: the abandoned
    message keeps the appeal id, the new one is created under the re-route's key."""
    appeal = make_appeal()
    first = client.create_body(appeal)
    appeal.reroutes = 1
    rerouted = client.create_body(appeal)

    assert first.external_id == "apl-0001"
    assert rerouted.external_id == "apl-0001.r1"
