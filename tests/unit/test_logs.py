"""The log masker: personal data (152-ФЗ) never reaches a log line, identifiers still do."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from gateway.logs import MASK, configure_logging

APPEAL_ID = "5f0c7c1e-3a57-4a59-9b55-2b1f0e0c9a01"
# A uuid that is mostly digits: it must not be taken for a phone number.
DIGIT_HEAVY_ID = "12345678-9012-4345-8678-901234567890"


@pytest.fixture
def stream(restore_logging: None) -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging("debug", stream=out)
    yield out


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def logged(stream: io.StringIO, event: str, **fields: Any) -> dict[str, Any]:
    structlog.get_logger("test").info(event, **fields)
    return lines(stream)[-1]


@pytest.mark.parametrize(
    "phone",
    ["+79001234567", "8 900 123-45-67", "+7 (900) 123 45 67", "89001234567", "9001234567",
     "8-900-123-45-67"],
)
def test_phone_numbers_are_masked_in_any_spelling(stream: io.StringIO, phone: str) -> None:
    line = logged(stream, "callback", note=f"перезвонить по номеру {phone}.")

    assert "перезвонить по номеру" in line["note"]
    assert phone not in json.dumps(line, ensure_ascii=False)
    assert "1234567" not in line["note"] and "123-45-67" not in line["note"]


def test_email_addresses_are_masked(stream: io.StringIO) -> None:
    line = logged(stream, "mail", note="answer to ivan.petrov+hl@mail.example.ru sent")

    assert "ivan.petrov" not in line["note"]
    assert "mail.example.ru" not in line["note"]
    assert MASK in line["note"]


@pytest.mark.parametrize(
    "name",
    ["Петров Иван Сергеевич", "Иванова Анна Сергеевна", "Римский-Корсаков Николай Андреевич",
     "Петров И.С.", "Петрова И. С.", "Кузнецов И.С"],
)
def test_russian_names_are_masked(stream: io.StringIO, name: str) -> None:
    line = logged(stream, "note", note=f"звонил {name}, просил перезвонить")

    surname = name.split()[0]
    assert surname not in line["note"]
    assert "просил перезвонить" in line["note"]


@pytest.mark.parametrize(
    ("address", "parts"),
    [
        ("г. Ульяновск, ул. Гончарова, 1", ["Ульяновск", "Гончарова", ", 1"]),
        ("ул. Ленина, д. 5, кв. 7", ["Ленина", "5", "7"]),
        ("пр-т Нариманова д. 12 кв. 3", ["Нариманова", "12"]),
        ("432017, г. Ульяновск, ул. Кролюницкого, д. 17, кв. 42",
         ["432017", "Ульяновск", "Кролюницкого", "17", "42"]),
    ],
)
def test_street_addresses_are_masked_whole(
    stream: io.StringIO, address: str, parts: list[str]
) -> None:
    line = logged(stream, "note", note=f"адрес: {address}")

    for part in parts:
        assert part not in line["note"], line["note"]
    assert not any(ch.isdigit() for ch in line["note"]), line["note"]


@pytest.mark.parametrize(
    "key",
    ["applicant", "phone", "email", "last_name", "first_name", "middle_name", "postal_address",
     "problem_address", "summary", "address", "operator", "answer_text", "token", "password"],
)
def test_personal_keys_are_masked_whole_whatever_they_hold(
    stream: io.StringIO, key: str
) -> None:
    line = logged(stream, "event", **{key: "plain words 42"})

    assert line[key] == MASK


def test_an_applicant_object_is_masked_whole(stream: io.StringIO) -> None:
    line = logged(stream, "event", applicant={"last_name": "Пряников", "phone": "+79175551234"})

    assert line["applicant"] == MASK
    assert "Пряников" not in json.dumps(line, ensure_ascii=False)


def test_nested_dicts_and_lists_are_masked(stream: io.StringIO) -> None:
    line = logged(
        stream, "batch",
        items=[
            {"appeal_id": APPEAL_ID, "contact": {"phone": "+79001234567", "kind": "mobile"}},
            "письмо на a@b.ru",
            ("кортеж", "Петров И.С."),
        ],
        detail={"deep": {"deeper": {"email": "x@y.ru", "count": 3}}},
    )
    text = json.dumps(line, ensure_ascii=False)

    assert "+79001234567" not in text
    assert "a@b.ru" not in text
    assert "Петров" not in text
    assert "x@y.ru" not in text
    assert line["items"][0]["appeal_id"] == APPEAL_ID
    assert line["items"][0]["contact"]["kind"] == "mobile"
    assert line["detail"]["deep"]["deeper"]["count"] == 3


@pytest.mark.parametrize("appeal_id", [APPEAL_ID, DIGIT_HEAVY_ID])
def test_an_appeal_id_is_not_masked(stream: io.StringIO, appeal_id: str) -> None:
    line = logged(stream, f"appeal {appeal_id} registered", appeal_id=appeal_id,
                  note=f"appeal {appeal_id} moved")

    assert line["appeal_id"] == appeal_id
    assert appeal_id in line["note"]
    assert appeal_id in line["event"]


@pytest.mark.parametrize("number", ["ПОС-2026-123456", "ПОС-2026-1234567890"])
def test_pos_numbers_are_not_masked(stream: io.StringIO, number: str) -> None:
    line = logged(stream, "pos.registered", external_number=number,
                  note=f"registered as {number}")

    assert line["external_number"] == number
    assert number in line["note"]


def test_journal_ids_timestamps_and_counts_are_not_masked(stream: io.StringIO) -> None:
    line = logged(stream, "call.accepted", journal_id="KRS-2026-000123",
                  at="2026-11-23T09:15:00+03:00", attempts=3, route="pos", hotline="122")

    assert line["journal_id"] == "KRS-2026-000123"
    assert line["at"] == "2026-11-23T09:15:00+03:00"
    assert (line["attempts"], line["route"], line["hotline"]) == (3, "pos", "122")


def test_the_event_text_itself_is_masked(stream: io.StringIO) -> None:
    line = logged(stream, "звонок от Петров Иван Сергеевич, +79001234567")

    assert "Петров" not in line["event"]
    assert "+79001234567" not in line["event"]


def test_standard_library_log_lines_are_masked_too(stream: io.StringIO) -> None:
    logging.getLogger("thirdparty").warning("could not mail ivan@example.ru at 8 900 123-45-67")

    line = lines(stream)[-1]
    assert "ivan@example.ru" not in line["event"]
    assert "123-45-67" not in line["event"]


def test_exception_text_is_masked(stream: io.StringIO) -> None:
    try:
        raise ValueError("bad applicant Петров И.С. phone +79001234567")
    except ValueError:
        structlog.get_logger("test").exception("failed")

    text = json.dumps(lines(stream)[-1], ensure_ascii=False)
    assert "ValueError" in text
    assert "Петров" not in text
    assert "+79001234567" not in text


def test_every_line_is_one_json_object_with_level_and_time(stream: io.StringIO) -> None:
    structlog.get_logger("test").info("first", n=1)
    structlog.get_logger("test").warning("second", n=2)

    first, second = lines(stream)[-2:]
    assert (first["event"], first["level"], first["n"]) == ("first", "info", 1)
    assert (second["event"], second["level"]) == ("second", "warning")
    assert "timestamp" in first


def test_bound_context_is_kept_and_masked(stream: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(request_id="req-1", appeal_id=APPEAL_ID,
                                           phone="+79001234567")
    try:
        line = logged(stream, "step")
    finally:
        structlog.contextvars.clear_contextvars()

    assert (line["request_id"], line["appeal_id"]) == ("req-1", APPEAL_ID)
    assert line["phone"] == MASK
