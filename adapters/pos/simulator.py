"""A faithful stand-in for ПОС's side of `../shared/contracts/pos-api.md` (aiohttp).

There is no ПОС sandbox, yet the demo, the end-to-end tests and the benchmarks need a
remote that behaves like one: it keeps messages in memory, moves them through the stages
on a configurable clock, lets "ministry staff" confirm delivery directly, and fails on
purpose (5xx, 429 with Retry-After, latency, responses lost after the effect, changes
committed late with an `updated_at` older than changes already served) from a seedable
RNG. It counts creates per idempotency key and per `external_id`, so a test can
prove that nothing was registered twice.

Test-only endpoints live under `/_sim/` and need no token:
`POST /_sim/advance`, `POST /_sim/messages/{id}/confirm`, `GET /_sim/messages/{id}`,
`GET /_sim/stats`.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import heapq
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.pos import wire

MSK = timezone(timedelta(hours=3), "MSK")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_TERMINAL = frozenset({wire.ANSWER_DELIVERED, wire.REJECTED})
_ANSWERED = frozenset({wire.ANSWER_READY, wire.ANSWER_SENT})
_CHAIN = dict(zip(wire.STAGES_IN_ORDER[:5], wire.STAGES_IN_ORDER[1:6], strict=True))

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PosSimulatorSettings(BaseModel):
    """Everything the simulator can be told; embeddable in the gateway's settings."""

    model_config = ConfigDict(extra="forbid")

    token: str = "pos-sim-token"  # noqa: S105 - a simulator's well-known demo token
    # Each stage lasts this long; 0 stops the clock (tests then use /_sim/advance).
    stage_seconds: float = Field(default=2.0, ge=0)
    reject_fraction: float = Field(default=0.0, ge=0, le=1)  # rejected at moderation
    answer_sent_fraction: float = Field(default=0.0, ge=0, le=1)  # ПОС e-mails it itself
    planned_days: int = Field(default=10, ge=0)
    # category_id → organizations allowed for it; None allows any [003].
    categories: dict[int, list[int]] | None = None
    # Organizations connected to ПОС; None means all are.
    connected_organizations: list[int] | None = None
    organization_names: dict[int, str] = Field(default_factory=dict)
    # Off: a repeated Idempotency-Key creates again, so only the client's lookup prevents
    # duplicates — the strictest test of the adapter.
    idempotency: bool = True
    max_page_size: int = Field(default=500, ge=1)
    # Fault injection, applied to /api/ requests only.
    error_rate: float = Field(default=0.0, ge=0, le=1)  # 5xx before any effect
    lost_response_rate: float = Field(default=0.0, ge=0, le=1)  # connection dropped after it
    rate_limit_rate: float = Field(default=0.0, ge=0, le=1)  # 429 before any effect
    retry_after_seconds: int = Field(default=1, ge=0)
    retry_after_http_date: bool = False
    latency_ms: float = Field(default=0.0, ge=0)
    latency_jitter_ms: float = Field(default=0.0, ge=0)
    # A late commit: the change becomes visible now, stamped `late_commit_s` in the past,
    # as a transaction that began then and committed after later ones were read.
    late_commit_rate: float = Field(default=0.0, ge=0, le=1)
    late_commit_s: float = Field(default=30.0, ge=0)
    seed: int | None = None
    first_id: int = Field(default=100_001, ge=1)


@dataclass(slots=True)
class SimMessage:
    id: int
    number: str
    external_id: str
    idempotency_key: str
    request: dict[str, Any]  # the create body as received, for tests to inspect
    organization_id: int
    fate: str  # "normal", "reject", "sent": decided at creation from the seeded RNG
    stage: str = "moderation"
    status: str = "in_work"
    updated_us: int = 0
    updated_at: str = ""
    planned_completion: str = ""
    answer: dict[str, Any] | None = None
    delivery: dict[str, Any] | None = None
    version: int = 0  # bumps on every change; stale clock entries are skipped

    def public(self) -> dict[str, Any]:
        """The message exactly as the contract shows it."""
        return {
            "id": self.id,
            "number": self.number,
            "external_id": self.external_id,
            "stage": self.stage,
            "status": self.status,
            "organization_id": self.organization_id,
            "updated_at": self.updated_at,
            "planned_completion": self.planned_completion,
            "answer": self.answer,
            "delivery": self.delivery,
        }


class SimConflict(Exception):
    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code


