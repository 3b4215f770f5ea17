"""A stand-in for ПОС's «external appeal system» (pos-eas.md), for tests and the demo.

It issues password-grant tokens, creates appeals (no idempotency, as EAS), keeps each
appeal's history of event codes and serves it per appeal. Faults are injected from a
seedable RNG as in the pos-api simulator (5xx before any effect, latency), plus the
"lost create": the appeal is created and the answer dropped, which is the case the
adapter must park instead of resending. Test-only endpoints under `/_sim/` need no
token: `POST /_sim/appeals/{posId}/event` (append a code), `POST /_sim/expire-tokens`,
`POST /_sim/lose-next-create`, `GET /_sim/stats`. It serves the dictionaries too (E1, E3,
E5), seeded with the categories of the shipped config/routing.toml for region 73; tests
change `EasSimulator.subjects` / `.subsubjects` directly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.pos import eas_wire as wire

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class EasSimulatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str = "sim-client"
    client_secret: str = "sim-secret"  # noqa: S105 - a simulator's well-known demo value
    oauth_client: str = "sim-oauth"
    oauth_secret: str = "sim-oauth-secret"  # noqa: S105
    answer_days: int = Field(default=30, ge=0)  # answerAt = createdAt + this (fixture C7)
    error_rate: float = Field(default=0.0, ge=0, le=1)  # 5xx before any effect
    lost_create_rate: float = Field(default=0.0, ge=0, le=1)  # created, answer dropped
    latency_ms: float = Field(default=0.0, ge=0)
    seed: int | None = None
    first_id: int = Field(default=563_000_001, ge=1)


@dataclass(slots=True)
class EasSimAppeal:
    pos_id: int
    request: dict[str, Any]
    created_at: datetime
    history: list[dict[str, Any]] = field(default_factory=list)
    opa_id: int = 700_001
    organization: str = "АДМИНИСТРАЦИЯ (симулятор)"

    def public(self, answer_days: int, *, with_history: bool) -> dict[str, Any]:
        last = self.history[-1]
        return {
            "id": None, "posId": self.pos_id, "opaId": self.opa_id,
            "applicant": self.request.get("applicant"),
            "description": self.request.get("description"),
            "location": self.request.get("location"),
            "subjectId": self.request.get("subjectId"),
            "subsubjectId": self.request.get("subsubjectId"),
            "createdAt": _iso(self.created_at),
            "status": last["status"], "statusText": last.get("statusText"),
            "organizationInfo": {"opaId": self.opa_id, "name": self.organization}
            if with_history else None,
            "history": list(self.history) if with_history else None,
            "answerAt": _iso(self.created_at + timedelta(days=answer_days))
            if with_history else None,
            "warnings": None if with_history else [],
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seed_subjects() -> dict[int, list[dict[str, Any]]]:
    return {73: [{"id": i, "name": n, "deleted": False} for i, n in _CATEGORIES]}


def _seed_subsubjects() -> dict[int, list[dict[str, Any]]]:
    return {73: [{"id": i, "name": f"Подкатегория {i}", "deleted": False,
                  "subject": {"id": i // 100, "name": dict(_CATEGORIES)[i // 100]}}
                 for i in _SUBCATEGORIES]}


_CATEGORIES = ((101, "Жилищно-коммунальное хозяйство"), (102, "Благоустройство"),
               (103, "Дороги и транспорт"), (104, "Образование"), (105, "Социальная защита"),
               (106, "Культура и спорт"), (107, "Жилищная политика"), (199, "Прочее"))
_SUBCATEGORIES = (*range(10101, 10110), 10201, 10202, 10301, 10302, 10401, 10501, 10601,
                  10602, 10701, 19901)


@dataclass(slots=True)
class EasSimulator:
    settings: EasSimulatorSettings
    appeals: dict[int, EasSimAppeal] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    creates: Counter[str] = field(default_factory=Counter)  # by description
    requests: Counter[str] = field(default_factory=Counter)
    lose_next_create: bool = False
    rng: random.Random = field(default_factory=random.Random)
    regions: list[dict[str, Any]] = field(default_factory=lambda: [
        {"id": 73, "name": "Ульяновская область", "okato": 73000000, "coordinates": ""}])
    subjects: dict[int, list[dict[str, Any]]] = field(default_factory=_seed_subjects)
    subsubjects: dict[int, list[dict[str, Any]]] = field(default_factory=_seed_subsubjects)

    def create(self, body: wire.CreateAppeal) -> EasSimAppeal:
        pos_id = self.settings.first_id + len(self.appeals)
        now = datetime.now(UTC)
        appeal = EasSimAppeal(pos_id, body.model_dump(exclude_none=True), now)
        appeal.history.append(_entry("MODERATION_NEW", "На модерации", now))
        self.appeals[pos_id] = appeal
        self.creates[body.description] += 1
        return appeal

    def event(self, pos_id: int, code: str, comment: str | None = None,
              organization: str | None = None) -> EasSimAppeal:
        appeal = self.appeals[pos_id]
        answer = {"answerType": "SOLVED", "comment": comment, "rejectReason": None} \
            if comment is not None else None
        appeal.history.append(_entry(code, None, datetime.now(UTC), answer))
        if organization is not None:
            appeal.organization = organization
            appeal.opa_id += 1
        return appeal


def _entry(code: str, text: str | None, at: datetime,
           answer: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"status": code, "statusText": text, "answer": answer, "createdAt": _iso(at),
            "createdBy": {"surname": "Внешняя", "name": "Система",
                          "patronymic": "Приема Сообщений"}}


SIM_KEY = web.AppKey("eas_sim", EasSimulator)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


@web.middleware
async def _faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[SIM_KEY]
    if request.path.startswith("/_sim/"):
        return await handler(request)
    sim.requests[f"{request.method} {request.match_info.route.resource.canonical}"
                 if request.match_info.route.resource else "?"] += 1
    if sim.settings.latency_ms:
        await asyncio.sleep(sim.settings.latency_ms / 1000)
    if sim.rng.random() < sim.settings.error_rate:
        return web.Response(status=sim.rng.choice((500, 502, 503)), text="internal")
    if request.path != wire.TOKEN_PATH:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in sim.tokens:
            return web.Response(status=401, text="unauthorized")
    return await handler(request)


async def _token(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    s = sim.settings
    expected = base64.b64encode(f"{s.oauth_client}:{s.oauth_secret}".encode()).decode()
    form = await request.post()
    if request.headers.get("Authorization") != f"Basic {expected}" \
            or form.get("username") != s.client_id or form.get("password") != s.client_secret \
            or form.get("grant_type") != "password":
        return web.json_response({"error": "invalid_grant"}, status=400)
    token = secrets.token_hex(16)
    sim.tokens.add(token)
    return web.json_response({"access_token": token, "token_type": "bearer",
                              "expires_in": 3600, "scope": "any", "system": True})


async def _create(request: web.Request) -> web.StreamResponse:
    sim = request.app[SIM_KEY]
    try:
        body = wire.CreateAppeal.model_validate_json(await request.read())
    except ValidationError:
        return web.Response(status=400, text="bad request")
    appeal = sim.create(body)
    lose = sim.lose_next_create or sim.rng.random() < sim.settings.lost_create_rate
    if lose:
        sim.lose_next_create = False
        if request.transport is not None:
            request.transport.close()  # the appeal stands; the client never hears of it
        raise web.HTTPInternalServerError()
    return web.json_response(appeal.public(sim.settings.answer_days, with_history=False),
                             dumps=_dumps)


async def _read(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    try:
        appeal = sim.appeals[int(request.match_info["pos_id"])]
    except (KeyError, ValueError):
        return web.Response(status=404, text="not found")
    return web.json_response(appeal.public(sim.settings.answer_days, with_history=True),
                             dumps=_dumps)


async def _regions(request: web.Request) -> web.Response:
    return web.json_response(request.app[SIM_KEY].regions, dumps=_dumps)


async def _subjects(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    try:
        region = int(request.match_info["region_id"])
    except ValueError:
        return web.Response(status=400, text="bad request")
    return web.json_response({"content": sim.subjects.get(region, [])}, dumps=_dumps)


async def _subsubjects(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    try:
        region = int(request.query["regionId"])
    except (KeyError, ValueError):
        return web.Response(status=400, text="bad request")
    return web.json_response({"content": sim.subsubjects.get(region, [])}, dumps=_dumps)


async def _sim_event(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    data = await request.json()
    appeal = sim.event(int(request.match_info["pos_id"]), str(data["status"]),
                       data.get("comment"), data.get("organization"))
    return web.json_response(appeal.public(sim.settings.answer_days, with_history=True),
                             dumps=_dumps)


async def _sim_expire(request: web.Request) -> web.Response:
    request.app[SIM_KEY].tokens.clear()
    return web.json_response({"expired": True})


async def _sim_lose(request: web.Request) -> web.Response:
    request.app[SIM_KEY].lose_next_create = True
    return web.json_response({"armed": True})


async def _sim_stats(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    return web.json_response({"appeals": len(sim.appeals), "creates": dict(sim.creates),
                              "requests": dict(sim.requests)}, dumps=_dumps)


def create_eas_app(settings: EasSimulatorSettings | None = None) -> web.Application:
    settings = settings or EasSimulatorSettings()
    app = web.Application(middlewares=[_faults])
    app[SIM_KEY] = EasSimulator(settings, rng=random.Random(settings.seed))
    app.router.add_post(wire.TOKEN_PATH, _token)
    app.router.add_post(wire.CREATE_PATH, _create)
    app.router.add_get(wire.READ_PATH, _read)
    app.router.add_get(wire.REGIONS_PATH, _regions)
    app.router.add_get(wire.SUBJECTS_PATH, _subjects)
    app.router.add_get(wire.SUBSUBJECTS_PATH, _subsubjects)
    app.router.add_post("/_sim/appeals/{pos_id}/event", _sim_event)
    app.router.add_post("/_sim/expire-tokens", _sim_expire)
    app.router.add_post("/_sim/lose-next-create", _sim_lose)
    app.router.add_get("/_sim/stats", _sim_stats)
    return app
