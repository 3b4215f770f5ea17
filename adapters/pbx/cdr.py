"""Reads the phone exchange's CDR CSV files: Asterisk's Master.csv and FreeSWITCH's cdr_csv.

Asterisk's cdr_csv writes no header, in a fixed order: accountcode, src, dst, dcontext,
clid, channel, dstchannel, lastapp, lastdata, start, answer, end, duration, billsec,
disposition, amaflags, then uniqueid and userfield when `loguniqueid` / `loguserfield` are
on (16 to 18 columns). FreeSWITCH's mod_cdr_csv writes its "example" template, also
without a header: caller_id_name, caller_id_number, destination_number, context,
start_stamp, answer_stamp, end_stamp, duration, billsec, hangup_cause, uuid, bleg_uuid,
accountcode, read_codec, write_codec. A file that starts with a header row (a custom
template, an export from a PBX web console) is read by the names in it; columns we do not
know are reported and ignored.

Files come edited, re-saved and converted: UTF-8 (with or without BOM) or Windows-1251,
separated by commas, semicolons or tabs. A row that cannot be read is reported by its line
number and reason (never its content: it holds phone numbers) and the rest is read.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from adapters.errors import AdapterError
from gateway.domain.reporting import PbxCall

ASTERISK_COLUMNS = ("accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel",
                    "lastapp", "lastdata", "start", "answer", "end", "duration", "billsec",
                    "disposition", "amaflags", "uniqueid", "userfield")
FREESWITCH_COLUMNS = ("caller_id_name", "caller_id_number", "destination_number", "context",
                      "start_stamp", "answer_stamp", "end_stamp", "duration", "billsec",
                      "hangup_cause", "uuid", "bleg_uuid", "accountcode", "read_codec",
                      "write_codec")
_ASTERISK_NEEDS = ("src", "dst", "dcontext", "start", "billsec", "disposition")
_FREESWITCH_NEEDS = ("caller_id_number", "destination_number", "context", "start_stamp",
                     "answer_stamp", "billsec", "hangup_cause", "uuid")
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M")


class CdrFormatError(AdapterError, ValueError):
    """The file as a whole cannot be read (not a CDR file, no usable columns)."""


@dataclass(frozen=True, slots=True)
class Directions:
    """Which way a call went: by the dialplan context, else by the numbers' length.

    Defaults name the usual contexts of FreePBX-style Asterisk dialplans and FreeSWITCH's
    stock configuration (`public` inbound, `default` the internal users).
    """

    inbound_contexts: frozenset[str] = frozenset(
        {"from-trunk", "from-pstn", "from-external", "ext-did", "from-did-direct", "public"})
    outbound_contexts: frozenset[str] = frozenset(
        {"from-internal", "outbound", "outbound-allroutes", "default"})
    extension_max_digits: int = 4  # an operator's extension; longer is an outside number

    def of(self, context: str, src: str, dst: str) -> str:
        if context in self.inbound_contexts:
            return "in"
        if context in self.outbound_contexts:
            return "in" if self._outside(src) and not self._outside(dst) else "out"
        if self._outside(src):
            return "in"
        if self._outside(dst):
            return "out"
        return "internal"

    def _outside(self, number: str) -> bool:
        digits = sum(ch.isdigit() for ch in number)
        return digits > self.extension_max_digits


@dataclass(frozen=True, slots=True)
class BadCdrRow:
    line: int
    reason: str  # never the row's content


@dataclass
class CdrFile:
    source: str  # asterisk | freeswitch
    encoding: str
    delimiter: str
    calls: list[PbxCall] = field(default_factory=list)
    bad_rows: list[BadCdrRow] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)


def decode(raw: bytes) -> tuple[str, str]:
    """The text and the encoding it was in: UTF-8 (BOM or not), else Windows-1251."""
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("cp1251"), "cp1251"


def _delimiter(text: str) -> str:
    sample = "\n".join(text.splitlines()[:20])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _is_header(cells: Sequence[str]) -> bool:
    known = set(ASTERISK_COLUMNS) | set(FREESWITCH_COLUMNS)
    return sum(c.strip().lower() in known for c in cells) >= 3


def read_cdr(source: str | Path | bytes, *, hotline: str, zone: tzinfo,
             directions: Directions | None = None, kind: str = "auto",
             times_in_utc: bool = False) -> CdrFile:
    """Every readable line as a `PbxCall`; unreadable lines in `bad_rows` by number."""
    raw = source if isinstance(source, bytes) else Path(source).read_bytes()
    text, encoding = decode(raw)
    delimiter = _delimiter(text)
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    directions = directions or Directions()
    first = next((i for i, r in enumerate(rows) if any(c.strip() for c in r)), None)
    if first is None:
        raise CdrFormatError("the file has no rows")
    ignored: list[str] = []
    if _is_header(rows[first]):
        names = [c.strip().lower() for c in rows[first]]
        columns = {name: i for i, name in enumerate(names) if name}
        fs = "uuid" in columns or "start_stamp" in columns
        detected = "freeswitch" if fs else "asterisk"
        vocabulary = FREESWITCH_COLUMNS if fs else ASTERISK_COLUMNS
        ignored = [n for n in names if n and n not in vocabulary]
        needs = _FREESWITCH_NEEDS if fs else _ASTERISK_NEEDS
        missing = [n for n in needs if n not in columns]
        if missing:
            raise CdrFormatError(f"the header lacks the column(s) {', '.join(missing)}")
        width = None
        body_start = first + 1
    else:
        detected = kind if kind != "auto" else _guess(rows[first])
        vocabulary = FREESWITCH_COLUMNS if detected == "freeswitch" else ASTERISK_COLUMNS
        columns = {name: i for i, name in enumerate(vocabulary)}
        width = len(vocabulary)
        body_start = first
    result = CdrFile(detected, encoding, delimiter, ignored_columns=ignored)
    for index in range(body_start, len(rows)):
        cells = rows[index]
        line = index + 1
        if not any(c.strip() for c in cells):
            continue
        try:
            result.calls.append(_row(detected, cells, columns, width, hotline=hotline,
                                     zone=zone, directions=directions,
                                     times_in_utc=times_in_utc))
        except _BadRow as exc:
            result.bad_rows.append(BadCdrRow(line, str(exc)))
    return result


def _guess(cells: Sequence[str]) -> str:
    """Header-less: Asterisk has 16–18 columns, FreeSWITCH's template 15."""
    return "freeswitch" if len(cells) == len(FREESWITCH_COLUMNS) else "asterisk"