@dataclass
class _Stats:
    creates_by_key: Counter[str] = field(default_factory=Counter)
    creates_by_external_id: Counter[str] = field(default_factory=Counter)
    replays: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _US


def _iso(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).astimezone(MSK).isoformat()


def _encode_cursor(key: tuple[int, int]) -> str:
    return base64.urlsafe_b64encode(f"{key[0]}:{key[1]}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, int]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    us, ident = raw.split(":")
    return int(us), int(ident)


class PosSimulator:
    """The state and rules, free of HTTP so they can be driven directly too."""

    def __init__(self, settings: PosSimulatorSettings,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock
        self.messages: dict[int, SimMessage] = {}
        self._by_key: dict[str, int] = {}
        self._by_external: dict[str, list[int]] = {}
        # (updated_us, id) of every message, sorted: paging without sorting per request.
        self._index: list[tuple[int, int]] = []
        self._due: list[tuple[float, int, int]] = []  # (when, id, version)
        self._next_id = settings.first_id
        self._last_us = 0
        seed = settings.seed
        self.fault_rng = random.Random(seed)
        self._fate_rng = random.Random(None if seed is None else seed + 1)
        self._late_rng = random.Random(None if seed is None else seed + 2)
        self.stats = _Stats()

    # --- time ------------------------------------------------------------------------

    def _stamp(self, message: SimMessage) -> None:
        """A new updated_at, strictly increasing, so (updated_at, id) order is change order.

        Except for a late commit (a fault): then the stamp lies in the past, behind
        changes a poller may already have read.
        """
        now_us = int(self._clock() * 1_000_000)
        late = self.settings.late_commit_rate and (
            self._late_rng.random() < self.settings.late_commit_rate)
        if late:
            stamp = max(now_us - int(self.settings.late_commit_s * 1_000_000),
                        message.updated_us + 1)
            self.stats.faults["late_commit"] += 1
        else:
            self._last_us = max(now_us, self._last_us + 1)
            stamp = self._last_us
        if message.updated_us:
            old = (message.updated_us, message.id)
            pos = bisect.bisect_left(self._index, old)
            if pos < len(self._index) and self._index[pos] == old:
                del self._index[pos]
        message.updated_us = stamp
        message.updated_at = _iso(stamp)
        message.version += 1
        bisect.insort(self._index, (message.updated_us, message.id))

    def _schedule(self, message: SimMessage) -> None:
        if self.settings.stage_seconds > 0 and self._next_stage(message, None) is not None:
            when = self._clock() + self.settings.stage_seconds
            heapq.heappush(self._due, (when, message.id, message.version))

    def tick(self) -> int:
        """Move every message whose stage time is up; returns how many moved."""
        now = self._clock()
        moved = 0
        while self._due and self._due[0][0] <= now:
            _, ident, version = heapq.heappop(self._due)
            message = self.messages.get(ident)
            if message is None or message.version != version:
                continue
            if self._step(message, None):
                moved += 1
                self._schedule(message)
        return moved

    # --- rules -----------------------------------------------------------------------

    def create(self, body: wire.CreateMessage, key: str) -> tuple[SimMessage, bool]:
        """The message for this key; True when it was created now."""
        if self.settings.idempotency and key in self._by_key:
            self.stats.replays += 1
            return self.messages[self._by_key[key]], False
        self._check_addressee(body.category_id, body.organization_id)
        ident = self._next_id
        self._next_id += 1
        roll = self._fate_rng.random()
        fate = "normal"
        if roll < self.settings.reject_fraction:
            fate = "reject"
        elif roll < self.settings.reject_fraction + self.settings.answer_sent_fraction:
            fate = "sent"
        received = body.received_at.astimezone(MSK).date()
        message = SimMessage(
            id=ident,
            number=f"ПОС-{received.year}-{ident}",
            external_id=body.external_id,
            idempotency_key=key,
            request=body.model_dump(mode="json"),
            organization_id=body.organization_id,
            fate=fate,
            planned_completion=(received + timedelta(days=self.settings.planned_days)).isoformat(),
        )
        self.messages[ident] = message
        self._by_key.setdefault(key, ident)
        self._by_external.setdefault(body.external_id, []).append(ident)
        self.stats.creates_by_key[key] += 1
        self.stats.creates_by_external_id[body.external_id] += 1
        self._stamp(message)
        self._schedule(message)
        return message, True

    def _check_addressee(self, category_id: int, organization_id: int) -> None:
        connected = self.settings.connected_organizations
        if connected is not None and organization_id not in connected:
            raise SimConflict(422, wire.ERROR_ORGANIZATION_NOT_CONNECTED)
        categories = self.settings.categories
        if categories is not None and organization_id not in categories.get(category_id, ()):
            raise SimConflict(422, wire.ERROR_CATEGORY_NOT_ALLOWED)

    def _next_stage(self, message: SimMessage, target: str | None) -> str | None:
        stage = message.stage
        if stage in _TERMINAL:
            return None
        if target == wire.REJECTED and stage not in _ANSWERED:
            return wire.REJECTED
        if stage == "moderation" and message.fate == "reject" and target is None:
            return wire.REJECTED
        if stage == wire.ANSWER_READY:
            if target == wire.ANSWER_SENT or (target is None and message.fate == "sent"):
                return wire.ANSWER_SENT
            return None
        return _CHAIN.get(stage)

    def _step(self, message: SimMessage, target: str | None) -> bool:
        following = self._next_stage(message, target)
        if following is None:
            return False
        message.stage = following
        if following == wire.REJECTED:
            message.status = "rejected"
            message.answer = {
                "text": "Сообщение отклонено: вопрос не относится к компетенции платформы.",
                "approved_at": _iso(int(self._clock() * 1_000_000)),
                "organization": self._organization(message.organization_id),
            }
        elif following == wire.ANSWER_READY:
            message.status = "answered"
            message.answer = {
                "text": f"По сообщению {message.number} проведена проверка, меры приняты.",
                "approved_at": _iso(int(self._clock() * 1_000_000)),
                "organization": self._organization(message.organization_id),
            }
        self._stamp(message)
        return True

    def _organization(self, organization_id: int) -> str:
        return self.settings.organization_names.get(
            organization_id, f"Организация {organization_id}"
        )

    def advance(self, ident: int | None = None, to: str | None = None, steps: int = 1) -> int:
        """Move one message (or all) `steps` stages on, or until stage `to`; no clock."""
        targets = [self.messages[ident]] if ident is not None else list(self.messages.values())
        moved = 0
        for message in targets:
            before = moved
            for _ in range(steps if to is None else len(wire.STAGES_IN_ORDER) + 2):
                if to is not None and message.stage == to:
                    break
                if not self._step(message, to):
                    break
                moved += 1
            if moved > before:
                self._schedule(message)  # the clock restarts from the new stage
        return moved

    def confirm(self, ident: int, channel: str, confirmed_at: str, confirmed_by: str) -> SimMessage:
        """«Ответ передан заявителю», by the gateway or by staff directly in ПОС."""
        message = self.messages.get(ident)
        if message is None:
            raise SimConflict(404, "not_found")
        if message.stage == wire.ANSWER_DELIVERED and message.delivery is not None:
            if message.delivery["channel"] == channel:
                return message
            raise SimConflict(409, "already_delivered")
        if message.stage not in _ANSWERED:
            raise SimConflict(409, wire.ERROR_ANSWER_NOT_READY)
        message.stage = wire.ANSWER_DELIVERED
        message.delivery = {
            "channel": channel, "confirmed_at": confirmed_at, "confirmed_by": confirmed_by,
        }
        self._stamp(message)
        return message

    def by_key(self, key: str) -> SimMessage | None:
        """The message an Idempotency-Key already created, when keys are honoured."""
        if not self.settings.idempotency or key not in self._by_key:
            return None
        return self.messages[self._by_key[key]]

    def find_external(self, external_id: str) -> list[SimMessage]:
        return [self.messages[i] for i in self._by_external.get(external_id, ())]

    def page(self, source: str | None, since: datetime | None, cursor: str | None,
             limit: int) -> tuple[list[SimMessage], str | None]:
        """Ordered by updated_at then id; `updated_since` inclusive, the cursor exclusive."""
        start = 0
        if since is not None:
            start = bisect.bisect_left(self._index, (_to_us(since), -1))
        if cursor is not None:
            start = max(start, bisect.bisect_right(self._index, _decode_cursor(cursor)))
        items: list[SimMessage] = []
        last: tuple[int, int] | None = None
        more = False
        for pos in range(start, len(self._index)):
            key = self._index[pos]
            message = self.messages[key[1]]
            if source is not None and message.request.get("source") != source:
                continue
            if len(items) == limit:
                more = True
                break
            items.append(message)
            last = key
        return items, (_encode_cursor(last) if more and last is not None else None)

    def snapshot(self) -> dict[str, Any]:
        """Counts for tests: `duplicates` is every message beyond the first per key or id."""
        by_key = self.stats.creates_by_key
        by_external = self.stats.creates_by_external_id
        return {
            "messages": len(self.messages),
            "creates_by_key": dict(by_key),
            "duplicates": max(sum(n - 1 for n in by_key.values()),
                              sum(n - 1 for n in by_external.values())),
            "idempotent_replays": self.stats.replays,
            "requests": dict(self.stats.requests),
            "faults": dict(self.stats.faults),
            "stages": dict(Counter(m.stage for m in self.messages.values())),
        }


# --- HTTP -------------------------------------------------------------------------------

SIM_KEY = web.AppKey("pos_simulator", PosSimulator)


def _error(status: int, code: str, message: str | None = None,
           headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code}}
    if message:
        body["error"]["message"] = message
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _fields(exc: ValidationError) -> str:
    return ", ".join(sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()}))


