"""After intake: the journal's own fields, interim answers and the supervisor's decisions.

[001: appendix 2] PATCH /api/v1/calls/{id}; [002: 2.8.10] POST .../interim;
POST .../resolve for appeals flagged after three failed callbacks [001: 13], rejected or
failed.
"""

from __future__ import annotations

from aiohttp import web

from gateway.api.auth import ROLE_KEY, requires
from gateway.api.bodies import NO_SUCH_CALL, appeal_id_of, read_json_object, validated
from gateway.api.callbacks import implausible_at
from gateway.api.context import SERVICES_KEY, ApiServices
from gateway.api.errors import ApiError, json_response
from gateway.api.views import AppealDetailOut
from gateway.api.wire import InterimIn, JournalPatchIn, ResolveIn
from gateway.domain.appeal import Appeal, InterimAnswer, JournalRefused, ResolveRefused
from gateway.domain.callbacks import ImplausibleAttemptTime
from gateway.domain.routing import UnknownTopic
from gateway.services.journal import JournalChanges, JournalDesk
from gateway.services.supervision import MissingField, Resolution, Supervision

routes = web.RouteTableDef()

def _journal(services: ApiServices) -> JournalDesk:
    if services.journal is None:
        raise ApiError(503, "unavailable", "Журнал не настроен / journal not wired")
    return services.journal


def _supervision(services: ApiServices) -> Supervision:
    if services.supervision is None:
        raise ApiError(503, "unavailable", "Не настроено / supervision not wired")
    return services.supervision


def _detail(services: ApiServices, appeal: Appeal, status: int = 200) -> web.Response:
    return json_response(AppealDetailOut.of(appeal, services.zone_of(appeal.hotline)).body(),
                         status=status)


@routes.patch("/api/v1/calls/{id}")
@requires("operator")
async def patch_journal(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    patch = validated(JournalPatchIn, await read_json_object(request),
                      "Поля журнала заполнены с ошибками / invalid journal fields")
    try:
        appeal = await _journal(services).update(
            appeal_id_of(request), JournalChanges(frozenset(patch.model_fields_set), patch.entry()),
            actor=request[ROLE_KEY])
    except LookupError:
        raise ApiError(404, "not_found", NO_SUCH_CALL) from None
    except JournalRefused as exc:
        raise ApiError(422, "validation",
                       "«Комментарий» обязателен для этого результата рассмотрения "
                       "/ this review result needs a comment [001: appendix 2]",
                       exc.fields) from None
    return _detail(services, appeal)


@routes.post("/api/v1/calls/{id}/interim")
@requires("operator")
async def interim(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    given = validated(InterimIn, await read_json_object(request),
                      "Промежуточный ответ описан с ошибками / invalid interim answer")
    answer = InterimAnswer(given.reason, given.expected_at, given.channel.value,
                           given.at or services.clock.now(), given.by)
    try:
        appeal = await _journal(services).interim(appeal_id_of(request), answer,
                                                  actor=request[ROLE_KEY])
    except LookupError:
        raise ApiError(404, "not_found", NO_SUCH_CALL) from None
    except ImplausibleAttemptTime as exc:
        raise implausible_at(exc) from None
    except ResolveRefused as exc:
        raise ApiError(409, "conflict", f"Ответ уже не ожидается / {exc}") from None
    return _detail(services, appeal, status=201)


@routes.post("/api/v1/calls/{id}/resolve")
@requires("supervisor")
async def resolve(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    body = validated(ResolveIn, await read_json_object(request),
                     "Решение описано с ошибками / invalid resolution")
    try:
        appeal = await _supervision(services).resolve(
            appeal_id_of(request), Resolution(body.action, body.reason, body.until, body.topic),
            actor=request[ROLE_KEY])
    except LookupError:
        raise ApiError(404, "not_found", NO_SUCH_CALL) from None
    except MissingField as exc:
        raise ApiError(422, "validation", str(exc), {exc.field: str(exc)}) from None
    except UnknownTopic:
        raise ApiError(422, "unknown_topic", "Тематика не найдена в справочнике "
                       "/ the topic is not in the topic dictionary",
                       {"topic": "not in the topic dictionary"}) from None
    except ResolveRefused as exc:
        raise ApiError(409, "not_applicable", f"Действие неприменимо / {exc}") from None
    return _detail(services, appeal)
