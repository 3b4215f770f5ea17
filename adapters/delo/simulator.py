"""A Дело-Web stand-in for demos and tests: the subset of CONTRACT.md, with faults on demand.

It serves session login, OData reads with `criteries`, `$top`, `$skip` and `$orderby`,
and `$batch` changesets that are applied all or nothing, validating what a real server
would refuse (unknown dictionaries, a missing card). Executors answer on a configurable
clock; test endpoints under `/_sim/` force an answer or an extension at once and count
cards per gateway appeal, so a test can prove that no call was registered twice.
Faults (5xx, 429 with Retry-After, latency, responses lost after the effect, rows
committed late with an UPD_DATE older than rows already served) come from a seedable RNG
so a failing run can be replayed.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import json
import operator
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, Field

from adapters.delo import wire
from adapters.delo.multipart import (
    BatchUnit,
    EmbeddedRequest,
    EmbeddedResponse,
    MultipartError,
    decode_requests,
    encode_responses,
)

Row = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SimDocGroup(BaseModel):
    DUE: str
    ISN_NODE: int
    CLASSIF_NAME: str
    RC_TYPE: int


class SimRubric(BaseModel):
    DUE: str
    RUBRIC_CODE: str
    CLASSIF_NAME: str


class SimDepartment(BaseModel):
    DUE: str
    CLASSIF_NAME: str
    SURNAME: str = ""
    DUTY: str = ""


def _default_docgroups() -> list[SimDocGroup]:
    return [
        SimDocGroup(DUE="0.1CP.", ISN_NODE=4001, CLASSIF_NAME="Обращения граждан", RC_TYPE=2),
        SimDocGroup(DUE="0.1CQ.", ISN_NODE=4002, CLASSIF_NAME="Входящие", RC_TYPE=1),
    ]


# The defaults mirror config/routing.toml (rubrics and departments of its «Дело» rules) and
# the ТОТК codes of config/topics.toml, so `gateway demo` registers out of the box.
_RUBRICS: Final = (
    ("0.2F10.", "ЖКХ-02", "Уборка снега и содержание территорий"),
    ("0.2F11.", "ИМУ-01", "Земля и имущество"),
    ("0.2F12.", "АРХ-01", "Градостроительство и архитектура"),
    ("0.2F13.", "ЖАЛ-01", "Жалобы на действия должностных лиц"),
    ("0.2F14.", "ПРМ-01", "Личный прием"),
    ("0.2F15.", "ОБР-01", "Рассмотрение обращений"),
    ("0.2F16.", "ФИН-01", "Народный бюджет"),
    ("0.2F17.", "ОРГ-01", "Поздравления, благодарности, приглашения"),
    ("0.2F20.", "0005.0005.0056.1149", "Оплата жилищно-коммунальных услуг"),
    ("0.2F21.", "0005.0005.0056.1156", "Перебои в теплоснабжении"),
)
_DEPARTMENTS: Final = (
    ("0.2EZ47.2EZ48.", "Управление документационного обеспечения и приема граждан"),
    ("0.2EZ47.2EZ48.2EZ50.", "Отдел обработки электронных и телефонных обращений граждан"),
    ("0.2EZ47.2EZ48.2EZ51.", "Отдел приема граждан"),
    ("0.2EZ47.2EZ49.", "Комитет жилищно-коммунального хозяйства и энергетики"),
    ("0.2EZ47.2EZ4A.", "Управление имущественных и земельных отношений"),
    ("0.2EZ47.2EZ4B.", "Управление архитектуры и градостроительства"),
    ("0.2EZ47.2EZ4C.", "Правовое управление"),
    ("0.2EZ47.2EZ4D.", "Финансовое управление"),
    ("0.2EZ47.2EZ4E.", "Отдел организационной работы"),
)


def _default_rubrics() -> list[SimRubric]:
    return [SimRubric(DUE=due, RUBRIC_CODE=code, CLASSIF_NAME=name)
            for due, code, name in _RUBRICS]


def _default_departments() -> list[SimDepartment]:
    return [SimDepartment(DUE=due, CLASSIF_NAME=name) for due, name in _DEPARTMENTS]


class DeloSimulatorSettings(BaseModel):
    """What the stand-in does; every fault is off by default."""

    username: str = "gateway"
    password: str = "gateway"  # noqa: S105 - the stand-in's demo account, not a secret
    timezone: str = "Europe/Moscow"  # Дело's naive timestamps are in this zone
    session_ttl_s: float = Field(default=1200.0, gt=0)
    expired_session: Literal["401", "redirect"] = "401"
    reply_after_s: float | None = Field(default=None, ge=0)  # None: executors never answer
    reply_text: str = "Служебная записка: вопрос рассмотрен, меры приняты."
    latency_s: float = Field(default=0.0, ge=0)  # each request waits up to this long
    error_rate: float = Field(default=0.0, ge=0, le=1)  # 500 before the effect
    throttle_rate: float = Field(default=0.0, ge=0, le=1)  # 429 before the effect
    retry_after_s: int = Field(default=1, ge=0)
    lost_response_rate: float = Field(default=0.0, ge=0, le=1)  # effect done, answer dropped
    # A late commit: the row changes now but its UPD_DATE lies `late_commit_s` in the past,
    # as a transaction that began then and committed after later rows were read.
    late_commit_rate: float = Field(default=0.0, ge=0, le=1)
    late_commit_s: float = Field(default=30.0, ge=0)
    seed: int | None = None
    docgroups: list[SimDocGroup] = Field(default_factory=_default_docgroups)
    rubrics: list[SimRubric] = Field(default_factory=_default_rubrics)
    departments: list[SimDepartment] = Field(default_factory=_default_departments)


# Keys of the entities the simulator serves, and which fields refer to which entity.
_KEYS: Final = {
    wire.CITIZEN: "ISN_CITIZEN", wire.DOC_RC: "ISN_DOC", wire.DOC_RUBRIC: "ISN_DOC_RUBRIC",
    wire.RESOLUTION: "ISN_RESOLUTION", wire.REPLY: "ISN_REPLY",
    wire.DOCGROUP_CL: "DUE", wire.RUBRIC_CL: "DUE", wire.DEPARTMENT: "DUE",
}
_WRITABLE: Final = (wire.CITIZEN, wire.DOC_RC, wire.DOC_RUBRIC, wire.RESOLUTION, wire.REPLY)
_ISN_REFS: Final = {
    "ISN_CITIZEN": wire.CITIZEN, "ISN_REF_DOC": wire.DOC_RC, "ISN_RESOLUTION": wire.RESOLUTION,
}
_DUE_REFS: Final = {
    (wire.DOC_RC, "DUE_DOCGROUP"): wire.DOCGROUP_CL,
    (wire.DOC_RUBRIC, "DUE_RUBRIC"): wire.RUBRIC_CL,
    (wire.RESOLUTION, "DUE_CONTROLLER"): wire.DEPARTMENT,
    (wire.REPLY, "DUE"): wire.DEPARTMENT,
}
_REQUIRED: Final = {
    wire.CITIZEN: ("CITIZEN_SURNAME",),
    wire.DOC_RC: ("DUE_DOCGROUP", "ISN_CITIZEN"),
    wire.DOC_RUBRIC: ("ISN_REF_DOC", "DUE_RUBRIC"),
    wire.RESOLUTION: ("ISN_REF_DOC", "DUE_CONTROLLER", "PLAN_DATE"),
    wire.REPLY: ("ISN_RESOLUTION", "DUE"),
}
_MERGE_URI: Final = re.compile(r"^([A-Z_]+)\((-?\d+)\)$")


class ChangesetRefused(Exception):
    """A changeset the server does not apply: status and an OData error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class DeloState:
    """The stand-in's data: dictionaries, cards, sessions, the executors' clock, counters."""

    def __init__(self, settings: DeloSimulatorSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.zone = ZoneInfo(settings.timezone)
        self.clock = clock
        self.tables: dict[str, dict[Any, Row]] = {name: {} for name in _KEYS}
        for group in settings.docgroups:
            self.tables[wire.DOCGROUP_CL][group.DUE] = group.model_dump()
        for rubric in settings.rubrics:
            self.tables[wire.RUBRIC_CL][rubric.DUE] = rubric.model_dump()
        for department in settings.departments:
            self.tables[wire.DEPARTMENT][department.DUE] = department.model_dump()
        self.sessions: dict[str, float] = {}
        self.counters: Counter[str] = Counter()
        self._next_isn = 1000
        self._free_num = 0
        self._last_stamp = ""
        self._late_rng = random.Random(None if settings.seed is None else settings.seed + 1)
        self._reply_clock: list[tuple[float, int]] = []  # (due, ISN_REPLY)

    # ---- sessions ---------------------------------------------------------------------

    def login(self, username: str, password: str) -> str | None:
        if (username, password) != (self.settings.username, self.settings.password):
            return None
        session_id = uuid.uuid4().hex
        self.sessions[session_id] = self.clock() + self.settings.session_ttl_s
        self.counters["logins"] += 1
        return session_id

    def session_valid(self, session_id: str | None) -> bool:
        expires = self.sessions.get(session_id or "")
        return expires is not None and expires > self.clock()

    def expire_sessions(self) -> None:
        self.sessions.clear()

    # ---- time -------------------------------------------------------------------------

    def stamp(self) -> str:
        """Now as Дело writes UPD_DATE (whole seconds), never earlier than the last one.

        Except for a late commit (a fault): then the stamp lies in the past, behind rows
        a poller may already have read.
        """
        now = datetime.now(self.zone)
        late = self.settings.late_commit_rate and (
            self._late_rng.random() < self.settings.late_commit_rate)
        if late:
            self.counters["late_commits"] += 1
            return wire.delo_datetime(now - timedelta(seconds=self.settings.late_commit_s))
        self._last_stamp = max(wire.delo_datetime(now), self._last_stamp)
        return self._last_stamp

    def advance(self) -> None:
        """Executors whose time has come register their answer memo [002: 2.8.10]."""
        now = self.clock()
        while self._reply_clock and self._reply_clock[0][0] <= now:
            _, isn_reply = heapq.heappop(self._reply_clock)
            reply = self.tables[wire.REPLY].get(isn_reply)
            if reply is not None and not reply.get("REPLY_DATE"):
                self._answer(reply, self.settings.reply_text)

    def _answer(self, reply: Row, text: str) -> None:
        stamp = self.stamp()
        reply.update(REPLY_DATE=stamp, REPLY_TEXT=text, UPD_DATE=stamp)

    # ---- reads ------------------------------------------------------------------------

    def read(self, entity: str, filters: dict[str, str], top: int | None, skip: int,
             orderby: str | None) -> list[Row]:
        if entity not in self.tables:
            raise KeyError(entity)
        matches = _predicate(filters)
        rows = [r for r in self.tables[entity].values() if matches(r)]
        for field, descending in reversed(_order_terms(orderby or _KEYS[entity])):
            rows.sort(key=_by(field), reverse=descending)
        rows = rows[skip:]
        if top is not None:
            rows = rows[:top]
        return [dict(r) for r in rows]

    # ---- writes -----------------------------------------------------------------------

    def apply_changeset(self, operations: tuple[EmbeddedRequest, ...]) -> list[EmbeddedResponse]:
        """All operations or none: they are staged on a copy and swapped in at the end."""
        staged = {name: copy.copy(table) for name, table in self.tables.items()
                  if name in _WRITABLE}
        temp: dict[int, int] = {}
        answers: list[EmbeddedResponse] = []
        clock_entries: list[tuple[float, int]] = []
        for operation in operations:
            try:
                data = json.loads(operation.body.decode("utf-8")) if operation.body else {}
            except (ValueError, UnicodeDecodeError):
                raise ChangesetRefused(400, "BadRequest", "body is not JSON") from None
            if not isinstance(data, dict):
                raise ChangesetRefused(400, "BadRequest", "body is not an object")
            if operation.method == "POST":
                answers.append(self._create(staged, temp, operation.uri, data, clock_entries))
            elif operation.method == "MERGE":
                answers.append(self._update(staged, temp, operation.uri, data))
            else:
                raise ChangesetRefused(405, "MethodNotAllowed", operation.method)
        self.tables.update(staged)
        for entry in clock_entries:
            heapq.heappush(self._reply_clock, entry)
        return answers

    def _create(self, staged: dict[str, dict[Any, Row]], temp: dict[int, int], entity: str,
                data: Row, clock_entries: list[tuple[float, int]]) -> EmbeddedResponse:
        if entity not in _WRITABLE:
            raise ChangesetRefused(404, "EntityNotFound", f"cannot create {entity}")
        key = _KEYS[entity]
        row = self._resolve(staged, temp, entity, data)
        for field in _REQUIRED[entity]:
            if row.get(field) in (None, ""):
                raise ChangesetRefused(400, "RequiredField", f"{entity}.{field} is required")
        given = data.get(key)
        self._next_isn += 1
        row[key] = self._next_isn
        stamp = self.stamp()
        row["UPD_DATE"] = stamp
        if entity == wire.DOC_RC:
            group = self.tables[wire.DOCGROUP_CL][row["DUE_DOCGROUP"]]
            self._free_num += 1
            suffix = "ОГ" if group["RC_TYPE"] == wire.RC_TYPE_CITIZENS else "ВХ"
            row["FREE_NUM"] = f"{self._free_num}-{suffix}"
            row.setdefault("DOC_DATE", stamp[:10] + "T00:00:00")
            row.setdefault("CONTROL_STATE", wire.CONTROL_OFF)
        if entity == wire.RESOLUTION:
            row.setdefault("CONTROL_STATE", wire.CONTROL_ON)
        if entity == wire.REPLY:
            row.setdefault("REPLY_DATE", None)
            row.setdefault("REPLY_TEXT", None)
            resolution = staged[wire.RESOLUTION][row["ISN_RESOLUTION"]]
            row["ISN_REF_DOC"] = resolution["ISN_REF_DOC"]
            if self.settings.reply_after_s is not None:
                clock_entries.append((self.clock() + self.settings.reply_after_s, row[key]))
        staged[entity][row[key]] = row
        # OData answers a create with the entity; Дело-Web adds the key it replaced.
        body: Row = dict(row)
        if isinstance(given, int) and given < 0:
            temp[given] = row[key]
            body.update(TempISN=given, FixedISN=row[key])
        return EmbeddedResponse(201, json.dumps(body, ensure_ascii=False).encode())

    def _update(self, staged: dict[str, dict[Any, Row]], temp: dict[int, int], uri: str,
                data: Row) -> EmbeddedResponse:
        match = _MERGE_URI.match(uri)
        if match is None or match.group(1) not in _WRITABLE:
            raise ChangesetRefused(404, "EntityNotFound", f"cannot update {uri}")
        entity, key = match.group(1), int(match.group(2))
        key = temp.get(key, key)
        current = staged[entity].get(key)
        if current is None:
            raise ChangesetRefused(404, "ResourceNotFound", f"{entity} {key} not found")
        changes = self._resolve(staged, temp, entity, data)
        changes.pop(_KEYS[entity], None)
        staged[entity][key] = {**current, **changes, "UPD_DATE": self.stamp()}
        return EmbeddedResponse(204)

    def _resolve(self, staged: dict[str, dict[Any, Row]], temp: dict[int, int], entity: str,
                 data: Row) -> Row:
        """The row with temporary keys replaced and every reference checked."""
        row = dict(data)
        for field, target in _ISN_REFS.items():
            if field == _KEYS[entity] or row.get(field) is None:
                continue
            value = row[field]
            if not isinstance(value, int):
                raise ChangesetRefused(400, "BadValue", f"{entity}.{field} is not an ISN")
            value = temp.get(value, value)
            if value not in staged[target]:
                raise ChangesetRefused(400, "ReferenceNotFound", f"{entity}.{field} unknown")
            row[field] = value
        for (owner, field), dictionary in _DUE_REFS.items():
            if owner == entity and field in row and row[field] not in self.tables[dictionary]:
                raise ChangesetRefused(400, "ReferenceNotFound", f"{entity}.{field} unknown")
        if entity == wire.DOC_RC and "DUE_DOCGROUP" in row:
            group = self.tables[wire.DOCGROUP_CL][row["DUE_DOCGROUP"]]
            if group["RC_TYPE"] != wire.RC_TYPE_CITIZENS and row.get("ISN_CITIZEN"):
                raise ChangesetRefused(400, "BadValue", "a citizen on a non-citizens group")
        return row

    # ---- test controls ----------------------------------------------------------------

    def card_of(self, isn_doc: int | None, appeal_id: str | None) -> Row | None:
        for card in self.tables[wire.DOC_RC].values():
            if card["ISN_DOC"] == isn_doc or (
                appeal_id is not None and wire.appeal_id_in(card.get("ANNOTAT")) == appeal_id
            ):
                return card
        return None

    def replies_of(self, isn_doc: int) -> list[Row]:
        return [r for r in self.tables[wire.REPLY].values() if r["ISN_REF_DOC"] == isn_doc]

    def resolutions_of(self, isn_doc: int) -> list[Row]:
        return [r for r in self.tables[wire.RESOLUTION].values()
                if r["ISN_REF_DOC"] == isn_doc]

    def force_reply(self, isn_doc: int, text: str | None) -> int:
        replies = self.replies_of(isn_doc)
        for reply in replies:
            self._answer(reply, text or self.settings.reply_text)
        return len(replies)

    def extend(self, isn_doc: int, plan_date: str) -> int:
        """An executor's extension: a new term on the REPLY line and its resolution."""
        stamp = self.stamp()
        replies = self.replies_of(isn_doc)
        for reply in replies:
            reply.update(PLAN_DATE=plan_date, UPD_DATE=stamp)
        for resolution in self.resolutions_of(isn_doc):
            resolution.update(PLAN_DATE=plan_date, UPD_DATE=stamp)
        return len(replies)

    def stats(self) -> dict[str, Any]:
        per_appeal = Counter(
            appeal_id for card in self.tables[wire.DOC_RC].values()
            if (appeal_id := wire.appeal_id_in(card.get("ANNOTAT"))) is not None
        )
        return {
            "cards": len(self.tables[wire.DOC_RC]),
            "resolutions": len(self.tables[wire.RESOLUTION]),
            "replies": len(self.tables[wire.REPLY]),
            "citizens": len(self.tables[wire.CITIZEN]),
            "cards_by_appeal": dict(per_appeal),
            "duplicates": {k: v for k, v in per_appeal.items() if v > 1},
            "counters": dict(self.counters),
        }


# ---- criteries ----------------------------------------------------------------------------


def _predicate(filters: dict[str, str]) -> Callable[[Row], bool]:
    """All `criteries` of a read as one test, each rule parsed once, not once per row."""
    tests = [(field, _rule(str(rule))) for field, rule in filters.items()]
    return lambda row: all(test(row.get(field)) for field, test in tests)


def _rule(rule: str) -> Callable[[Any], bool]:
    """One `criteries` value as a test of a field (the forms CONTRACT.md lists)."""
    lowered = rule.lower()
    if lowered == "isnull":
        return lambda value: value in (None, "")
    if lowered == "isnotnull":
        return lambda value: value not in (None, "")
    for op in (">=", "<=", ">", "<"):
        if rule.startswith(op):
            bound = rule[len(op):]
            return lambda value: value is not None and _compare(str(value), bound, op)
    if "%" in rule:
        pattern = re.compile(".*".join(re.escape(piece) for piece in rule.split("%")),
                             re.IGNORECASE | re.DOTALL)
        return lambda value: value is not None and pattern.fullmatch(str(value)) is not None
    if "|" in rule:
        alternatives = [_rule(a) for a in rule.split("|") if a]
        return lambda value: any(test(value) for test in alternatives)
    bounds = re.fullmatch(r"(-?\d*):(-?\d*)", rule)
    if bounds:
        low, high = bounds.groups()
        return lambda value: isinstance(value, int | float) and (
            (not low or value >= int(low)) and (not high or value <= int(high))
        )
    wanted = rule.casefold()
    return lambda value: value is not None and str(value).casefold() == wanted


def _compare(text: str, bound: str, op: str) -> bool:
    """Numbers as numbers, everything else (timestamps) as text, which sorts the same."""
    try:
        return bool(_OPERATORS[op](float(text), float(bound)))
    except ValueError:
        return bool(_OPERATORS[op](text, bound))


_OPERATORS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
}