@web.middleware
async def _faults_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[SIM_KEY]
    if not request.path.startswith("/api/"):
        return await handler(request)
    settings = sim.settings
    resource = request.match_info.route.resource
    sim.stats.requests[f"{request.method} {resource.canonical if resource else '?'}"] += 1
    if settings.latency_ms or settings.latency_jitter_ms:
        delay = settings.latency_ms + sim.fault_rng.random() * settings.latency_jitter_ms
        await asyncio.sleep(delay / 1000)
    roll = sim.fault_rng.random()
    if roll < settings.rate_limit_rate:
        sim.stats.faults["429"] += 1
        if settings.retry_after_http_date:
            when = datetime.now(UTC) + timedelta(seconds=settings.retry_after_seconds)
            retry_after = format_datetime(when, usegmt=True)
        else:
            retry_after = str(settings.retry_after_seconds)
        return _error(429, "rate_limited", headers={"Retry-After": retry_after})
    if roll < settings.rate_limit_rate + settings.error_rate:
        sim.stats.faults["5xx"] += 1
        return _error(sim.fault_rng.choice((500, 502, 503)), "internal")
    if request.headers.get("Authorization") != f"Bearer {settings.token}":
        return _error(401, "unauthorized")
    response = await handler(request)
    if settings.lost_response_rate and sim.fault_rng.random() < settings.lost_response_rate:
        sim.stats.faults["lost"] += 1
        # The effect stands; the client never hears of it.
        if request.transport is not None:
            request.transport.close()
    return response


