"""The ПОС adapter in the «external appeal system» dialect (pos-eas.md), `dialect = "eas"`.

EAS differs from our own contract where it hurts (pos-eas.md §9):

* a password-grant token (`/user-service/oauth/token`, a Basic client pair plus the
  integration's id/secret), cached; on 401/403 the call re-authenticates once and is
  replayed — only a failing token call is a configuration error;
* creates carry no idempotency key and nothing finds an appeal by our id, so a create is
  retried only when it provably never reached ПОС (connect refused, DNS, no free
  connection, 401/403, 429). A timeout, reset, 5xx or unreadable success after sending
  parks the row: `Permanent` with a reason starting `ambiguous:` that names the marker
  to search for in ПОС. People resolve it (found → the ПОС id is recorded; not there →
  re-drive). Never a blind resend;
* `applicant.epguId` is required (the router keeps calls without one away from here);
* no list endpoint: status is read per open appeal (`get_update`), budgeted by
  `PollSchedule` and `RateCap`; `fetch_updates` has nothing to page through;
* no delivery-confirmation endpoint: deliveries stay local.

Reasons never carry bodies or applicant data (152-ФЗ); the marker is our journal id.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import httpx
import structlog
from pydantic import TypeAdapter, ValidationError

from adapters.http_outcomes import not_sent, retry_after_of
from adapters.pos import eas_wire as wire
from adapters.pos.client import message_text
from adapters.pos.eas_dictionaries import Dictionaries, Entry
from adapters.pos.eas_mapping import EasMapping, load_eas_mapping
from adapters.pos.eas_polling import PollSchedule, RateCap, ScheduleSettings
from gateway.domain.appeal import Appeal, DeliveryChannel
from gateway.domain.ports import Answer, ExternalRef, ExternalUpdate, UpdatesPage
from outbox import Permanent, Transient

SYSTEM = "pos"
AMBIGUOUS = "ambiguous:"  # how a parked create's reason starts; people resolve it
CONFIRM_IN_POS = "confirm in ПОС:"  # a delivery for ministry staff to confirm in ПОС's UI

log = structlog.get_logger(__name__)
_REGIONS = TypeAdapter(list[wire.Region])


class TokenRefused(Permanent):
    """The token call failed: credentials or the Basic client pair are wrong."""


def marker(appeal: Appeal, prefix: str) -> str:
    """What a person searches ПОС for: the hotline's marker followed by our journal id."""
    head = prefix.strip().rstrip(".").strip()
    return f"{head} № {appeal.journal_id}"