def _order_terms(orderby: str) -> list[tuple[str, bool]]:
    terms = []
    for term in orderby.split(","):
        parts = term.strip().split()
        if parts:
            terms.append((parts[0], len(parts) > 1 and parts[1].lower() == "desc"))
    return terms


def _by(field: str) -> Callable[[Row], tuple[int, Any]]:
    """Sort key for one field: empty values first, then numbers, then text."""

    def key(row: Row) -> tuple[int, Any]:
        value = row.get(field)
        if value is None:
            return (0, 0)
        if isinstance(value, int | float):
            return (1, value)
        return (2, str(value))

    return key


# ---- HTTP ---------------------------------------------------------------------------------

STATE_KEY: Final = web.AppKey("delo_state", DeloState)
RNG_KEY: Final = web.AppKey("delo_rng", random.Random)


def _odata_error(status: int, code: str, message: str) -> web.Response:
    body = {"odata.error": {"code": code, "message": {"lang": "ru-RU", "value": message}}}
    return web.json_response(body, status=status)


def _session_gone(state: DeloState) -> web.Response:
    if state.settings.expired_session == "redirect":
        raise web.HTTPFound("/Login.aspx?ReturnUrl=%2f")
    return _odata_error(401, "SessionExpired", "Сессия не найдена или истекла")


