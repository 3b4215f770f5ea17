"""Whatever an operator's software sends, the intake API answers it without a 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import OPERATOR, RunningApi, running_api, valid_call

CALLS = "/api/v1/calls"
# Everything a well-behaved answer may be; 500 (and anything else) is a bug.
EXPECTED = {200, 201, 401, 403, 409, 413, 422}

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "\x00", "2026-11-23T09:15:00+03:00", "0001-01-01T00:00:00+14:00",
                       "9999-12-31T23:59:59-14:00", "1970-01-01T00:00:00Z", "Отопление",
                       "phone", "email", "post", "urgent", "122", "+79001234567",
                       "8 900 123-45-67", "a@b.ru", "null", "true"])
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
bodies = st.one_of(
    mutated_calls().map(lambda call: json.dumps(call, ensure_ascii=False).encode()),
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