class _BadRow(ValueError):
    pass


def _row(kind: str, cells: Sequence[str], columns: dict[str, int], width: int | None, *,
         hotline: str, zone: tzinfo, directions: Directions, times_in_utc: bool) -> PbxCall:
    if width is not None:
        low = 16 if kind == "asterisk" else width
        if not low <= len(cells) <= width:
            raise _BadRow(f"{len(cells)} columns; a {kind} CDR line has "
                          f"{low if low == width else f'{low}–{width}'}")
    elif len(cells) < len(columns):
        raise _BadRow(f"{len(cells)} columns; the header has {len(columns)}")

    def get(name: str) -> str:
        i = columns.get(name)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    if kind == "freeswitch":
        src, dst, context = get("caller_id_number"), get("destination_number"), get("context")
        start, disposition = get("start_stamp"), get("hangup_cause").upper()
        uniqueid = get("uuid")
        answered_at = get("answer_stamp")
    else:
        src, dst, context = get("src"), get("dst"), get("dcontext")
        start, disposition = get("start"), get("disposition").upper()
        uniqueid = get("uniqueid")
        answered_at = ""
    started = _moment(start, zone, times_in_utc)
    try:
        billsec = int(float(get("billsec") or "0"))
    except ValueError:
        raise _BadRow("billsec is not a number") from None
    if billsec < 0:
        raise _BadRow("billsec is negative")
    if kind == "freeswitch":
        answered = bool(answered_at) and billsec > 0
    else:
        if not disposition:
            raise _BadRow("no disposition")
        answered = disposition == "ANSWERED"
    if not uniqueid:
        # Master.csv without loguniqueid: the line itself is its identity.
        digest = hashlib.sha256("\x1f".join(cells).encode()).hexdigest()[:40]
        uniqueid = f"line-{digest}"
    return PbxCall(uniqueid=f"{kind}:{uniqueid}"[:150], hotline=hotline,
                   direction=directions.of(context, src, dst), caller=src or None,
                   started_at=started, answered=answered, billsec=billsec,
                   disposition=disposition[:32] or "UNKNOWN", source=kind)


def _moment(value: str, zone: tzinfo, in_utc: bool) -> datetime:
    if not value:
        raise _BadRow("no start time")
    for fmt in _TIME_FORMATS:
        try:
            naive = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return naive.replace(tzinfo=UTC if in_utc else zone).astimezone(UTC)
    if value.isdigit():  # epoch seconds (FreeSWITCH's start_epoch in custom templates)
        return datetime.fromtimestamp(int(value), UTC)
    raise _BadRow("start time is not YYYY-MM-DD HH:MM:SS")