@web.middleware
async def _faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency, 429 and 5xx before the effect; a dropped answer after it."""
    if request.path.startswith("/_sim/"):
        return await handler(request)
    state, rng = request.app[STATE_KEY], request.app[RNG_KEY]
    settings = state.settings
    state.counters["requests"] += 1
    if settings.latency_s:
        await asyncio.sleep(rng.uniform(0, settings.latency_s))
    if rng.random() < settings.throttle_rate:
        state.counters["throttled"] += 1
        return _odata_error_with_retry(settings.retry_after_s)
    if rng.random() < settings.error_rate:
        state.counters["errors"] += 1
        return _odata_error(500, "InternalError", "Внутренняя ошибка сервера")
    response = await handler(request)
    if rng.random() < settings.lost_response_rate:
        state.counters["lost"] += 1
        if request.transport is not None:
            request.transport.close()
        raise asyncio.CancelledError
    return response


def _odata_error_with_retry(retry_after_s: int) -> web.Response:
    response = _odata_error(429, "TooManyRequests", "Слишком много запросов")
    response.headers["Retry-After"] = str(retry_after_s)
    return response


async def _login(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if request.query.get("app") != "api":
        return _odata_error(400, "BadRequest", "app=api expected")
    session_id = state.login(request.query.get("username", ""), request.query.get("pass", ""))
    if session_id is None:
        return web.Response(status=401, text="Неверное имя пользователя или пароль")
    response = web.Response(
        text='<?xml version="1.0" encoding="utf-8"?><boolean>true</boolean>',
        content_type="text/xml",
    )
    response.set_cookie(wire.SESSION_COOKIE, session_id, httponly=True, path="/")
    return response


async def _read(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if not state.session_valid(request.cookies.get(wire.SESSION_COOKIE)):
        return _session_gone(state)
    state.advance()
    entity = request.match_info["entity"]
    try:
        raw = request.query.get("criteries")
        filters = json.loads(raw) if raw else {}
        if not isinstance(filters, dict):
            raise ValueError("criteries is not an object")
        top = int(request.query["$top"]) if "$top" in request.query else None
        skip = int(request.query.get("$skip", "0"))
    except ValueError:
        return _odata_error(400, "BadRequest", "bad query options")
    try:
        rows = state.read(entity, {str(k): str(v) for k, v in filters.items()}, top, skip,
                          request.query.get("$orderby"))
    except KeyError:
        return _odata_error(404, "EntityNotFound", f"no entity set {entity}")
    return web.json_response({"odata.metadata": f"$metadata#{entity}", "value": rows})


async def _batch(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if not state.session_valid(request.cookies.get(wire.SESSION_COOKIE)):
        return _session_gone(state)
    state.advance()
    try:
        units = decode_requests(await request.read(), request.headers.get("Content-Type", ""))
    except (MultipartError, UnicodeDecodeError):
        return _odata_error(400, "BadRequest", "not a multipart/mixed batch")
    answers: list[BatchUnit[EmbeddedResponse]] = []
    for unit in units:
        if not unit.changeset:
            answers.append(BatchUnit(False, (EmbeddedResponse(
                400, b'{"odata.error":{"code":"BadRequest","message":{"value":"writes go '
                     b'in a changeset"}}}'),)))
            continue
        try:
            answers.append(BatchUnit(True, tuple(state.apply_changeset(unit.messages))))
        except ChangesetRefused as refused:
            # OData v3: a failed changeset is answered by one lone response in its place.
            state.counters["changesets_refused"] += 1
            error = {"odata.error": {"code": refused.code,
                                     "message": {"lang": "ru-RU", "value": str(refused)}}}
            answers.append(BatchUnit(False, (EmbeddedResponse(
                refused.status, json.dumps(error, ensure_ascii=False).encode()),)))
    body, content_type = encode_responses(answers)
    return web.Response(status=202, body=body, headers={"Content-Type": content_type})


async def _sim_card_arg(request: web.Request) -> tuple[DeloState, Row | None, dict[str, Any]]:
    state = request.app[STATE_KEY]
    data = await request.json() if request.can_read_body else {}
    if not isinstance(data, dict):
        data = {}
    isn_doc = data.get("isn_doc")
    card = state.card_of(int(isn_doc) if isn_doc is not None else None, data.get("appeal_id"))
    return state, card, data


async def _sim_reply(request: web.Request) -> web.Response:
    """Force the executor's answer now: {"isn_doc": 1001 | "appeal_id": "...", "text": "..."}."""
    state, card, data = await _sim_card_arg(request)
    if card is None:
        return web.json_response({"error": "card not found"}, status=404)
    count = state.force_reply(card["ISN_DOC"], data.get("text"))
    return web.json_response({"isn_doc": card["ISN_DOC"], "replies": count})