def ambiguous_reason(appeal: Appeal, prefix: str, what: str) -> str:
    received = _utc(appeal.received_at).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (f"{AMBIGUOUS} {what}; the appeal may exist in ПОС. Check in ПОС for "
            f"«{marker(appeal, prefix)}» (created {received}); found: record its ПОС id "
            "(gateway outbox found / POST /api/v1/calls/{id}/pos-record), not there: "
            "re-drive this row")


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _z(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class EasClient:
    """Registrar and RecordReader for ПОС's EAS; one connection pool, `aclose()` at the end."""

    system = SYSTEM
    # Nothing finds an EAS appeal by our id: `Forwarding` passes `lookup_first` only for a
    # retry of the same claim sequence, never for a person's re-drive ("not there → send").
    cannot_look_up = True

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str,
        client_secret: str,
        oauth_client: str,
        oauth_secret: str,
        region_id: int,
        ogrn: str | None = None,
        scope: str = "any",
        mapping: EasMapping | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        rate_per_hour: float = 1800.0,
        schedule: ScheduleSettings | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        rate_cap: RateCap | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.mapping = mapping if mapping is not None else load_eas_mapping()
        self._form = {"username": client_id, "password": client_secret, "scope": scope,
                      "grant_type": "password"}
        pair = base64.b64encode(f"{oauth_client}:{oauth_secret}".encode()).decode()
        self._basic = f"Basic {pair}"
        self._region_id = region_id
        self._ogrn = ogrn
        self._token: str | None = None
        self._token_lock = asyncio.Lock()
        self._not_sent: dict[str, None] = {}  # keys whose last try provably never left
        self.schedule = PollSchedule(schedule)
        self.rate_cap = rate_cap or RateCap(rate_per_hour)
        self._now = now
        self.token_calls = 0
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Accept": "application/json", "User-Agent": "hotline-gateway"},
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport, follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    # --- the token ---------------------------------------------------------------------

    async def _authenticate(self, stale: str | None) -> str:
        """A fresh token, unless another caller already replaced the stale one."""
        async with self._token_lock:
            if self._token is not None and self._token != stale:
                return self._token
            self.token_calls += 1
            try:
                response = await self._http.post(
                    wire.TOKEN_PATH, data=self._form, headers={"Authorization": self._basic})
            except httpx.HTTPError as exc:
                # Nothing was created: the create has not been sent yet.
                raise Transient(f"pos token: no answer ({type(exc).__name__})") from None
            if response.status_code >= 500 or response.status_code == 429:
                raise Transient(f"pos token: failed (HTTP {response.status_code})",
                                retry_after_of(response))
            if response.status_code != 200:
                raise TokenRefused(
                    f"configuration: pos token call answered {response.status_code}; check "
                    "the client id/secret and the OAuth client pair")
            try:
                self._token = wire.TokenReply.model_validate_json(response.content).access_token
            except ValidationError:
                raise TokenRefused("configuration: pos token call gave no access_token") from None
            return self._token

    async def _call(self, method: str, path: str, *, json_body: bytes | None = None
                    ) -> httpx.Response:
        """One request with the cached token; on 401/403 one re-authentication and replay.

        A 401/403 means the request was refused before processing, so the replay cannot
        duplicate anything (pos-eas.md §1.2, C3)."""
        token = self._token or await self._authenticate(None)
        headers: Mapping[str, str] = {"Content-Type": "application/json"} if json_body else {}
        for replay in (False, True):
            response = await self._http.request(
                method, path, content=json_body,
                headers={**headers, "Authorization": f"Bearer {token}"})
            if response.status_code not in (401, 403) or replay:
                return response
            log.info("pos_eas.reauthenticate", status=response.status_code)
            token = await self._authenticate(token)
        raise AssertionError("unreachable")

    # --- Registrar ---------------------------------------------------------------------

    async def register(self, appeal: Appeal, *, lookup_first: bool = False) -> ExternalRef:
        """Create the appeal in ПОС; park rather than risk a second create.

        `lookup_first` here means "an earlier try of this row may have had its effect":
        unless this process saw that try fail before anything left, the row is parked.
        """
        key = appeal.registration_key
        target = appeal.route.pos
        if target is None:
            raise Permanent("configuration: the appeal's route has no ПОС target")
        if lookup_first and key not in self._not_sent:
            raise Permanent(ambiguous_reason(appeal, target.text_prefix,
                                             "an earlier pos create was interrupted"))
        body = self.create_body(appeal)
        try:
            response = await self._call("POST", wire.CREATE_PATH,
                                        json_body=body.model_dump_json(exclude_none=True).encode())
        except httpx.HTTPError as exc:
            if not_sent(exc):
                self._remember_not_sent(key)
                raise Transient(f"pos create: not sent ({type(exc).__name__})") from None
            self._not_sent.pop(key, None)
            raise Permanent(ambiguous_reason(
                appeal, target.text_prefix,
                f"pos create sent, answer lost ({type(exc).__name__})")) from None
        except Transient:
            self._remember_not_sent(key)  # the token call failed: the create never left
            raise
        status = response.status_code
        if status in (200, 201):
            try:
                created = wire.EasAppeal.model_validate_json(response.content)
            except ValidationError:
                created = None
            if created is None:
                self._not_sent.pop(key, None)
                raise Permanent(ambiguous_reason(appeal, target.text_prefix,
                                                 f"pos create answered {status} unreadably"))
            self._not_sent.pop(key, None)
            log.info("pos_eas.created", pos_id=str(created.posId))
            return ExternalRef(system=SYSTEM, id=str(created.posId), number=str(created.posId),
                               stage=created.status, status=created.statusText)
        if status == 429:  # never seen from ПОС; refused before processing, by its meaning
            self._remember_not_sent(key)
            raise Transient("pos create: throttled (HTTP 429)", retry_after_of(response))
        if status in (401, 403):
            raise Permanent(f"configuration: pos create answered {status} after a fresh token; "
                            "check the integration's rights")
        if status >= 500 or status == 408:
            self._not_sent.pop(key, None)
            raise Permanent(ambiguous_reason(appeal, target.text_prefix,
                                             f"pos create answered HTTP {status}"))
        raise Permanent(f"pos create: refused (HTTP {status})")

    def create_body(self, appeal: Appeal) -> wire.CreateAppeal:
        """E7's body; our journal id follows the marker, `createdAt` is the call's time."""
        target = appeal.route.pos
        assert target is not None
        applicant = appeal.applicant
        if applicant.epgu_id is None:
            raise Permanent("pos create: the applicant has no epguId, which ПОС EAS requires; "
                            "route the call to the fallback")
        head = marker(appeal, target.text_prefix)
        try:
            return wire.CreateAppeal(
                regionId=self._region_id,
                description=message_text(head, appeal.summary),
                createdAt=_z(appeal.received_at),
                applicant=wire.EasApplicant(
                    epguId=applicant.epgu_id, name=applicant.first_name,
                    surname=applicant.last_name or None,
                    patronymic=applicant.middle_name or None,
                    email=applicant.email or None, phone=applicant.phone or None),
                subjectId=target.category_id, subsubjectId=target.subcategory_id,
                location=appeal.problem_address or None,
                organizationInfo=wire.OrganizationRef(ogrn=self._ogrn) if self._ogrn else None,
            )
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
            raise Permanent(f"pos create: appeal cannot be sent, invalid {fields}") from None

    def _remember_not_sent(self, key: str) -> None:
        self._not_sent[key] = None
        while len(self._not_sent) > 10_000:
            del self._not_sent[next(iter(self._not_sent))]

    # --- dictionaries (pos-eas.md §3) ----------------------------------------------------

    async def read_dictionaries(self) -> Dictionaries:
        """E1, E3 and E5 for the configured region; raises Transient/Permanent on failure."""
        region = self._region_id
        regions_body = await self._dictionary(wire.REGIONS_PATH, {})
        subjects_body = await self._dictionary(wire.SUBJECTS_PATH.format(region_id=region),
                                               {"size": wire.DICTIONARY_PAGE})
        subsubjects_body = await self._dictionary(
            wire.SUBSUBJECTS_PATH, {"regionId": region, "size": wire.DICTIONARY_PAGE})
        try:
            regions = _REGIONS.validate_json(regions_body)
            subjects = wire.SubjectPage.model_validate_json(subjects_body)
            subsubjects = wire.SubsubjectPage.model_validate_json(subsubjects_body)
        except ValidationError:
            raise Transient("pos dictionary: unreadable answer") from None
        return Dictionaries(
            region_id=region, synced_at=_utc(self._now()).isoformat(),
            regions=[Entry(r.id, r.name) for r in regions],
            subjects=[Entry(s.id, s.name, s.deleted) for s in subjects.content],
            subsubjects=[Entry(s.id, s.name, s.deleted, s.subject.id if s.subject else None)
                         for s in subsubjects.content])

    async def _dictionary(self, path: str, params: dict[str, int]) -> bytes:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        try:
            response = await self._call("GET", f"{path}?{query}" if query else path)
        except httpx.HTTPError as exc:
            raise Transient(f"pos dictionary: no answer ({type(exc).__name__})") from None
        if response.status_code != 200:
            if response.status_code >= 500 or response.status_code == 429:
                raise Transient(f"pos dictionary: failed (HTTP {response.status_code})")
            raise Permanent(f"pos dictionary {path}: refused (HTTP {response.status_code})")
        return response.content

    # --- reading: per appeal, budgeted ---------------------------------------------------

    # --- DeliveryConfirmer: none in EAS ------------------------------------------------

    async def confirm_delivery(self, external_id: str, channel: DeliveryChannel,
                               confirmed_at: datetime, comment: str | None = None) -> None:
        """EAS has no delivery confirmation (pos-eas.md §9.4): the delivery stays recorded
        locally and the row ends among the dead letters as the worklist item
        "confirm in ПОС" for ministry staff, who confirm it in ПОС's own UI."""
        raise Permanent(f"{CONFIRM_IN_POS} ПОС {external_id}: delivery by {channel.value} on "
                        f"{_utc(confirmed_at):%Y-%m-%d}; EAS has no confirmation endpoint")

    def due_lag_s(self, now: datetime) -> float:
        """The port ReadBacklog: /status shows how far per-appeal reads are behind."""
        return self.schedule.lag_s(now)

    async def fetch_updates(self, cursor: str | None, limit: int) -> UpdatesPage:
        """EAS has no list: nothing to page through. Open appeals are read by `get_update`."""
        return UpdatesPage(updates=(), next_cursor=None, resume_from=cursor)

    async def get_update(self, external_id: str) -> ExternalUpdate | None:
        """The appeal's state when its schedule says so; None when not due or unknown."""
        now = self._now()
        if not self.schedule.is_due(external_id, now):
            return None
        await self.rate_cap.acquire()
        path = wire.READ_PATH.format(pos_id=external_id)
        try:
            response = await self._call("GET", path)
        except httpx.HTTPError as exc:
            raise Transient(f"pos read: no answer ({type(exc).__name__})") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            if response.status_code >= 500 or response.status_code == 429:
                raise Transient(f"pos read: failed (HTTP {response.status_code})",
                                retry_after_of(response))
            raise Permanent(f"pos read: refused (HTTP {response.status_code})")
        try:
            appeal = wire.EasAppeal.model_validate_json(response.content)
        except ValidationError:
            raise Transient("pos read: unreadable answer") from None
        history = _unique_history(appeal.history or [])
        self.schedule.record(
            external_id, self._now(), created_at=appeal.createdAt, answer_at=appeal.answerAt,
            terminal=self.mapping.is_terminal(appeal.status),
            fingerprint=(appeal.status, len(history), appeal.opaId))
        return self.to_update(appeal, history)

    def to_update(self, appeal: wire.EasAppeal,
                  history: list[wire.HistoryEntry]) -> ExternalUpdate | None:
        """The top-level code is current; the answer is the latest SEND_RESPONSE entry."""
        if not self.mapping.is_known(appeal.status):
            log.warning("pos_eas_unknown_code", code=appeal.status[:64],
                        pos_id=str(appeal.posId))
        status = self.mapping.status_for(appeal.status)
        if status is None:
            return None
        latest = history[-1].createdAt if history else (appeal.createdAt or self._now())
        executor = appeal.organizationInfo.name if appeal.organizationInfo else None
        answer = None
        for entry in reversed(history):
            if entry.status == "SEND_RESPONSE" and entry.answer is not None:
                answer = Answer(text=entry.answer.comment or "", approved_at=_utc(entry.createdAt),
                                organization=executor)
                break
            if entry.status == "MODERATION_DECLINE" and entry.answer is not None:
                reason = (entry.answer.rejectReason or {}).get("name")
                answer = Answer(text=str(reason or entry.answer.comment or ""),
                                approved_at=_utc(entry.createdAt), organization=executor)
                break
        if answer is not None and not answer.text:
            answer = None
        return ExternalUpdate(
            system=SYSTEM, external_id=str(appeal.posId), appeal_id=None,
            stage=appeal.status, status=status, updated_at=_utc(latest),
            planned_completion=appeal.answerAt.date() if appeal.answerAt else None,
            answer=answer,
        )


def _unique_history(entries: list[wire.HistoryEntry]) -> list[wire.HistoryEntry]:
    """History keyed by (code, time), oldest first: a repeated entry counts once."""
    seen: dict[tuple[str, datetime], wire.HistoryEntry] = {}
    for entry in entries:
        seen.setdefault((entry.status, _utc(entry.createdAt)), entry)
    return sorted(seen.values(), key=lambda e: _utc(e.createdAt))
