"""Reading the phone exchange's CDR files: Asterisk Master.csv and FreeSWITCH cdr_csv."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adapters.pbx.cdr import CdrFormatError, read_cdr
from gateway.services.reports import missed_calls_to_call_back

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cdr"
MOSCOW = ZoneInfo("Europe/Moscow")


def test_asterisk_master_csv_is_read_in_its_documented_column_order() -> None:
    cdr = read_cdr(FIXTURES / "Master.csv", hotline="122", zone=MOSCOW)
    assert cdr.source == "asterisk" and cdr.bad_rows == []
    assert len(cdr.calls) == 6
    first = cdr.calls[0]
    assert first.uniqueid == "asterisk:1763877670.1"
    assert first.direction == "in" and first.answered and first.billsec == 265
    assert first.caller == "89171234567"
    # Local PBX time, stored in UTC.
    assert first.started_at == datetime(2026, 11, 23, 6, 1, 10, tzinfo=UTC)
    assert [c.direction for c in cdr.calls] == ["in", "in", "in", "out", "out", "in"]
    assert [c.answered for c in cdr.calls] == [True, False, False, True, False, True]


def test_freeswitch_cdr_csv_default_template_is_read() -> None:
    cdr = read_cdr(FIXTURES / "freeswitch.csv", hotline="122", zone=MOSCOW)
    assert cdr.source == "freeswitch" and cdr.bad_rows == []
    assert [(c.direction, c.answered) for c in cdr.calls] == [
        ("in", True), ("in", False), ("out", True)]
    assert cdr.calls[1].uniqueid == "freeswitch:a1b2c3d4-0000-4000-8000-000000000002"


def test_a_broken_row_is_reported_by_line_and_the_rest_is_read() -> None:
    lines = (FIXTURES / "Master.csv").read_text(encoding="utf-8").splitlines()
    lines.insert(2, '"","1","2","from-trunk","x"')  # line 3: five columns
    lines.insert(4, lines[0].replace("2026-11-23 09:01:10", "23/11/2026"))  # line 5: bad date
    cdr = read_cdr("\n".join(lines).encode(), hotline="122", zone=MOSCOW)
    assert [(b.line, b.reason.split(";")[0]) for b in cdr.bad_rows] == [
        (3, "5 columns"), (5, "start time is not YYYY-MM-DD HH:MM:SS")]
    assert len(cdr.calls) == 6
    # The reason never quotes the row: it holds phone numbers.
    assert all("8917" not in b.reason for b in cdr.bad_rows)


def test_windows_1251_and_semicolons_are_understood() -> None:
    rows = list(csv.reader(io.StringIO((FIXTURES / "Master.csv").read_text(encoding="utf-8"))))
    out = io.StringIO()
    csv.writer(out, delimiter=";", quoting=csv.QUOTE_ALL).writerows(rows)
    text = out.getvalue()
    cdr = read_cdr(text.encode("cp1251"), hotline="122", zone=MOSCOW)
    assert cdr.encoding == "cp1251" and cdr.delimiter == ";"
    assert cdr.bad_rows == [] and len(cdr.calls) == 6


def test_a_header_row_is_read_by_name_and_unknown_columns_are_reported() -> None:
    text = ("start,src,dst,dcontext,billsec,disposition,uniqueid,did,recordingfile\n"
            "2026-11-23 09:00:00,89170000001,122,from-trunk,0,NO ANSWER,u1,122,\n"
            "2026-11-23 09:05:00,89170000002,122,from-trunk,61,ANSWERED,u2,122,rec.wav\n")
    cdr = read_cdr(text.encode(), hotline="122", zone=MOSCOW)
    assert cdr.ignored_columns == ["did", "recordingfile"]
    assert [(c.uniqueid, c.answered) for c in cdr.calls] == [
        ("asterisk:u1", False), ("asterisk:u2", True)]


def test_a_header_without_the_needed_columns_refuses_the_file() -> None:
    with pytest.raises(CdrFormatError, match="disposition"):
        read_cdr(b"start,src,dst,dcontext,billsec\n", hotline="122", zone=MOSCOW)


def test_missed_calls_are_called_back_once_per_number_per_day() -> None:
    cdr = read_cdr(FIXTURES / "Master.csv", hotline="122", zone=MOSCOW)
    chosen = missed_calls_to_call_back(cdr.calls, MOSCOW)
    # 89172223344 missed twice on the 23rd (NO ANSWER, BUSY): one callback, the first.
    assert [c.uniqueid for c in chosen] == ["asterisk:1763878200.3"]
