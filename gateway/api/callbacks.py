"""Returning calls over HTTP [001: 12–14]: missed calls and voicemail, the callback
worklist, and tries on missed-call tasks."""

from __future__ import annotations

from aiohttp import web

from gateway.api.auth import ROLE_KEY, requires
from gateway.api.bodies import BAD_QUERY, path_id, read_json_object, validated
from gateway.api.context import SERVICES_KEY, ApiServices
from gateway.api.errors import ApiError, json_response
from gateway.api.views import CallbackListOut, CallbackTaskOut, MissedCallOut, TaskAttemptOut
from gateway.api.wire import CallbackAttemptIn, CallbacksQuery, MissedCallIn, MissedCallsIn
from gateway.domain.callbacks import AttemptsExhausted, CallbackTooSoon, ImplausibleAttemptTime
from gateway.services.callbacks import CallbackDesk, MissedCall, MissedCallRefused

routes = web.RouteTableDef()

NO_SUCH_TASK = "Задача не найдена / no such callback task"

_INVALID = "Пропущенный вызов описан с ошибками / invalid missed call"


def desk_of(services: ApiServices) -> CallbackDesk:
    if services.callbacks is None:
        raise ApiError(503, "unavailable", "Обратные звонки не настроены / callbacks not wired")
    return services.callbacks


def too_soon(exc: CallbackTooSoon, services: ApiServices, hotline: str) -> ApiError:
    allowed = exc.next_allowed_at.astimezone(services.zone_of(hotline)).isoformat()
    return ApiError(409, "too_soon",
                    f"Следующая попытка не раньше {allowed} (интервал 30–60 минут) "
                    f"/ the next try is allowed from {allowed} [001: 13]",
                    {"next_allowed_at": allowed})


def exhausted(attempts: int) -> ApiError:
    return ApiError(409, "attempts_exhausted",
                    f"Уже {attempts} неудачные попытки; решение за руководителем "
                    f"/ {attempts} failed tries already; the supervisor decides next")


def implausible_at(exc: ImplausibleAttemptTime) -> ApiError:
    return ApiError(422, "validation", "Время попытки неправдоподобно / implausible `at`",
                    {"at": exc.field_error})


@routes.post("/api/v1/missed-calls")
@requires("operator")
async def missed_calls(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    desk = desk_of(services)
    body = await read_json_object(request)
    items = (validated(MissedCallsIn, body, _INVALID).items if "items" in body
             else [validated(MissedCallIn, body, _INVALID)])
    results = []
    for index, item in enumerate(items):
        try:
            results.append(await desk.report_missed(
                MissedCall(item.hotline, item.phone, item.at, item.voicemail),
                actor=request[ROLE_KEY]))
        except MissedCallRefused as exc:
            prefix = f"items.{index}." if "items" in body else ""
            raise ApiError(422, "validation", _INVALID,
                           {prefix + name: why for name, why in exc.fields.items()}) from None
    views = [MissedCallOut.of(r.task, services.zone_of(r.task.hotline)).body() for r in results]
    created = any(r.created for r in results)
    if "items" in body:
        return json_response({"items": [{**v, "created": r.created}
                                        for v, r in zip(views, results, strict=True)]},
                             status=201 if created else 200)
    return json_response(views[0], status=201 if created else 200)


@routes.get("/api/v1/callbacks")
@requires("operator")
async def callbacks(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    query = validated(CallbacksQuery, dict(request.query), BAD_QUERY)
    work = await desk_of(services).worklist(query.limit)
    items = [CallbackTaskOut.of_task(t, services.zone_of(t.hotline)) for t in work.tasks]
    items += [CallbackTaskOut.of_answer(a, due, services.zone_of(a.hotline))
              for a, due in work.answers]
    items.sort(key=lambda i: (i.next_attempt_by is None,
                              i.next_attempt_by.timestamp() if i.next_attempt_by else 0.0))
    return json_response(CallbackListOut(items=items).body())


@routes.post("/api/v1/callbacks/{id}/attempts")
@requires("operator", "delivery")
async def task_attempt(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    attempt = validated(CallbackAttemptIn, await read_json_object(request),
                        "Попытка описана с ошибками / invalid attempt")
    desk = desk_of(services)
    task_id = path_id(request, NO_SUCH_TASK)
    try:
        task, _ = await desk.attempt(task_id, attempt.outcome, attempt.at,
                                     actor=request[ROLE_KEY])
    except LookupError:
        raise ApiError(404, "not_found", NO_SUCH_TASK) from None
    except ImplausibleAttemptTime as exc:
        raise implausible_at(exc) from None
    except CallbackTooSoon as exc:
        async with services.storage.read() as uow:
            found = await uow.callbacks.get(task_id)
        raise too_soon(exc, services, found.hotline if found else "") from None
    except AttemptsExhausted as exc:
        raise exhausted(exc.attempts) from None
    return json_response(TaskAttemptOut.of(task, services.zone_of(task.hotline)).body(),
                         status=201)
