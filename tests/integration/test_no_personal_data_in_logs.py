"""152-ФЗ: whatever happens to a call, the applicant's personal data never reaches the logs."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from gateway.logs import configure_logging
from tests.conftest import OPERATOR, RunningApi, StartApi, valid_call

CALLS = "/api/v1/calls"

# The applicant of valid_call(), in every spelling that might slip into a log line.
PERSONAL = [
    "Пряников", "Всеволод", "Аркадьевич",
    "8 917 555-12-34", "+79175551234", "79175551234", "9175551234", "555-12-34", "5551234",
    "vsevolod.pryanikov", "pryanikov@example", "@example.ru",
    "432017", "Кролюницкого", "д. 17, кв. 42",
    "Гончарова, 38", "Гончарова",
    "нет отопления", "батареи холодные",
    "Иванова",  # the operator is a person too
]


@pytest.fixture
def captured(restore_logging: None) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("debug", stream=stream)
    yield stream


@pytest.fixture
async def api(start_api: StartApi, migrated_sqlite_url: str, captured: io.StringIO) -> RunningApi:
    return await start_api(migrated_sqlite_url)


async def post(api: RunningApi, body: Any, headers: dict[str, str] | None = None) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    response = await api.client.post(
        CALLS, data=data,
        headers={**OPERATOR, "Content-Type": "application/json", **(headers or {})})
    await response.read()
    return response.status


def assert_no_personal_data(log: str) -> None:
    assert log.strip(), "nothing was logged: the capture is not working"
    for value in PERSONAL:
        assert value not in log, f"{value!r} reached the logs"
    for line in log.splitlines():
        json.loads(line)  # one JSON object a line


async def test_no_personal_data_in_the_logs_of_a_day_of_calls(
    api: RunningApi, captured: io.StringIO
) -> None:
    call = valid_call()
    accepted = await api.client.post(
        CALLS, json=call, headers={**OPERATOR, "X-Request-Id": "req-accept"})
    appeal_id = (await accepted.json())["id"]
    anonymous = valid_call(journal_id="KRS-2026-000124")
    anonymous["applicant"] = {**call["applicant"], "last_name": "", "first_name": ""}
    bad_phone = valid_call(journal_id="KRS-2026-000125")
    bad_phone["applicant"] = {**call["applicant"], "phone": "8 917 555-12"}
    bad_email = valid_call(journal_id="KRS-2026-000126")
    bad_email["applicant"] = {**call["applicant"], "email": "vsevolod.pryanikov@@example.ru"}

    statuses = [
        accepted.status,
        await post(api, call),  # duplicate
        await post(api, call, {"Idempotency-Key": "Пряников 8 917 555-12-34"}),
        await post(api, valid_call(summary="нет отопления, Пряников, 8 917 555-12-34")),
        await post(api, anonymous),
        await post(api, bad_phone),
        await post(api, bad_email),
        await post(api, valid_call(journal_id="KRS-2026-000127", topic="Пряников")),
        await post(api, valid_call(journal_id="KRS-2026-000128", received_at="Пряников")),
        await post(api, json.dumps(call, ensure_ascii=False).encode()[:-30]),  # malformed
        await post(api, json.dumps([call], ensure_ascii=False).encode()),
        await post(api, valid_call(journal_id="KRS-2026-000129", extra=call["applicant"])),
    ]
    read = await api.client.get(f"{CALLS}/{appeal_id}", headers=OPERATOR)
    listed = await api.client.get(CALLS, headers=OPERATOR)
    status = await api.client.get("/status", headers={"Authorization": "Bearer ad"})

    assert statuses == [201, 200, 200, 409, 422, 422, 422, 422, 422, 422, 422, 422]
    assert (read.status, listed.status, status.status) == (200, 200, 200)
    assert "Пряников" in await read.text()  # the API shows it to the operator...
    log = captured.getvalue()
    assert_no_personal_data(log)  # ...the logs never do
    assert appeal_id in log
    assert "req-accept" in log


async def test_no_personal_data_in_the_logs_when_the_database_fails(
    api: RunningApi, captured: io.StringIO
) -> None:
    async with api.gateway.engine.begin() as conn:
        await conn.execute(text(
            "CREATE TRIGGER refuse_appeals BEFORE INSERT ON appeals "
            "BEGIN SELECT RAISE(ABORT, 'the disk is on fire'); END"))

    status = await post(api, valid_call())

    assert status == 500
    log = captured.getvalue()
    assert "http.unhandled" in log
    assert_no_personal_data(log)