async def _sim_extend(request: web.Request) -> web.Response:
    """Force an extension now: {"isn_doc" | "appeal_id", "plan_date": "2026-12-01"}."""
    state, card, data = await _sim_card_arg(request)
    if card is None:
        return web.json_response({"error": "card not found"}, status=404)
    plan_date = str(data.get("plan_date", ""))
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", plan_date):
        return web.json_response({"error": "plan_date must be YYYY-MM-DD"}, status=400)
    count = state.extend(card["ISN_DOC"], plan_date + "T00:00:00")
    return web.json_response({"isn_doc": card["ISN_DOC"], "replies": count})


async def _sim_card(request: web.Request) -> web.Response:
    """A card with its resolutions and REPLY lines, for assertions."""
    state = request.app[STATE_KEY]
    card = state.card_of(int(request.match_info["isn_doc"]), None)
    if card is None:
        return web.json_response({"error": "card not found"}, status=404)
    return web.json_response({
        "card": card,
        "resolutions": state.resolutions_of(card["ISN_DOC"]),
        "replies": state.replies_of(card["ISN_DOC"]),
        "rubrics": [r for r in state.tables[wire.DOC_RUBRIC].values()
                    if r["ISN_REF_DOC"] == card["ISN_DOC"]],
        "citizen": state.tables[wire.CITIZEN].get(card.get("ISN_CITIZEN")),
    })


