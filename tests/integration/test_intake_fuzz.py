"""Whatever an operator's software sends, the intake API answers it without a 500."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import zlib
from collections.abc import Iterator
from datetime import timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN, FIXED_NOW, OPERATOR, RunningApi, running_api, valid_call
from tests.integration import raw_http

CALLS = "/api/v1/calls"
# Everything a well-behaved answer may be; 500 (and anything else) is a bug.
EXPECTED = {200, 201, 401, 403, 409, 413, 422}

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "\x00", "2026-11-23T09:15:00+03:00", "0001-01-01T00:00:00+14:00",
                       "9999-12-31T23:59:59-14:00", "1970-01-01T00:00:00Z", "Отопление",
                       "phone", "email", "post", "urgent", "122", "+79001234567",
                       "8 900 123-45-67", "a@b.ru", "null", "true",
                       # invisible and blank: a name of these is no name
                       "\u200b", "\ufeff", "\u200d\u200c", " \u2060 ", "\u00ad", "\u202e",
                       "\ud800", "\udc80x", "0001-01-01T00:00:00+14:00", "2100-01-01T00:00:00Z"])
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
aware_times = st.builds(
    lambda moment, minutes: moment.replace(
        tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
    st.datetimes(),
    st.integers(min_value=-14 * 60 + 1, max_value=14 * 60 - 1),
)
FIELDS = list(valid_call())
APPLICANT_FIELDS = list(valid_call()["applicant"])


@st.composite
def mutated_calls(draw: st.DrawFn) -> dict[str, Any]:
    """A valid call with some fields replaced by random JSON, deleted, or added."""
    call = valid_call(journal_id=draw(st.sampled_from(["KRS-1", "KRS-2", "KRS-3"])))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        if draw(st.booleans()):
            call[name] = draw(json_values)
        else:
            del call[name]
    if isinstance(call.get("applicant"), dict):
        for name in draw(st.lists(st.sampled_from(APPLICANT_FIELDS), max_size=3, unique=True)):
            if draw(st.booleans()):
                call["applicant"][name] = draw(json_values)
            else:
                call["applicant"].pop(name, None)
    if draw(st.booleans()):
        call[draw(st.text(max_size=10))] = draw(json_values)
    if draw(st.booleans()):
        call["received_at"] = draw(aware_times)
    return call


header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=210)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Idempotency-Key": st.one_of(header_values, st.sampled_from(["k1", "k2", " "])),
        "X-Request-Id": header_values,
        "Content-Type": st.sampled_from(["application/json", "text/plain", "", "x/y"]),
    },
)
def encoded(value: Any) -> bytes:
    """UTF-8 JSON as operators' software writes it; \\u escapes where a lone surrogate
    (valid in JSON, not in UTF-8) must get through."""
    try:
        return json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(value).encode()


bodies = st.one_of(
    mutated_calls().map(encoded),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=200),
)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def api(
    loop: asyncio.AbstractEventLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    """One gateway on one SQLite file for every example: repeats and conflicts pile up too."""
    from gateway.storage.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fuzz') / 'gateway.db'}"
    upgrade(url)
    running = running_api(url)
    started = loop.run_until_complete(running.__aenter__())
    yield started
    loop.run_until_complete(running.__aexit__(None, None, None))


def answer(loop: asyncio.AbstractEventLoop, api: RunningApi, method: str, path: str,
           data: bytes | None, extra: dict[str, str]) -> tuple[int, str]:
    async def go() -> tuple[int, str]:
        response = await api.client.request(method, path, data=data,
                                            headers={**OPERATOR, **extra})
        return response.status, await response.text()

    return loop.run_until_complete(go())


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=bodies, extra=headers)
def test_random_bodies_never_give_a_500(
    loop: asyncio.AbstractEventLoop, api: RunningApi, body: bytes, extra: dict[str, str]
) -> None:
    status, text = answer(loop, api, "POST", CALLS, body, extra)

    assert status in EXPECTED, (status, text)
    error = json.loads(text).get("error")
    if status >= 400:
        assert error["code"] and error["message"]


query_values = st.text(max_size=30)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    params=st.dictionaries(
        st.sampled_from(["status", "updated_since", "limit", "cursor", "overdue", "other"]),
        query_values | aware_times, max_size=4),
    appeal_id=st.text(max_size=40),
)
def test_random_reads_never_give_a_500(
    loop: asyncio.AbstractEventLoop, api: RunningApi, params: dict[str, str], appeal_id: str
) -> None:
    async def go() -> list[int]:
        listed = await api.client.get(CALLS, params=params, headers=OPERATOR)
        one = await api.client.get(f"{CALLS}/{appeal_id.replace('/', '_')}", headers=OPERATOR)
        return [listed.status, one.status]

    for status in loop.run_until_complete(go()):
        assert status in {200, 404, 405, 422}, status


# --- what a client library would not send: raw bytes in headers, broken encodings -----------

header_bytes = st.binary(max_size=60).map(
    lambda raw: raw.replace(b"\r", b"").replace(b"\n", b""))


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(key=header_bytes, request_id=header_bytes, journal=st.sampled_from(["KRS-7", "KRS-8"]))
def test_raw_header_bytes_never_give_a_500(
    loop: asyncio.AbstractEventLoop, api: RunningApi, key: bytes, request_id: bytes,
    journal: str,
) -> None:
    data = raw_http.request_bytes(
        "POST", CALLS,
        {"Authorization": b"Bearer op", "Content-Type": b"application/json",
         "Idempotency-Key": key, "X-Request-Id": request_id},
        json.dumps(valid_call(journal_id=journal)).encode())
    server = api.client.server

    status, _ = loop.run_until_complete(raw_http.exchange(str(server.host), server.port, data))

    # 400: the HTTP parser refused the header before the gateway saw it.
    assert status in EXPECTED | {400}, status


def nested(depth: int, opening: str) -> bytes:
    closing = {"[": "]", "{\"a\":": "}"}[opening]
    return (opening * depth + ("1" if opening != "[" else "") + closing * depth).encode()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(depth=st.integers(min_value=1, max_value=20_000), opening=st.sampled_from(["[", '{"a":']),
       inside=st.booleans())
def test_json_nested_at_any_depth_never_gives_a_500(
    loop: asyncio.AbstractEventLoop, api: RunningApi, depth: int, opening: str, inside: bool,
) -> None:
    body = nested(depth, opening)
    if inside:
        body = b'{"summary": ' + body + b"}"

    status, text = answer(loop, api, "POST", CALLS, body, {"Content-Type": "application/json"})

    assert status in EXPECTED, (status, text)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(encoding=st.sampled_from(["deflate", "gzip"]), payload=bodies,
       mangle=st.sampled_from(["none", "truncate", "garbage"]))
def test_compressed_bodies_never_give_a_500(
    loop: asyncio.AbstractEventLoop, api: RunningApi, encoding: str, payload: bytes, mangle: str,
) -> None:
    packed = zlib.compress(payload) if encoding == "deflate" else gzip.compress(payload)
    if mangle == "truncate":
        packed = packed[:max(1, len(packed) // 2)]
    elif mangle == "garbage":
        packed = payload or b"x"

    status, text = answer(loop, api, "POST", CALLS, packed,
                          {"Content-Type": "application/json", "Content-Encoding": encoding})

    # 400: the HTTP parser found the stream broken at its end, before the gateway read it.
    assert status in EXPECTED | {400}, (status, text)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=json_values, depth=st.integers(min_value=0, max_value=2000))
def test_any_cursor_never_gives_a_500(
    loop: asyncio.AbstractEventLoop, api: RunningApi, value: Any, depth: int,
) -> None:
    raw = b"[" * depth + json.dumps(value).encode() + b"]" * depth
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")

    status, text = answer(loop, api, "GET", f"{CALLS}?cursor={cursor}", None, {})

    assert status in {200, 422}, (status, text)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(message_id=st.integers(min_value=-(2**80), max_value=2**80))
def test_any_outbox_id_never_gives_a_500(
    loop: asyncio.AbstractEventLoop, api: RunningApi, message_id: int,
) -> None:
    async def go() -> list[int]:
        retry = await api.client.post(f"/api/v1/outbox/{message_id}/retry", headers=ADMIN)
        listed = await api.client.get(f"/api/v1/outbox?after_id={message_id}", headers=ADMIN)
        return [retry.status, listed.status]

    for status in loop.run_until_complete(go()):
        assert status in {200, 404, 409, 422}, status


edge_times = st.sampled_from([
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z", "2100-01-01T00:00:00+03:00", "1990-01-01T00:00:00Z"])
times = st.one_of(edge_times, aware_times, json_scalars)


async def answer_ready_again(api: RunningApi, appeal_id: str) -> None:
    """The appeal back to "answer ready", with no tries and no delivery: each example
    reaches the code that reads the times."""
    from sqlalchemy import delete, update

    from gateway.storage.tables import appeals, deliveries

    async with api.gateway.engine.begin() as conn:
        await conn.execute(delete(deliveries).where(deliveries.c.appeal_id == appeal_id))
        await conn.execute(update(appeals).where(appeals.c.id == appeal_id).values(
            status="answer_ready", answer_text="Ответ", answer_ready_at=FIXED_NOW,
            callback_attempts=0, next_callback_at=None, needs_supervisor=False,
            delivered_at=None, delivery_channel=None))


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(at=times, delivered_at=times, outcome=st.sampled_from(["busy", "no_answer", "x"]),
       channel=st.sampled_from(["phone", "hand", "pigeon"]))
def test_attempts_and_deliveries_at_any_time_never_give_a_500(
    loop: asyncio.AbstractEventLoop, api: RunningApi, at: Any, delivered_at: Any, outcome: str,
    channel: str,
) -> None:
    async def go() -> list[int]:
        created = await api.client.post(CALLS, json=valid_call(journal_id="KRS-times"),
                                        headers=OPERATOR)
        appeal_id = (await created.json())["id"]
        await answer_ready_again(api, appeal_id)
        tried = await api.client.post(f"{CALLS}/{appeal_id}/attempts", headers=OPERATOR,
                                      json={"channel": "phone", "outcome": outcome, "at": at})
        delivered = await api.client.post(
            f"{CALLS}/{appeal_id}/delivery", headers=OPERATOR,
            json={"channel": channel, "delivered_at": delivered_at})
        return [created.status, tried.status, delivered.status]

    for status in loop.run_until_complete(go()):
        assert status in EXPECTED, status
