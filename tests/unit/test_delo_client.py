"""The Дело adapter against every answer class of adapters/delo/CONTRACT.md (respx)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx

from adapters.delo import wire
from adapters.delo.client import DeloClient
from adapters.delo.multipart import (
    BatchUnit,
    EmbeddedRequest,
    EmbeddedResponse,
    decode_requests,
    decode_responses,
    encode_requests,
    encode_responses,
)
from gateway.domain.appeal import (
    Appeal,
    DeliveryChannel,
    Urgency,
)
from gateway.domain.route import DeloTarget, Route, TargetSystem
from outbox import Ambiguous, HandlerOutcome, Permanent, Transient
from tests import builders

BASE = "http://delo.test/"
LOGIN = BASE + wire.LOGIN_PATH
BATCH = BASE + wire.BATCH_PATH
APPEAL_ID = builders.APPEAL_ID
Row = dict[str, Any]
BatchOutcome = httpx.Response | Exception | Callable[[list[EmbeddedRequest]], httpx.Response]
ROUTE = Route(system=TargetSystem.DELO, executor="Управление ЖКХ",
              delo=DeloTarget("0005.0005.0056.1153", "0.2D1.2D4.", "0.2D1."))


def make_appeal(**changes: Any) -> Appeal:
    return builders.make_appeal(**({"route": ROUTE} | changes))


PERSONAL = ("Смирнов", "Олег", "+79001234567", "o.smirnov@example.ru", "Мира")


def card_row(isn: int = 5001, appeal_id: str = APPEAL_ID, control: int = 1) -> Row:
    return {"ISN_DOC": isn, "FREE_NUM": f"{isn}-ОГ", "CONTROL_STATE": control,
            "ANNOTAT": f"{{gw:{appeal_id}}} Отопление. Нет отопления", "DUE_DOCGROUP": "0.1CP."}


def reply_row(isn: int, upd: str, *, resolution: int = 7001, card: int | None = 5001,
              replied: str | None = None, text: str | None = None,
              plan: str | None = "2026-11-30T00:00:00") -> Row:
    row: Row = {"ISN_REPLY": isn, "ISN_RESOLUTION": resolution, "DUE": "0.2D1.2D4.",
                "REPLY_DATE": replied, "REPLY_TEXT": text, "PLAN_DATE": plan, "UPD_DATE": upd}
    if card is not None:
        row["ISN_REF_DOC"] = card
    return row


def odata_error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"odata.error": {"code": code,
                                                        "message": {"value": message}}})


def batch_response(*units: BatchUnit[EmbeddedResponse]) -> httpx.Response:
    body, content_type = encode_responses(list(units))
    return httpx.Response(202, content=body, headers={"Content-Type": content_type})


def created(temp: int, fixed: int, **fields: Any) -> EmbeddedResponse:
    return EmbeddedResponse(201, json.dumps({"TempISN": temp, "FixedISN": fixed, **fields},
                                            ensure_ascii=False).encode())


class FakeDelo:
    """Дело-Web as respx routes: canned rows per entity, recorded reads and changesets."""

    def __init__(self, mock: respx.MockRouter) -> None:
        self.logins = 0
        self.rows: dict[str, list[Row]] = {
            wire.DOCGROUP_CL: [{"DUE": "0.1CP.", "ISN_NODE": 4001, "RC_TYPE": 2,
                                "CLASSIF_NAME": "Обращения граждан"}],
            wire.RUBRIC_CL: [{"DUE": "0.2EZ47.2EZ51.", "RUBRIC_CODE": "0005.0005.0056.1153"}],
        }
        self.reads: list[tuple[str, dict[str, Any], httpx.Request]] = []
        self.read_faults: dict[str, list[httpx.Response | Exception]] = {}
        self.batches: list[list[EmbeddedRequest]] = []
        self.batch_outcomes: list[BatchOutcome] = []
        self.login_route = mock.get(LOGIN).mock(side_effect=self._login)
        mock.get(url__regex=BASE + wire.ODATA_PATH + r"(?P<entity>[A-Z_]+)").mock(
            side_effect=self._read
        )
        self.batch_route = mock.post(BATCH).mock(side_effect=self._batch)

    def _login(self, request: httpx.Request) -> httpx.Response:
        self.logins += 1
        return httpx.Response(200, text="<boolean>true</boolean>", headers={
            "Set-Cookie": f"{wire.SESSION_COOKIE}=sid-{self.logins}; path=/; HttpOnly"
        })

    def _read(self, request: httpx.Request, entity: str) -> httpx.Response:
        filters = json.loads(request.url.params.get("criteries", "{}"))
        self.reads.append((entity, filters, request))
        faults = self.read_faults.get(entity)
        if faults:
            fault = faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault
        return httpx.Response(200, json={"value": self.rows.get(entity, [])})

    def _batch(self, request: httpx.Request) -> httpx.Response:
        [unit] = decode_requests(request.content, request.headers["content-type"])
        operations = list(unit.messages)
        self.batches.append(operations)
        if self.batch_outcomes:
            outcome = self.batch_outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            if isinstance(outcome, httpx.Response):
                return outcome
            return outcome(operations)
        return accept(operations)

    def read_entities(self) -> list[str]:
        return [entity for entity, _, _ in self.reads]

    def sessions_used(self) -> list[str]:
        return [request.headers.get("cookie", "") for _, _, request in self.reads]


def accept(operations: list[EmbeddedRequest]) -> httpx.Response:
    """What a server that applied the changeset answers."""
    parts = []
    for number, operation in enumerate(operations, start=1):
        data = json.loads(operation.body) if operation.body else {}
        if operation.method == "POST":
            temp = next(v for k, v in data.items() if k.startswith("ISN_") and v < 0) \
                if operation.uri != wire.DOC_RUBRIC else None
            extra = {"FREE_NUM": "5001-ОГ"} if operation.uri == wire.DOC_RC else {}
            parts.append(created(temp, 5000 + number, **extra) if temp else
                         EmbeddedResponse(201, b'{"ID": 1}'))
        else:
            parts.append(EmbeddedResponse(204))
    return batch_response(BatchUnit(True, tuple(parts)))


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def delo(mock: respx.MockRouter) -> FakeDelo:
    return FakeDelo(mock)


@pytest.fixture
async def client() -> AsyncIterator[DeloClient]:
    async with DeloClient(BASE, "gateway", "s3cret-pass") as adapter:
        yield adapter


def body_of(operation: EmbeddedRequest) -> Row:
    data: Row = json.loads(operation.body)
    return data


def assert_no_personal_data(outcome: HandlerOutcome) -> None:
    for value in (*PERSONAL, "s3cret-pass"):
        assert value not in outcome.reason
        assert value not in str(outcome)
    # No chained transport error: its text may hold the URL, criteries and all.
    assert outcome.__cause__ is None
    assert outcome.__context__ is None or outcome.__suppress_context__


# ---- session ----------------------------------------------------------------------------


async def test_login_opens_a_session_every_later_call_carries(
    delo: FakeDelo, client: DeloClient
) -> None:
    await client.register(make_appeal())
    login = delo.login_route.calls.last.request
    assert dict(login.url.params) == {"app": "api", "username": "gateway",
                                      "pass": "s3cret-pass"}
    assert delo.logins == 1
    assert set(delo.sessions_used()) == {f"{wire.SESSION_COOKIE}=sid-1"}
    assert delo.batch_route.calls.last.request.headers["cookie"] == (
        f"{wire.SESSION_COOKIE}=sid-1"
    )


@pytest.mark.parametrize("answer", [
    httpx.Response(401, text="Неверное имя пользователя или пароль"),
    httpx.Response(200, text="<boolean>false</boolean>"),  # no session cookie
])
async def test_refused_login_is_a_configuration_error(
    mock: respx.MockRouter, client: DeloClient, answer: httpx.Response
) -> None:
    mock.get(LOGIN).mock(return_value=answer)
    with pytest.raises(Permanent, match="configuration") as caught:
        await client.register(make_appeal())
    assert_no_personal_data(caught.value)


async def test_throttled_login_is_transient(mock: respx.MockRouter, client: DeloClient) -> None:
    mock.get(LOGIN).mock(return_value=httpx.Response(429, headers={"Retry-After": "3"}))
    with pytest.raises(Transient) as caught:
        await client.register(make_appeal())
    assert caught.value.retry_after == 3


@pytest.mark.parametrize("expired", [
    httpx.Response(401),
    httpx.Response(302, headers={"Location": "/Login.aspx?ReturnUrl=%2f"}),
    odata_error(500, "SessionExpired", "Сессия не найдена или истекла"),
])
async def test_expired_session_logs_in_again_and_repeats_the_call(
    delo: FakeDelo, client: DeloClient, expired: httpx.Response
) -> None:
    delo.read_faults[wire.DOCGROUP_CL] = [expired]
    await client.register(make_appeal())
    assert delo.logins == 2
    assert delo.read_entities()[:2] == [wire.DOCGROUP_CL, wire.DOCGROUP_CL]
    assert delo.sessions_used()[:2] == [f"{wire.SESSION_COOKIE}=sid-1",
                                        f"{wire.SESSION_COOKIE}=sid-2"]
    assert len(delo.batches) == 1


async def test_expired_session_inside_the_batch_answer_is_renewed_and_resent(
    delo: FakeDelo, client: DeloClient
) -> None:
    delo.batch_outcomes.append(batch_response(BatchUnit(False, (EmbeddedResponse(401),))))
    ref = await client.register(make_appeal())
    assert delo.logins == 2 and len(delo.batches) == 2 and ref.id == "5002"


async def test_session_lost_again_right_after_a_fresh_login_is_transient_not_configuration(
    delo: FakeDelo, client: DeloClient
) -> None:
    # Issue 12: a session that expired moments after a successful login dead-lettered
    # the call as a configuration error. The login worked, so the retry policy decides.
    delo.read_faults[wire.DOCGROUP_CL] = [httpx.Response(401), httpx.Response(401)]
    with pytest.raises(Transient) as caught:
        await client.register(make_appeal())
    assert not isinstance(caught.value, Ambiguous)
    assert "configuration" not in caught.value.reason
    assert delo.logins == 2

    # The outbox's next attempt logs in anew and goes through.
    ref = await client.register(make_appeal(), lookup_first=True)
    assert delo.logins == 3 and ref.id == "5002"
    assert delo.sessions_used()[-1] == f"{wire.SESSION_COOKIE}=sid-3"


async def test_session_lost_twice_inside_a_batch_answer_is_transient(
    delo: FakeDelo, client: DeloClient
) -> None:
    lost = batch_response(BatchUnit(False, (EmbeddedResponse(401),)))
    delo.batch_outcomes += [lost, lost]
    with pytest.raises(Transient) as caught:
        await client.register(make_appeal())
    assert "configuration" not in caught.value.reason
    assert delo.logins == 2 and len(delo.batches) == 2


# ---- register ---------------------------------------------------------------------------


async def test_the_card_carries_the_problem_address_and_the_operator(
    delo: FakeDelo, client: DeloClient
) -> None:
    """[002: 2.8.6] «Регистрация телефонного обращения осуществляется … путем внесения
    информации в регистрационную карточку»: the address and the operator, not only the
    topic and the summary; both before the summary, so trimming never cuts them."""
    appeal = make_appeal(problem_address="г. Ульяновск, ул. Гончарова, 1",
                         operator="Иванова А.А.", summary="х" * 5000)

    await client.register(appeal)

    card = next(body_of(o) for o in delo.batches[0] if o.uri == "DOC_RC")
    assert "Адрес проблемы: г. Ульяновск, ул. Гончарова, 1." in card["ANNOTAT"]
    assert "Оператор: Иванова А.А." in card["ANNOTAT"]


async def test_register_writes_card_resolution_and_executor_in_one_changeset(
    delo: FakeDelo, client: DeloClient
) -> None:
    ref = await client.register(make_appeal())

    assert (ref.system, ref.id, ref.number, ref.stage) == ("delo", "5002", "5001-ОГ",
                                                           "on_control")
    [operations] = delo.batches
    assert [(o.method, o.uri) for o in operations] == [
        ("POST", "CITIZEN"), ("POST", "DOC_RC"), ("POST", "DOC_RUBRIC"),
        ("POST", "RESOLUTION"), ("POST", "REPLY"),
    ]
    citizen, card, rubric, resolution, reply = (body_of(o) for o in operations)
    assert citizen["CITIZEN_SURNAME"] == "Смирнов Олег Петрович"
    assert (citizen["PHONE"], citizen["E_MAIL"]) == ("+79001234567", "o.smirnov@example.ru")
    assert citizen["ISN_CITIZEN"] < 0 and card["ISN_CITIZEN"] == citizen["ISN_CITIZEN"]
    assert card["ISN_DOC"] < 0
    assert card["DUE_DOCGROUP"] == "0.1CP."
    assert card["CITO"] == 1 and card["CONTROL_STATE"] == 1
    assert card["PLAN_DATE"] == "2026-11-30T00:00:00"
    assert card["DOC_DATE"] == "2026-11-23T00:00:00"
    assert card["ANNOTAT"].startswith("{gw:" + APPEAL_ID + "}")
    assert "нет отопления" in card["ANNOTAT"]
    assert rubric == {"ISN_REF_DOC": card["ISN_DOC"], "DUE_RUBRIC": "0.2EZ47.2EZ51."}
    assert resolution["ISN_REF_DOC"] == card["ISN_DOC"]
    assert resolution["DUE_CONTROLLER"] == "0.2D1." and resolution["CONTROL_STATE"] == 1
    assert resolution["PLAN_DATE"] == "2026-11-30T00:00:00"
    assert reply["ISN_RESOLUTION"] == resolution["ISN_RESOLUTION"]
    assert reply["DUE"] == "0.2D1.2D4."


async def test_plan_date_is_the_due_date_in_the_hotline_zone(mock: respx.MockRouter) -> None:
    delo = FakeDelo(mock)
    from zoneinfo import ZoneInfo

    async with DeloClient(BASE, "gateway", "x",
                          hotline_zone=lambda _h: ZoneInfo("Asia/Vladivostok")) as client:
        await client.register(make_appeal())
    card = body_of(delo.batches[0][1])
    assert card["PLAN_DATE"] == "2026-12-01T00:00:00"  # 30.11 20:59 UTC is 1.12 in +10


async def test_control_urgency_is_not_cito(delo: FakeDelo, client: DeloClient) -> None:
    await client.register(make_appeal(urgency=Urgency.CONTROL))
    assert body_of(delo.batches[0][1])["CITO"] == 0


async def test_known_citizen_with_same_name_and_phone_is_reused(
    delo: FakeDelo, client: DeloClient
) -> None:
    delo.rows[wire.CITIZEN] = [
        {"ISN_CITIZEN": 41, "CITIZEN_SURNAME": "Смирнов Иван", "PHONE": "+79001234567"},
        {"ISN_CITIZEN": 42, "CITIZEN_SURNAME": "смирнов олег петрович",
         "PHONE": "+79001234567"},
    ]
    await client.register(make_appeal())
    operations = delo.batches[0]
    assert operations[0].uri == "DOC_RC"
    assert body_of(operations[0])["ISN_CITIZEN"] == 42
    assert (wire.CITIZEN, {"PHONE": "+79001234567"}) in [(e, f) for e, f, _ in delo.reads]


async def test_namesake_sharing_a_phone_is_not_taken_for_the_applicant(
    delo: FakeDelo, client: DeloClient
) -> None:
    delo.rows[wire.CITIZEN] = [{"ISN_CITIZEN": 41, "CITIZEN_SURNAME": "Смирнов Иван"}]
    await client.register(make_appeal())
    assert delo.batches[0][0].uri == "CITIZEN"


async def test_first_attempt_creates_without_looking_up(
    delo: FakeDelo, client: DeloClient
) -> None:
    await client.register(make_appeal())
    assert wire.DOC_RC not in delo.read_entities()
    assert len(delo.batches) == 1


async def test_retry_finds_the_existing_card_and_creates_nothing(
    delo: FakeDelo, client: DeloClient
) -> None:
    delo.rows[wire.DOC_RC] = [card_row(5001)]
    ref = await client.register(make_appeal(), lookup_first=True)
    assert (ref.id, ref.number, ref.stage) == ("5001", "5001-ОГ", "on_control")
    assert delo.batches == []
    lookup = next(f for e, f, _ in delo.reads if e == wire.DOC_RC)
    assert lookup == {"DUE_DOCGROUP": "0.1CP.", "ANNOTAT": "%{gw:" + APPEAL_ID + "}%"}


async def test_retry_that_finds_nothing_creates(delo: FakeDelo, client: DeloClient) -> None:
    ref = await client.register(make_appeal(), lookup_first=True)
    assert ref.id == "5002" and len(delo.batches) == 1


async def test_lookup_ignores_cards_whose_annotation_only_looks_alike(
    delo: FakeDelo, client: DeloClient
) -> None:
    delo.rows[wire.DOC_RC] = [card_row(5001, appeal_id="7f1c2d9e-0000-4000-8000-00000000000")]
    await client.register(make_appeal(), lookup_first=True)
    assert len(delo.batches) == 1


@pytest.mark.parametrize("lost", [
    httpx.ReadTimeout("timed out"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    httpx.ReadError("connection reset"),
])
async def test_lost_response_does_not_create_twice(
    delo: FakeDelo, client: DeloClient, lost: Exception
) -> None:
    delo.batch_outcomes.append(lost)
    with pytest.raises(Ambiguous) as caught:
        await client.register(make_appeal())
    assert_no_personal_data(caught.value)
    # The changeset did reach the server: the retry finds the card by its marker, both
    # here (the adapter remembers the doubt) and in a process started afresh.
    delo.rows[wire.DOC_RC] = [card_row(5002)]
    ref = await client.register(make_appeal())
    assert ref.id == "5002"
    async with DeloClient(BASE, "gateway", "s3cret-pass") as restarted:
        assert (await restarted.register(make_appeal(), lookup_first=True)).id == "5002"
    assert len(delo.batches) == 1


async def test_lost_response_with_no_card_behind_it_creates_on_retry(
    delo: FakeDelo, client: DeloClient
) -> None:
    delo.batch_outcomes.append(httpx.ReadTimeout("timed out"))
    with pytest.raises(Ambiguous):
        await client.register(make_appeal())
    ref = await client.register(make_appeal())
    assert ref.id == "5002"
    assert len(delo.batches) == 2
    # Only the retry looked: the adapter remembered that the first one was in doubt.
    assert [e for e in delo.read_entities() if e == wire.DOC_RC] == [wire.DOC_RC]


async def test_batch_not_sent_is_transient_not_ambiguous(
    delo: FakeDelo, client: DeloClient
) -> None:
    delo.batch_outcomes.append(httpx.ConnectError("connection refused"))
    with pytest.raises(Transient) as caught:
        await client.register(make_appeal())
    assert not isinstance(caught.value, Ambiguous)


async def test_unreadable_batch_answer_is_ambiguous(delo: FakeDelo, client: DeloClient) -> None:
    delo.batch_outcomes.append(httpx.Response(
        202, content=b"--batchresponse_x\r\nContent-Type: multipart/mixed; boundary=c\r\n",
        headers={"Content-Type": "multipart/mixed; boundary=batchresponse_x"},
    ))
    with pytest.raises(Ambiguous):
        await client.register(make_appeal())


async def test_refused_changeset_is_permanent_and_says_only_the_code(
    delo: FakeDelo, client: DeloClient
) -> None:
    error = {"odata.error": {"code": "ReferenceNotFound", "message": {
        "value": "Гражданин Смирнов Олег +79001234567: REPLY.DUE unknown"}}}
    delo.batch_outcomes.append(batch_response(BatchUnit(False, (
        EmbeddedResponse(400, json.dumps(error, ensure_ascii=False).encode()),))))
    with pytest.raises(Permanent, match="ReferenceNotFound") as caught:
        await client.register(make_appeal())
    assert "not applied" in caught.value.reason
    assert_no_personal_data(caught.value)


@pytest.mark.parametrize(("status", "outcome"), [(400, Permanent), (500, Transient)])
async def test_changeset_with_one_failed_part_counts_as_not_applied(
    delo: FakeDelo, client: DeloClient, status: int, outcome: type[HandlerOutcome]
) -> None:
    delo.batch_outcomes.append(batch_response(BatchUnit(True, (
        created(-20001, 1), created(-20002, 2), EmbeddedResponse(status, b"{}"),
        EmbeddedResponse(201, b"{}"), EmbeddedResponse(201, b"{}"),
    ))))
    with pytest.raises(outcome) as caught:
        await client.register(make_appeal())
    assert not isinstance(caught.value, Ambiguous)
    assert "not applied" in caught.value.reason


async def test_accepted_batch_without_the_new_key_is_ambiguous(
    delo: FakeDelo, client: DeloClient
) -> None:
    delo.batch_outcomes.append(lambda ops: batch_response(BatchUnit(True, tuple(
        EmbeddedResponse(201, b'{"ID": 1}') for _ in ops))))
    with pytest.raises(Ambiguous):
        await client.register(make_appeal())


async def test_number_is_read_back_when_the_answer_lacks_it(
    delo: FakeDelo, client: DeloClient
) -> None:
    delo.batch_outcomes.append(lambda ops: batch_response(BatchUnit(True, (
        created(-20002, 9), created(-20001, 10), EmbeddedResponse(201, b"{}"),
        created(-20003, 11), created(-20004, 12)))))
    delo.rows[wire.DOC_RC] = []
    ref = await client.register(make_appeal())
    assert ref.id == "10" and ref.number is None
    read_back = next(f for e, f, _ in delo.reads if e == wire.DOC_RC)
    assert read_back == {"ISN_DOC": "10"}


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_throttled_batch_honours_retry_after(
    delo: FakeDelo, client: DeloClient, form: str
) -> None:
    retry_after = "7" if form == "seconds" else format_datetime(
        datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    delo.batch_outcomes.append(httpx.Response(429, headers={"Retry-After": retry_after}))
    with pytest.raises(Transient) as caught:
        await client.register(make_appeal())
    assert not isinstance(caught.value, Ambiguous)
    assert caught.value.retry_after is not None and 5 <= caught.value.retry_after <= 30


@pytest.mark.parametrize(("status", "outcome"), [
    (500, Transient), (503, Transient), (408, Transient), (429, Transient),
    (502, Ambiguous), (504, Ambiguous),
])
async def test_server_errors_on_the_batch(
    delo: FakeDelo, client: DeloClient, status: int, outcome: type[Transient]
) -> None:
    # The same rules as the ПОС adapter's (adapters/http_outcomes.py).
    delo.batch_outcomes.append(httpx.Response(status))
    with pytest.raises(outcome) as caught:
        await client.register(make_appeal())
    assert type(caught.value) is outcome


@pytest.mark.parametrize("status", [502, 504])
async def test_gateway_failure_on_the_batch_is_looked_up_before_the_next_create(
    delo: FakeDelo, client: DeloClient, status: int
) -> None:
    delo.batch_outcomes.append(httpx.Response(status))
    with pytest.raises(Ambiguous):
        await client.register(make_appeal())
    delo.rows[wire.DOC_RC] = [card_row(5002)]  # the proxy's 502 hid a card that was made
    ref = await client.register(make_appeal())
    assert ref.id == "5002" and len(delo.batches) == 1


@pytest.mark.parametrize(("failure", "outcome"), [
    (httpx.ConnectError("refused"), Transient), (httpx.ConnectTimeout("connect"), Transient),
    (httpx.ReadTimeout("read"), Ambiguous), (httpx.ReadError("reset"), Ambiguous),
    (httpx.RemoteProtocolError("disconnected"), Ambiguous),
])
async def test_transport_failures_on_the_batch(
    delo: FakeDelo, client: DeloClient, failure: Exception, outcome: type[Transient]
) -> None:
    delo.batch_outcomes.append(failure)
    with pytest.raises(outcome) as caught:
        await client.register(make_appeal())
    assert type(caught.value) is outcome
    assert_no_personal_data(caught.value)


@pytest.mark.parametrize("status", [400, 404, 409, 410, 422])
async def test_other_4xx_on_the_batch_are_permanent(
    delo: FakeDelo, client: DeloClient, status: int
) -> None:
    delo.batch_outcomes.append(odata_error(status, "Refused", "Смирнов"))
    with pytest.raises(Permanent) as caught:
        await client.register(make_appeal())
    assert str(status) in caught.value.reason
    assert_no_personal_data(caught.value)


async def test_refused_read_is_permanent(delo: FakeDelo, client: DeloClient) -> None:
    delo.read_faults[wire.CITIZEN] = [odata_error(400, "BadCriteria", "Смирнов")]
    with pytest.raises(Permanent, match="BadCriteria") as caught:
        await client.register(make_appeal())
    assert_no_personal_data(caught.value)


@pytest.mark.parametrize("failure", [httpx.Response(503), httpx.ReadTimeout("timed out")])
async def test_failed_read_is_transient_never_ambiguous(
    delo: FakeDelo, client: DeloClient, failure: httpx.Response | Exception
) -> None:
    delo.read_faults[wire.CITIZEN] = [failure]
    with pytest.raises(Transient) as caught:
        await client.register(make_appeal())
    assert not isinstance(caught.value, Ambiguous)
    assert delo.batches == []


async def test_unknown_rubric_is_a_routing_error(delo: FakeDelo, client: DeloClient) -> None:
    delo.rows[wire.RUBRIC_CL] = []
    with pytest.raises(Permanent, match=r"rubric 0005\.0005\.0056\.1153"):
        await client.register(make_appeal())


async def test_several_citizen_groups_need_configuration(
    delo: FakeDelo, client: DeloClient
) -> None:
    delo.rows[wire.DOCGROUP_CL].append({"DUE": "0.1CR.", "RC_TYPE": 2})
    with pytest.raises(Permanent, match="docgroup_due"):
        await client.register(make_appeal())


async def test_appeal_without_delo_target_or_due_date_is_refused(client: DeloClient) -> None:
    with pytest.raises(Permanent, match="no Дело target"):
        await client.register(make_appeal(route=Route(TargetSystem.DELO, "x")))
    with pytest.raises(Permanent, match="no due date"):
        await client.register(make_appeal(due_at=None))


# ---- fetch_updates ----------------------------------------------------------------------


async def test_replies_become_answer_ready_and_in_progress_updates(
    delo: FakeDelo, client: DeloClient
) -> None:
    other = "7f1c2d9e-0000-4000-8000-000000000002"
    delo.rows[wire.REPLY] = [
        reply_row(9001, "2026-11-24T10:00:00", card=5001, replied="2026-11-24T09:58:00",
                  text="Отопление включено."),
        reply_row(9002, "2026-11-24T10:05:00", resolution=7002, card=5002,
                  plan="2026-12-08T00:00:00"),
        reply_row(9003, "2026-11-24T10:06:00", resolution=7003, card=5003),  # not ours
    ]
    delo.rows[wire.DOC_RC] = [card_row(5001), card_row(5002, appeal_id=other),
                              {"ISN_DOC": 5003, "ANNOTAT": "Письмо без метки"}]
    page = await client.fetch_updates(None, 10)

    ready, pending = page.updates
    assert (ready.external_id, ready.appeal_id, ready.status, ready.stage) == (
        "5001", APPEAL_ID, "answer_ready", "reply_done")
    assert ready.answer is not None and ready.answer.text == "Отопление включено."
    assert ready.answer.approved_at == datetime(2026, 11, 24, 6, 58, tzinfo=UTC)
    assert ready.updated_at == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    assert (pending.appeal_id, pending.status, pending.answer) == (other, "in_progress", None)
    assert pending.planned_completion == date(2026, 12, 8)
    assert page.next_cursor is None and page.resume_from is not None
    entity, filters, request = delo.reads[-2]
    assert entity == wire.REPLY and filters == {"ISN_RESOLUTION": "isnotnull"}
    assert request.url.params["$orderby"] == "UPD_DATE,ISN_REPLY"
    assert request.url.params["$top"] == "10"
    assert delo.reads[-1][1] == {"ISN_DOC": "5001|5002|5003"}


async def test_poll_reads_only_routed_executors_since_the_start(mock: respx.MockRouter) -> None:
    delo = FakeDelo(mock)
    start = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
    async with DeloClient(BASE, "g", "p", executor_dues=("0.2D1.2D4.", "0.2D1.2D5."),
                          initial_since=start) as client:
        await client.fetch_updates(None, 50)
    # Moscow time, less the overlap (60 s by default) that catches late commits.
    assert delo.reads[-1][1] == {"UPD_DATE": ">=2026-11-01T02:59:00",
                                 "DUE": "0.2D1.2D4.|0.2D1.2D5."}


@pytest.mark.parametrize(("overlap_s", "sent"), [
    (0, ">=2026-11-24T10:00:00"), (15, ">=2026-11-24T09:59:45"), (60, ">=2026-11-24T09:59:00"),
])
async def test_each_cycle_re_reads_the_overlap_window_for_late_commits(
    mock: respx.MockRouter, overlap_s: float, sent: str
) -> None:
    delo = FakeDelo(mock)
    newest = "2026-11-24T10:00:00"
    late = "2026-11-24T09:59:50"  # committed after `newest` was read, stamped before it
    delo.rows[wire.DOC_RC] = [card_row(5001)]
    delo.rows[wire.REPLY] = [reply_row(9005, late, replied=late, text="Ответ")]
    cursor = json.dumps({"v": 1, "since": newest, "seen": ["9001:ab"]})
    async with DeloClient(BASE, "g", "p", overlap_s=overlap_s) as client:
        page = await client.fetch_updates(cursor, 5)
    _, filters, _ = next(r for r in reversed(delo.reads) if r[0] == wire.REPLY)
    assert filters["UPD_DATE"] == sent
    assert [u.status for u in page.updates] == ["answer_ready"]
    # The next cycle starts where this one did, not behind it at the late row.
    assert page.next_cursor is None
    assert json.loads(page.resume_from or "") == json.loads(cursor)


async def test_a_cycle_that_reaches_back_pages_on_without_reaching_back_again(
    delo: FakeDelo, client: DeloClient
) -> None:
    delo.rows[wire.DOC_RC] = [card_row(5001)]
    delo.rows[wire.REPLY] = [reply_row(9001, "2026-11-24T09:59:30")]  # a full page of 1
    cursor = json.dumps({"v": 1, "since": "2026-11-24T10:00:00", "seen": []})
    first = await client.fetch_updates(cursor, 1)
    assert first.next_cursor is not None
    delo.rows[wire.REPLY] = [reply_row(9002, "2026-11-24T10:00:05")]
    second = await client.fetch_updates(first.next_cursor, 1)
    filters = [f["UPD_DATE"] for entity, f, _ in delo.reads if entity == wire.REPLY]
    assert filters == [">=2026-11-24T09:59:00", ">=2026-11-24T09:59:30"]
    assert second.resume_from is not None
    assert json.loads(second.resume_from)["since"] == "2026-11-24T10:00:05"


async def test_poll_pages_by_key_without_losing_or_repeating_ties(
    delo: FakeDelo, client: DeloClient
) -> None:
    tick = "2026-11-24T10:00:00"
    delo.rows[wire.DOC_RC] = [card_row(5001)]
    delo.rows[wire.REPLY] = [reply_row(9001, "2026-11-24T09:59:59"), reply_row(9002, tick)]
    first = await client.fetch_updates(None, 2)
    assert first.next_cursor is not None and len(first.updates) == 2

    # Same tick: 9002 again unchanged (skipped), 9003 new, 9002's twin 9004 changed twice.
    delo.rows[wire.REPLY] = [
        reply_row(9002, tick), reply_row(9003, tick),
        reply_row(9004, tick, replied=tick, text="Готово"),
    ]
    second = await client.fetch_updates(first.next_cursor, 2)
    _, filters, request = next(r for r in reversed(delo.reads) if r[0] == wire.REPLY)
    assert filters["UPD_DATE"] == ">=" + tick
    assert request.url.params["$top"] == "3"  # the page plus the one row seen at the tick
    assert [u.status for u in second.updates] == ["in_progress", "answer_ready"]
    assert second.next_cursor is not None

    # 9002 answered within the same second: its content changed, so it is reported.
    delo.rows[wire.REPLY] = [reply_row(9002, tick, replied=tick, text="Ответ")]
    third = await client.fetch_updates(second.next_cursor, 2)
    assert [(u.status, u.answer.text if u.answer else None) for u in third.updates] == [
        ("answer_ready", "Ответ")]
    assert third.next_cursor is None and third.resume_from is not None


async def test_empty_poll_keeps_its_position(delo: FakeDelo, client: DeloClient) -> None:
    delo.rows[wire.REPLY] = []
    cursor = json.dumps({"v": 1, "since": "2026-11-24T10:00:00", "seen": ["9001:ab"]})
    page = await client.fetch_updates(cursor, 5)
    assert page.updates == [] and page.next_cursor is None
    assert json.loads(page.resume_from or "") == json.loads(cursor)


async def test_card_is_found_through_the_resolution_when_reply_lacks_it(
    delo: FakeDelo, client: DeloClient
) -> None:
    delo.rows[wire.REPLY] = [reply_row(9001, "2026-11-24T10:00:00", card=None)]
    delo.rows[wire.RESOLUTION] = [{"ISN_RESOLUTION": 7001, "ISN_REF_DOC": 5001}]
    delo.rows[wire.DOC_RC] = [card_row(5001)]
    [update] = (await client.fetch_updates(None, 10)).updates
    assert (update.external_id, update.appeal_id) == ("5001", APPEAL_ID)
    assert delo.read_entities()[-2:] == [wire.RESOLUTION, wire.DOC_RC]


async def test_card_facts_are_read_once(delo: FakeDelo, client: DeloClient) -> None:
    delo.rows[wire.REPLY] = [reply_row(9001, "2026-11-24T10:00:00")]
    delo.rows[wire.DOC_RC] = [card_row(5001)]
    first = await client.fetch_updates(None, 10)
    answered = "2026-11-24T10:00:05"
    delo.rows[wire.REPLY] = [reply_row(9001, answered, replied=answered, text="t")]
    reads_before = len(delo.reads)
    await client.fetch_updates(first.resume_from, 10)
    assert delo.read_entities()[reads_before:] == [wire.REPLY]


async def test_registered_card_needs_no_read_to_be_recognised(
    delo: FakeDelo, client: DeloClient
) -> None:
    ref = await client.register(make_appeal())
    delo.rows[wire.REPLY] = [reply_row(9001, "2026-11-24T10:00:00", resolution=5004,
                                       card=None)]
    reads_before = len(delo.reads)
    [update] = (await client.fetch_updates(None, 10)).updates
    assert update.external_id == ref.id and update.appeal_id == APPEAL_ID
    assert delo.read_entities()[reads_before:] == [wire.REPLY]


async def test_foreign_cursor_is_refused(client: DeloClient) -> None:
    with pytest.raises(Permanent, match="cursor"):
        await client.fetch_updates("2026-11-24T10:00:00", 10)


# ---- confirm_delivery -------------------------------------------------------------------


def closing_rows(delo: FakeDelo, *, control: int = 1, replied: bool = True) -> None:
    delo.rows[wire.DOC_RC] = [card_row(5001, control=control)]
    delo.rows[wire.RESOLUTION] = [{"ISN_RESOLUTION": 7001, "ISN_REF_DOC": 5001,
                                   "CONTROL_STATE": control}]
    delo.rows[wire.REPLY] = [reply_row(9001, "2026-11-24T10:00:00",
                                       replied="2026-11-24T10:00:00" if replied else None,
                                       text="Ответ" if replied else None)]


async def test_confirmed_delivery_removes_control(delo: FakeDelo, client: DeloClient) -> None:
    closing_rows(delo)
    await client.confirm_delivery("5001", DeliveryChannel.PHONE,
                                  datetime(2026, 11, 25, 8, 0, tzinfo=UTC), comment="Дозвонились")
    [operations] = delo.batches
    assert [(o.method, o.uri) for o in operations] == [
        ("MERGE", "RESOLUTION(7001)"), ("MERGE", "DOC_RC(5001)")]
    resolution, card = (body_of(o) for o in operations)
    assert resolution["CONTROL_STATE"] == 0 and card == {"CONTROL_STATE": 0}
    assert resolution["RESUME"] == ("Ответ доведён до заявителя по телефону 25.11.2026. "
                                    "Дозвонились")


async def test_confirming_again_writes_nothing(delo: FakeDelo, client: DeloClient) -> None:
    closing_rows(delo, control=0)
    await client.confirm_delivery("5001", DeliveryChannel.EMAIL, datetime.now(UTC))
    assert delo.batches == []


async def test_control_stays_while_no_answer_is_registered(
    delo: FakeDelo, client: DeloClient
) -> None:
    closing_rows(delo, replied=False)
    with pytest.raises(Permanent, match=r"2\.8\.11"):
        await client.confirm_delivery("5001", DeliveryChannel.PHONE, datetime.now(UTC))
    assert delo.batches == []


async def test_lost_answer_to_closing_is_ambiguous(delo: FakeDelo, client: DeloClient) -> None:
    closing_rows(delo)
    delo.batch_outcomes.append(httpx.ReadTimeout("timed out"))
    with pytest.raises(Ambiguous):
        await client.confirm_delivery("5001", DeliveryChannel.POST, datetime.now(UTC))


async def test_closing_a_card_that_is_not_there_is_permanent(
    delo: FakeDelo, client: DeloClient
) -> None:
    with pytest.raises(Permanent, match="not in Дело"):
        await client.confirm_delivery("5001", DeliveryChannel.HAND, datetime.now(UTC))
    with pytest.raises(Permanent, match="not an ISN_DOC"):
        await client.confirm_delivery("ПОС-1", DeliveryChannel.HAND, datetime.now(UTC))


# ---- wire pieces ------------------------------------------------------------------------


def test_batch_framing_round_trips() -> None:
    operations = (EmbeddedRequest.json("POST", "DOC_RC", {"ANNOTAT": "я\r\nты"}),
                  EmbeddedRequest("MERGE", "RESOLUTION(7)"))
    body, content_type = encode_requests([BatchUnit(True, operations)])
    [unit] = decode_requests(body, content_type)
    assert unit.changeset and [(m.method, m.uri) for m in unit.messages] == [
        ("POST", "DOC_RC"), ("MERGE", "RESOLUTION(7)")]
    assert json.loads(unit.messages[0].body) == {"ANNOTAT": "я\r\nты"}
    answers = [BatchUnit(True, (created(-1, 5), EmbeddedResponse(204))),
               BatchUnit(False, (EmbeddedResponse(400, b"{}"),))]
    body, content_type = encode_responses(answers)
    decoded = decode_responses(body.replace(b"\r\n", b"\n"), content_type)
    assert [(u.changeset, [m.status for m in u.messages]) for u in decoded] == [
        (True, [201, 204]), (False, [400])]
    assert decoded[0].messages[0].json() == {"TempISN": -1, "FixedISN": 5}


def test_marker_is_found_only_whole() -> None:
    appeal_id = str(uuid.uuid4())
    assert wire.appeal_id_in(f"{wire.appeal_marker(appeal_id)} текст") == appeal_id
    assert wire.appeal_id_in("[gw:abc] текст") is None
    assert wire.appeal_id_in(None) is None


def test_password_is_not_in_the_repr() -> None:
    assert "s3cret" not in repr(DeloClient(BASE, "gateway", "s3cret-pass"))