async def _sim_stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].stats())


async def _sim_expire(request: web.Request) -> web.Response:
    request.app[STATE_KEY].expire_sessions()
    return web.json_response({"expired": True})


def create_app(settings: DeloSimulatorSettings | None = None) -> web.Application:
    """The simulator as an aiohttp application (the state is at `app[STATE_KEY]`)."""
    settings = settings or DeloSimulatorSettings()
    app = web.Application(middlewares=[_faults])
    app[STATE_KEY] = DeloState(settings)
    app[RNG_KEY] = random.Random(settings.seed)
    app.router.add_get("/" + wire.LOGIN_PATH, _login)
    app.router.add_post("/" + wire.BATCH_PATH, _batch)
    app.router.add_get("/" + wire.ODATA_PATH + "{entity}", _read)
    app.router.add_post("/_sim/reply", _sim_reply)
    app.router.add_post("/_sim/extend", _sim_extend)
    app.router.add_post("/_sim/expire-sessions", _sim_expire)
    app.router.add_get("/_sim/stats", _sim_stats)
    app.router.add_get("/_sim/cards/{isn_doc:\\d+}", _sim_card)
    return app


@dataclass
class RunningSimulator:
    """A simulator serving in the current loop (`gateway demo`, tests)."""

    runner: web.AppRunner
    url: str
    state: DeloState

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_simulator(host: str = "127.0.0.1", port: int = 0,
                          settings: DeloSimulatorSettings | None = None) -> RunningSimulator:
    """Serve in the running loop; port 0 picks a free one (see `.url`)."""
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound = port or int(runner.addresses[0][1])
    return RunningSimulator(runner=runner, url=f"http://{host}:{bound}/", state=app[STATE_KEY])


def run_simulator(host: str, port: int, settings: DeloSimulatorSettings | None = None) -> None:
    """Serve until interrupted: what `gateway sim delo` runs."""
    web.run_app(create_app(settings), host=host, port=port, access_log=None, print=None)