async def _create(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        return _error(422, wire.ERROR_VALIDATION, "Idempotency-Key header is required")
    existing = sim.by_key(key)
    if existing is not None:
        # Whatever the body: the first request with this key decided the message.
        sim.stats.replays += 1
        return _json(existing.public(), 200)
    try:
        body = wire.CreateMessage.model_validate_json(await request.read())
    except ValidationError as exc:
        return _error(422, wire.ERROR_VALIDATION, f"invalid fields: {_fields(exc)}")
    try:
        message, created = sim.create(body, key)
    except SimConflict as exc:
        return _error(exc.status, exc.code)
    return _json(message.public(), 201 if created else 200)


async def _list(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    query = request.query
    external_id = query.get("external_id")
    if external_id is not None:
        found = [m.public() for m in sim.find_external(external_id)]
        return _json({"items": found, "next_cursor": None})
    try:
        limit = int(query.get("limit", "100"))
        if not 1 <= limit <= sim.settings.max_page_size:
            raise ValueError("limit")
        since = None
        if "updated_since" in query:
            # An unencoded "+03:00" arrives as " 03:00": forgive it, as servers tend to.
            since = datetime.fromisoformat(query["updated_since"].replace(" ", "+"))
        cursor = query.get("cursor") or None
        if cursor is not None:
            _decode_cursor(cursor)
    except ValueError:
        return _error(422, wire.ERROR_VALIDATION, "bad limit, updated_since or cursor")
    items, next_cursor = sim.page(query.get("source"), since, cursor, limit)
    return _json({"items": [m.public() for m in items], "next_cursor": next_cursor})


def _message_id(request: web.Request) -> int | None:
    try:
        return int(request.match_info["id"])
    except ValueError:
        return None


async def _read(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    ident = _message_id(request)
    message = sim.messages.get(ident) if ident is not None else None
    if message is None:
        return _error(404, "not_found")
    return _json(message.public())


async def _deliver(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    ident = _message_id(request)
    try:
        body = wire.ConfirmDelivery.model_validate_json(await request.read())
    except ValidationError as exc:
        return _error(422, wire.ERROR_VALIDATION, f"invalid fields: {_fields(exc)}")
    if ident is None:
        return _error(404, "not_found")
    try:
        message = sim.confirm(ident, body.channel, body.confirmed_at.isoformat(),
                              "Центр мониторинга 112 (интеграция)")
    except SimConflict as exc:
        return _error(exc.status, exc.code)
    return _json(message.public())


class _StaffConfirmation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: wire.WireChannel
    confirmed_by: str = "Специалист министерства"
    confirmed_at: datetime | None = None


async def _sim_confirm(request: web.Request) -> web.Response:
    """Ministry staff confirming delivery in ПОС's own interface."""
    sim = request.app[SIM_KEY]
    ident = _message_id(request)
    try:
        body = _StaffConfirmation.model_validate_json(await request.read() or b"{}")
    except ValidationError as exc:
        return _error(422, wire.ERROR_VALIDATION, f"invalid fields: {_fields(exc)}")
    if ident is None:
        return _error(404, "not_found")
    when = body.confirmed_at or datetime.now(MSK)
    try:
        message = sim.confirm(ident, body.channel, when.isoformat(), body.confirmed_by)
    except SimConflict as exc:
        return _error(exc.status, exc.code)
    return _json(message.public())


class _Advance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int | None = None
    to: str | None = None
    steps: int = Field(default=1, ge=1)


async def _sim_advance(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    try:
        body = _Advance.model_validate_json(await request.read() or b"{}")
    except ValidationError as exc:
        return _error(422, wire.ERROR_VALIDATION, f"invalid fields: {_fields(exc)}")
    if body.id is not None and body.id not in sim.messages:
        return _error(404, "not_found")
    return _json({"advanced": sim.advance(body.id, body.to, body.steps)})


async def _sim_message(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    ident = _message_id(request)
    message = sim.messages.get(ident) if ident is not None else None
    if message is None:
        return _error(404, "not_found")
    return _json({**message.public(), "request": message.request,
                  "idempotency_key": message.idempotency_key})


async def _sim_stats(request: web.Request) -> web.Response:
    return _json(request.app[SIM_KEY].snapshot())


def create_app(settings: PosSimulatorSettings | None = None, *,
               clock: Callable[[], float] = time.time) -> web.Application:
    """The simulator as an aiohttp application; `app[SIM_KEY]` is its state."""
    settings = settings or PosSimulatorSettings()
    app = web.Application(middlewares=[_faults_and_auth])
    sim = PosSimulator(settings, clock)
    app[SIM_KEY] = sim
    app.router.add_post("/api/v1/messages", _create)
    app.router.add_get("/api/v1/messages", _list)
    app.router.add_get("/api/v1/messages/{id}", _read)
    app.router.add_post("/api/v1/messages/{id}/delivery", _deliver)
    app.router.add_post("/_sim/advance", _sim_advance)
    app.router.add_post("/_sim/messages/{id}/confirm", _sim_confirm)
    app.router.add_get("/_sim/messages/{id}", _sim_message)
    app.router.add_get("/_sim/stats", _sim_stats)

    async def stage_clock(app: web.Application) -> AsyncIterator[None]:
        task = None
        if settings.stage_seconds > 0:
            task = asyncio.create_task(_run_clock(sim, min(0.25, settings.stage_seconds / 4)))
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(stage_clock)
    return app


async def _run_clock(sim: PosSimulator, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        sim.tick()


@dataclass
class RunningSimulator:
    """A simulator serving on a port inside the caller's event loop (tests, demo)."""

    runner: web.AppRunner
    url: str
    sim: PosSimulator

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_simulator(host: str = "127.0.0.1", port: int = 0,
                          settings: PosSimulatorSettings | None = None, *,
                          clock: Callable[[], float] = time.time) -> RunningSimulator:
    """Serve in the running loop; port 0 picks a free one (see `.url`)."""
    app = create_app(settings, clock=clock)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = port or int(runner.addresses[0][1])
    return RunningSimulator(runner=runner, url=f"http://{host}:{bound}", sim=app[SIM_KEY])


def run_simulator(host: str, port: int, settings: PosSimulatorSettings | None = None) -> None:
    """Serve until interrupted: what `gateway sim pos` runs."""
    web.run_app(create_app(settings), host=host, port=port, access_log=None, print=None)
