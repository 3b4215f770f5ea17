"""«Дело» adapter: registers calls as cards of letters of citizens and follows their answers.

A call routed to Дело becomes a registration card (DOC_RC) of the letters-of-citizens
group with a resolution under control and the executor's REPLY line [002: 2.8.6-2.8.9];
the poller watches REPLY rows for the registered answer [002: 2.8.10]; control is removed
only after the applicant was actually told [002: 2.8.11]. It speaks Дело-Web's session
login and OData v3 (`criteries` reads, `$batch` writes) as written down in CONTRACT.md.

Exactly-once: every card carries the appeal id in its annotation. `register` looks the
card up before creating it whenever an earlier attempt may have taken effect: the outbox
says so on every retry (`lookup_first`), and this process also remembers appeals whose
changeset ended ambiguous. First attempts skip the lookup, because in a real Дело it is a
LIKE over DOC_RC.ANNOTAT that no index serves.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from types import TracebackType
from typing import Any, Final, Generic, Self, TypeVar
from zoneinfo import ZoneInfo

import httpx
from pydantic import ValidationError

from adapters.delo import wire
from adapters.delo.multipart import (
    BatchUnit,
    EmbeddedRequest,
    EmbeddedResponse,
    MultipartError,
    decode_responses,
    encode_requests,
)
from adapters.http_outcomes import (
    Verdict,
    status_outcome,
    status_verdict,
    transport_outcome,
)
from gateway.domain.appeal import Appeal, AppealStatus, Applicant, DeliveryChannel, Urgency
from gateway.domain.ports import Answer, ExternalRef, ExternalUpdate, UpdatesPage
from outbox import Ambiguous, HandlerOutcome, Permanent, Transient

SYSTEM: Final = "delo"
MOSCOW: Final = ZoneInfo("Europe/Moscow")
# Stages the adapter reports: Дело's own words for a REPLY line and for the card.
STAGE_ON_CONTROL: Final = "on_control"  # «на контроле»
STAGE_REPLY_PENDING: Final = "reply_pending"  # «не исполнено»
STAGE_REPLY_DONE: Final = "reply_done"  # «исполнено»: the answer memo is registered
STAGE_CONTROL_REMOVED: Final = "control_removed"  # «снято с контроля»

_KEYS_PER_READ: Final = 100  # the public client splits id lists near 1,500 characters
_CHANNEL_WORDS: Final = {
    DeliveryChannel.PHONE: "по телефону",
    DeliveryChannel.EMAIL: "по электронной почте",
    DeliveryChannel.POST: "почтой",
    DeliveryChannel.HAND: "лично",
}


class DeloClient:
    """Registrar, StatusSource and DeliveryConfirmer for Дело-Web.

    One instance is shared by all tasks: it holds one session (logged in lazily, renewed
    once on expiry) and small caches of facts that never change once written (which card
    a resolution belongs to, which appeal a card carries, dictionary keys).
    """

    system: Final = SYSTEM

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout_s: float = 15.0,
        connect_timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        docgroup_due: str | None = None,
        executor_dues: Sequence[str] = (),
        hotline_zone: Callable[[str], tzinfo] | None = None,
        server_zone: tzinfo = MOSCOW,
        initial_since: datetime | None = None,
        overlap_s: float = 60.0,
        annotation_max_len: int = 2000,
        cache_size: int = 100_000,
    ) -> None:
        """Plain values only; the wiring module reads them from settings.

        docgroup_due: which letters-of-citizens group to register into when Дело has
        several groups with RC_TYPE 2. executor_dues: the departments the routing table
        sends to; the poller reads only their REPLY rows. hotline_zone: the zone a
        hotline's dates are told in (PLAN_DATE, DOC_DATE). server_zone: the zone of Дело's
        naive timestamps. initial_since: where the very first poll starts (deploy time).
        overlap_s: how far back each poll cycle re-reads, for rows committed late.
        """
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            transport=transport,
            follow_redirects=False,
        )
        self._username = username
        self._password = password
        self._docgroup_due = docgroup_due
        self._executor_dues = tuple(executor_dues)
        self._hotline_zone = hotline_zone or (lambda _hotline: MOSCOW)
        self._server_zone = server_zone
        self._initial_since = initial_since
        self._overlap = timedelta(seconds=max(0.0, overlap_s))
        self._annotation_max_len = annotation_max_len
        self._login_lock = asyncio.Lock()
        self._docgroup: wire.DocGroup | None = None
        self._rubric_dues = _Lru[str, str](1000)
        self._card_of_resolution = _Lru[int, int](cache_size)
        self._appeal_of_card = _Lru[int, str | None](cache_size)
        self._uncertain = _Lru[str, bool](cache_size)  # appeals whose create may have landed

    def __repr__(self) -> str:  # never the password
        return f"DeloClient({str(self._http.base_url)!r}, user={self._username!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ---- Registrar ------------------------------------------------------------------------

    async def register(self, appeal: Appeal, *, lookup_first: bool = False) -> ExternalRef:
        """The appeal's card in Дело, created once.

        `lookup_first` is the outbox saying an earlier attempt may have taken effect; the
        card is then looked up by its marker, and only created if it is not there.
        """
        target = appeal.route.delo
        if target is None:
            raise Permanent("delo: the route has no Дело target (rubric, executor, controller)")
        if appeal.due_at is None:
            raise Permanent("delo: the appeal has no due date; a card on control needs one")
        docgroup = await self._letters_group()
        if lookup_first or self._uncertain.has(appeal.id):
            existing = await self.find_card(appeal.id)
            if existing is not None:
                self._uncertain.discard(appeal.id)
                return self._ref(existing)
        rubric_due = await self._rubric_due(target.rubric_code)
        citizen = await self._find_citizen(appeal.applicant)
        zone = self._hotline_zone(appeal.hotline)
        plan_date = wire.delo_date(appeal.due_at.astimezone(zone).date())
        temp = _TempKeys()
        card, resolution, operations = temp.next(), temp.next(), []
        if citizen is None:
            citizen = temp.next()
            operations.append(_post(wire.CITIZEN, _citizen_row(citizen, appeal.applicant)))
        operations += [
            _post(wire.DOC_RC, {
                "ISN_DOC": card,
                "DUE_DOCGROUP": docgroup.DUE,
                "DOC_DATE": wire.delo_date(appeal.received_at.astimezone(zone).date()),
                "PLAN_DATE": plan_date,
                "CONTROL_STATE": wire.CONTROL_ON,
                # «Срочно» [002: 2.8.7]
                "CITO": 1 if appeal.urgency == Urgency.URGENT else 0,
                "ANNOTAT": self._annotation(appeal),
                "ISN_CITIZEN": citizen,
            }),
            _post(wire.DOC_RUBRIC, {"ISN_REF_DOC": card, "DUE_RUBRIC": rubric_due}),
            _post(wire.RESOLUTION, {
                "ISN_RESOLUTION": resolution,
                "ISN_REF_DOC": card,
                "RESOLUTION_TEXT": "Рассмотреть обращение гражданина и подготовить ответ "
                                   "служебной запиской",
                "PLAN_DATE": plan_date,
                "CONTROL_STATE": wire.CONTROL_ON,
                "DUE_CONTROLLER": target.controller_due,
            }),
            _post(wire.REPLY, {
                "ISN_REPLY": temp.next(),
                "ISN_RESOLUTION": resolution,
                "DUE": target.executor_due,
                "PLAN_DATE": plan_date,
            }),
        ]
        try:
            created = await self._submit(operations)
        except Ambiguous:
            self._uncertain.put(appeal.id, True)
            raise
        if card not in created or resolution not in created:
            # The server said yes but not to what; the next attempt's lookup will tell.
            self._uncertain.put(appeal.id, True)
            raise Ambiguous("delo: $batch answered without the new card's key")
        self._uncertain.discard(appeal.id)
        isn_doc = created[card].FixedISN
        self._appeal_of_card.put(isn_doc, appeal.id)
        self._card_of_resolution.put(created[resolution].FixedISN, isn_doc)
        number = created[card].FREE_NUM or await self._free_num(isn_doc)
        return ExternalRef(SYSTEM, str(isn_doc), number, STAGE_ON_CONTROL, "registered")

    async def find_card(self, appeal_id: str) -> wire.DocRc | None:
        """The card carrying this appeal's marker, the oldest one if ever there were two."""
        docgroup = await self._letters_group()
        marker = wire.appeal_marker(appeal_id)
        rows = await self._read(wire.DOC_RC, {
            "DUE_DOCGROUP": docgroup.DUE, "ANNOTAT": wire.containing(marker),
        }, top=10, orderby="ISN_DOC")
        # LIKE may match more than the marker; keep the exact ones.
        cards = [c for c in _parse(wire.DocRc, rows) if marker in (c.ANNOTAT or "")]
        if not cards:
            return None
        self._appeal_of_card.put(cards[0].ISN_DOC, appeal_id)
        return cards[0]

    # ---- StatusSource ---------------------------------------------------------------------

    async def fetch_updates(self, cursor: str | None, limit: int) -> UpdatesPage:
        """REPLY rows changed since the cursor, oldest change first.

        The cursor is the last UPD_DATE seen and the rows already seen at exactly that
        timestamp (key and content digest), so ties are neither lost nor repeated, a row
        changed twice within one timestamp tick still comes back, and paging is by key,
        not offset: a row updated while we page moves behind us and is read again.

        Each cycle starts `overlap_s` before the stored timestamp: a row committed late
        carries an UPD_DATE older than rows already read, and would otherwise be missed.
        Re-reads are harmless (applying an update is idempotent) but cost pages: a cycle
        reads the rows changed since the last one plus those changed within `overlap_s`
        before it. Mid-cycle cursors remember where the cycle began (`floor`), so the next
        cycle never starts behind it.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        position = _Cursor.decode(cursor) if cursor else _Cursor(self._start(), ())
        position = self._cycle_start(position)
        filters: dict[str, str] = {}
        if position.since is not None:
            filters["UPD_DATE"] = wire.at_or_after(position.since)
        if self._executor_dues:
            filters["DUE"] = wire.any_of(self._executor_dues)
        if not filters:
            filters["ISN_RESOLUTION"] = "isnotnull"  # the public client's "all rows"
        top = limit + len(position.seen)
        rows = _parse(wire.Reply, await self._read(
            wire.REPLY, filters, top=top, orderby="UPD_DATE,ISN_REPLY"
        ))
        fresh = [
            r for r in rows
            if not (position.since == r.UPD_DATE and _seen_key(r) in position.seen)
        ]
        cards = await self._cards_of(fresh)
        appeals = await self._appeals_of(set(cards.values()))
        updates = []
        for reply in fresh:
            isn_doc = cards.get(reply.ISN_RESOLUTION)
            appeal_id = appeals.get(isn_doc) if isn_doc is not None else None
            if isn_doc is None or appeal_id is None:
                continue  # not a card the gateway registered
            updates.append(self._update(reply, isn_doc, appeal_id))
        after = position.advanced(rows)
        full = len(rows) >= top
        if full:
            return UpdatesPage(updates=updates, next_cursor=after.encode())
        return UpdatesPage(updates=updates, next_cursor=None, resume_from=after.resumed().encode())

    def _cycle_start(self, position: _Cursor) -> _Cursor:
        """A cycle's first read reaches back by the overlap; a mid-cycle cursor goes on."""
        if position.floor is not None:
            return position
        if position.since is None or not self._overlap:
            return _Cursor(position.since, position.seen, floor=position)
        since = wire.parse_delo_datetime(position.since) - self._overlap
        return _Cursor(wire.delo_datetime(since), (), floor=position)

    # ---- DeliveryConfirmer ----------------------------------------------------------------

    async def confirm_delivery(
        self, external_id: str, channel: DeliveryChannel, confirmed_at: datetime,
        comment: str | None = None,
    ) -> None:
        """Removes the card and its resolutions from control, once the answer was told.

        [002: 2.8.11] control is removed only after the applicant was actually told; Дело
        must hold the executor's registered answer, else this refuses (an admin looks).
        Repeating it is harmless: rows already off control are not written again.
        """
        isn_doc = _isn(external_id)
        card_rows = await self._read(wire.DOC_RC, {"ISN_DOC": str(isn_doc)}, top=1)
        if not card_rows:
            raise Permanent("delo: the card to close is not in Дело")
        card = _parse(wire.DocRc, card_rows)[0]
        resolutions = _parse(wire.Resolution, await self._read(
            wire.RESOLUTION, {"ISN_REF_DOC": str(isn_doc)}, top=100
        ))
        replies = await self._replies_of([r.ISN_RESOLUTION for r in resolutions])
        if not any(r.REPLY_DATE for r in replies):
            raise Permanent(
                "delo: no executed REPLY on the card; control stays until the answer is "
                "registered [002: 2.8.10-2.8.11]"
            )
        when = confirmed_at.astimezone(self._server_zone)
        note = f"Ответ доведён до заявителя {_CHANNEL_WORDS[channel]} {when:%d.%m.%Y}"
        if comment:
            note += f". {comment}"
        operations = [
            _merge(wire.RESOLUTION, r.ISN_RESOLUTION,
                   {"CONTROL_STATE": wire.CONTROL_OFF, "RESUME": note})
            for r in resolutions if r.CONTROL_STATE != wire.CONTROL_OFF
        ]
        if card.CONTROL_STATE != wire.CONTROL_OFF:
            operations.append(_merge(wire.DOC_RC, isn_doc, {"CONTROL_STATE": wire.CONTROL_OFF}))
        if operations:
            await self._submit(operations)

    # ---- reads behind the three calls -----------------------------------------------------

    async def _letters_group(self) -> wire.DocGroup:
        if self._docgroup is not None:
            return self._docgroup
        filters = {"RC_TYPE": str(wire.RC_TYPE_CITIZENS)}
        if self._docgroup_due:
            filters["DUE"] = self._docgroup_due
        groups = _parse(wire.DocGroup, await self._read(
            wire.DOCGROUP_CL, filters, top=10, orderby="DUE"
        ))
        if not groups:
            raise Permanent("delo: no letters-of-citizens document group (RC_TYPE 2) "
                            "(configuration: docgroup_due)")
        if len(groups) > 1 and not self._docgroup_due:
            raise Permanent("delo: several letters-of-citizens groups; choose one "
                            "(configuration: docgroup_due)")
        self._docgroup = groups[0]
        return groups[0]

    async def _rubric_due(self, rubric_code: str) -> str:
        cached = self._rubric_dues.get(rubric_code)
        if cached is not None:
            return cached
        rubrics = _parse(wire.Rubric, await self._read(
            wire.RUBRIC_CL, {"RUBRIC_CODE": rubric_code}, top=2
        ))
        if not rubrics:
            raise Permanent(f"delo: rubric {rubric_code} is not in RUBRIC_CL "
                            "(configuration: routing table)")
        self._rubric_dues.put(rubric_code, rubrics[0].DUE)
        return rubrics[0].DUE

    async def _find_citizen(self, applicant: Applicant) -> int | None:
        """An existing CITIZEN with the same contact and the same full name.

        A contact alone is not enough (a family shares a phone), nor is a name (namesakes);
        without a phone or e-mail a new CITIZEN is created, which duplicates a person at
        worst, never a card.
        """
        name = applicant.full_name.casefold()
        for field, value in (("PHONE", applicant.phone), ("E_MAIL", applicant.email)):
            if not value:
                continue
            citizens = _parse(wire.Citizen, await self._read(
                wire.CITIZEN, {field: value}, top=20, orderby="ISN_CITIZEN"
            ))
            for citizen in citizens:
                if (citizen.CITIZEN_SURNAME or "").strip().casefold() == name:
                    return citizen.ISN_CITIZEN
        return None

    async def _free_num(self, isn_doc: int) -> str | None:
        """The registration number Дело gave the card; the card stands without it."""
        try:
            rows = await self._read(wire.DOC_RC, {"ISN_DOC": str(isn_doc)}, top=1)
        except HandlerOutcome:
            return None
        cards = _parse(wire.DocRc, rows)
        return cards[0].FREE_NUM if cards else None

    async def _cards_of(self, replies: Iterable[wire.Reply]) -> dict[int, int]:
        """ISN_RESOLUTION -> ISN_DOC for these replies, reading only what is not cached."""
        cards: dict[int, int] = {}
        unknown = set()
        for reply in replies:
            isn_doc = reply.ISN_REF_DOC or self._card_of_resolution.get(reply.ISN_RESOLUTION)
            if isn_doc is None:
                unknown.add(reply.ISN_RESOLUTION)
            else:
                cards[reply.ISN_RESOLUTION] = isn_doc
        for row in await self._read_keys(wire.RESOLUTION, "ISN_RESOLUTION", unknown):
            resolution = wire.Resolution.model_validate(row)
            self._card_of_resolution.put(resolution.ISN_RESOLUTION, resolution.ISN_REF_DOC)
            cards[resolution.ISN_RESOLUTION] = resolution.ISN_REF_DOC
        return cards

    async def _appeals_of(self, isn_docs: set[int]) -> dict[int, str | None]:
        """ISN_DOC -> appeal id from the annotation marker (None: not the gateway's card)."""
        appeals: dict[int, str | None] = {}
        unknown = set()
        for isn_doc in isn_docs:
            if self._appeal_of_card.has(isn_doc):
                appeals[isn_doc] = self._appeal_of_card.get(isn_doc)
            else:
                unknown.add(isn_doc)
        found = {}
        for row in await self._read_keys(wire.DOC_RC, "ISN_DOC", unknown):
            card = wire.DocRc.model_validate(row)
            found[card.ISN_DOC] = wire.appeal_id_in(card.ANNOTAT)
        for isn_doc in unknown:
            # A card that vanished is remembered as foreign too: it cannot be answered.
            self._appeal_of_card.put(isn_doc, found.get(isn_doc))
            appeals[isn_doc] = found.get(isn_doc)
        return appeals

    async def _replies_of(self, isn_resolutions: Sequence[int]) -> list[wire.Reply]:
        rows = await self._read_keys(wire.REPLY, "ISN_RESOLUTION", set(isn_resolutions))
        return _parse(wire.Reply, rows)

    async def _read_keys(
        self, entity: str, key: str, values: set[int]
    ) -> list[dict[str, Any]]:
        ordered = sorted(values)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ordered), _KEYS_PER_READ):
            chunk = tuple(str(v) for v in ordered[start:start + _KEYS_PER_READ])
            rows += await self._read(entity, {key: wire.any_of(chunk)}, top=1000)
        return rows

    def _update(self, reply: wire.Reply, isn_doc: int, appeal_id: str) -> ExternalUpdate:
        updated_at = self._aware(wire.parse_delo_datetime(reply.UPD_DATE))
        planned = wire.parse_delo_datetime(reply.PLAN_DATE).date() if reply.PLAN_DATE else None
        if reply.REPLY_DATE:
            answer = Answer(
                text=reply.REPLY_TEXT or "",
                approved_at=self._aware(wire.parse_delo_datetime(reply.REPLY_DATE)),
            )
            return ExternalUpdate(
                SYSTEM, str(isn_doc), appeal_id, STAGE_REPLY_DONE, AppealStatus.ANSWER_READY,
                updated_at, planned, answer,
            )
        return ExternalUpdate(
            SYSTEM, str(isn_doc), appeal_id, STAGE_REPLY_PENDING, AppealStatus.IN_PROGRESS,
            updated_at, planned,
        )

    def _aware(self, value: datetime) -> datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=self._server_zone)
        return value.astimezone(UTC)

    def _start(self) -> str | None:
        if self._initial_since is None:
            return None
        return wire.delo_datetime(self._initial_since.astimezone(self._server_zone))

    def _annotation(self, appeal: Appeal) -> str:
        # The marker goes first so that trimming a long summary never cuts it; the card
        # carries the problem's address and the operator who took the call [002: 2.8.6],
        # before the summary for the same reason.
        parts = [f"{wire.appeal_marker(appeal.id)} {appeal.topic}."]
        if appeal.problem_address:
            parts.append(f"Адрес проблемы: {appeal.problem_address}.")
        parts.append(f"Оператор: {appeal.operator}.")
        parts.append(appeal.summary)
        return " ".join(parts)[: self._annotation_max_len]

    @staticmethod
    def _ref(card: wire.DocRc) -> ExternalRef:
        stage = STAGE_CONTROL_REMOVED if card.CONTROL_STATE == wire.CONTROL_OFF else (
            STAGE_ON_CONTROL
        )
        return ExternalRef(SYSTEM, str(card.ISN_DOC), card.FREE_NUM, stage, "registered")

    # ---- transport: session, reads, $batch, outcomes --------------------------------------

    async def _read(
        self, entity: str, filters: dict[str, str], *, top: int, skip: int = 0,
        orderby: str | None = None,
    ) -> list[dict[str, Any]]:
        params: dict[str, str | int] = {"criteries": wire.criteries(filters), "$top": top}
        if skip:
            params["$skip"] = skip
        if orderby:
            params["$orderby"] = orderby
        response = await self._call("GET", wire.ODATA_PATH + entity, f"read {entity}",
                                    effect=False, params=params)
        try:
            return wire.rows_of(response.json())
        except ValueError:
            raise Transient(f"delo: read {entity} answered with something not OData") from None

    async def _submit(self, operations: list[EmbeddedRequest]) -> dict[int, wire.Created]:
        """Sends one atomic changeset; what each temporary key became on the server.

        A changeset is all or nothing on the server, so an answer in which any part
        failed means nothing was applied: the failing part's status decides between
        Permanent (4xx) and Transient (5xx). Were a server ever to apply part of one,
        the lookup by marker on the next attempt still prevents a second card.
        """
        body, content_type = encode_requests([BatchUnit(True, tuple(operations))])
        response = await self._call(
            "POST", wire.BATCH_PATH, "$batch", effect=True, content=body,
            headers={"Content-Type": content_type, "Accept": "multipart/mixed"},
            expired=_batch_session_expired,
        )
        try:
            units = decode_responses(response.content, response.headers.get("content-type", ""))
        except (MultipartError, UnicodeDecodeError):
            raise Ambiguous("delo: $batch answer unreadable; the changeset may have "
                            "been applied") from None
        parts = [part for unit in units for part in unit.messages]
        failed = next((p for p in parts if not p.ok), None)
        if failed is not None:
            raise _part_outcome(failed)
        if len(units) != 1 or not units[0].changeset or len(parts) != len(operations):
            raise Ambiguous("delo: $batch answer does not match the changeset sent")
        created: dict[int, wire.Created] = {}
        for part in parts:
            try:
                payload = part.json()
                if isinstance(payload, dict) and "TempISN" in payload:
                    row = wire.Created.model_validate(payload)
                    created[row.TempISN] = row
            except (ValueError, ValidationError):
                continue  # a part we cannot read leaves its key missing: Ambiguous above
        return created

    async def _call(
        self, method: str, path: str, what: str, *, effect: bool,
        params: dict[str, str | int] | None = None, content: bytes | None = None,
        headers: dict[str, str] | None = None,
        expired: Callable[[httpx.Response], bool] | None = None,
    ) -> httpx.Response:
        """One call in the session, renewed once if Дело says the session is gone.

        `effect` says whether the call changes anything: a write whose answer was lost
        is Ambiguous, a read is only Transient. The session cookie travels in the
        client's cookie jar, where the login answer put it.

        A session lost again right after a fresh login is Transient, not a configuration
        error: sessions do expire moments after a login (a server restart, a short
        timeout), and the login itself succeeded. The outbox's retry policy bounds the
        repeats; only a refused login says the configuration is wrong.
        """
        is_expired = expired or _session_expired
        for attempt in (1, 2):
            session_id = await self._session()
            try:
                response = await self._http.request(
                    method, path, params=params, content=content, headers=headers,
                )
            except httpx.TransportError as exc:
                raise transport_outcome(exc, f"delo: {what}", write=effect) from None
            if is_expired(response):
                await self._forget_session(session_id)
                if attempt == 1:
                    continue
                raise Transient(f"delo: {what}: session lost again right after a fresh "
                                "login; will log in anew")
            _raise_for_status(response, what, effect=effect)
            return response
        raise AssertionError("unreachable")

    async def _session(self) -> str:
        """The session id in the cookie jar, logging in first when there is none."""
        current = self._session_cookie()
        if current is not None:
            return current
        async with self._login_lock:
            current = self._session_cookie()
            if current is None:
                current = await self._login()
            return current

    def _session_cookie(self) -> str | None:
        return self._http.cookies.get(wire.SESSION_COOKIE) or None

    async def _forget_session(self, stale: str) -> None:
        async with self._login_lock:
            # Another task may have logged in again already; keep its session.
            if self._session_cookie() == stale:
                self._http.cookies.delete(wire.SESSION_COOKIE)

    async def _login(self) -> str:
        """A fresh session; the login URL carries the password, so it is never shown.

        httpx keeps the answer's `Set-Cookie` in the client's jar, and every later call
        carries it from there.
        """
        self._http.cookies.delete(wire.SESSION_COOKIE)
        try:
            response = await self._http.get(wire.LOGIN_PATH, params={
                "app": "api", "username": self._username, "pass": self._password,
            })
        except httpx.TransportError as exc:
            raise transport_outcome(exc, "delo: login", write=False) from None
        if not response.is_success and status_verdict(
                response.status_code, write=False) is not Verdict.PERMANENT:
            raise status_outcome(response, "delo: login", write=False)
        session_id = self._session_cookie() if response.is_success else None
        if session_id is None:
            self._http.cookies.delete(wire.SESSION_COOKIE)
            raise Permanent(f"delo: login refused (HTTP {response.status_code}) "
                            "(configuration: delo username/password)")
        return session_id


# ---- helpers ----------------------------------------------------------------------------


K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """A bounded map for facts that never change once written in Дело."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def has(self, key: K) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def discard(self, key: K) -> None:
        self._items.pop(key, None)

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


class _TempKeys:
    """Temporary keys for rows created in one changeset (negative, as Дело-Web's client)."""

    def __init__(self) -> None:
        self._last = -20000

    def next(self) -> int:
        self._last -= 1
        return self._last


class _Cursor:
    """Where the REPLY change feed stands: a timestamp and what was seen exactly at it.

    `floor` is set only inside a cycle (it marks a cursor as mid-cycle): the position the
    cycle started from, which the next cycle must not fall behind when the cycle reached
    back by the overlap.
    """

    VERSION: Final = 1

    def __init__(self, since: str | None, seen: Iterable[str],
                 floor: _Cursor | None = None) -> None:
        self.since = since
        self.seen = frozenset(seen)
        self.floor = floor

    @classmethod
    def decode(cls, text: str) -> _Cursor:
        try:
            data = json.loads(text)
            if data.get("v") != cls.VERSION:
                raise ValueError("cursor version")
            floor = data.get("floor")
            return cls(data["since"], (str(k) for k in data.get("seen", ())),
                       None if floor is None else cls(floor["since"],
                                                      (str(k) for k in floor.get("seen", ()))))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Permanent("delo: the stored poll cursor is not one this adapter wrote") from None

    def encode(self) -> str:
        data: dict[str, Any] = {"v": self.VERSION, "since": self.since, "seen": sorted(self.seen)}
        if self.floor is not None:
            data["floor"] = {"since": self.floor.since, "seen": sorted(self.floor.seen)}
        return json.dumps(data, separators=(",", ":"))

    def advanced(self, rows: Sequence[wire.Reply]) -> _Cursor:
        """The position after these rows (ordered by UPD_DATE, then key)."""
        if not rows:
            return self
        last = rows[-1].UPD_DATE
        seen = {_seen_key(r) for r in rows if last == r.UPD_DATE}
        if last == self.since:
            seen |= self.seen
        return _Cursor(last, seen, self.floor)

    def resumed(self) -> _Cursor:
        """Where the next cycle starts: here, or the cycle's start if that lies further on."""
        floor = self.floor
        if floor is None or floor.since is None:
            return _Cursor(self.since, self.seen)
        if self.since is None or self.since < floor.since:  # same layout: text order is time
            return _Cursor(floor.since, floor.seen)
        if self.since == floor.since:
            return _Cursor(self.since, self.seen | floor.seen)
        return _Cursor(self.since, self.seen)


def _seen_key(reply: wire.Reply) -> str:
    """Key plus a digest of what we report, so a second change in the same tick counts."""
    content = f"{reply.REPLY_DATE}|{reply.REPLY_TEXT}|{reply.PLAN_DATE}".encode()
    return f"{reply.ISN_REPLY}:{hashlib.sha256(content).hexdigest()[:12]}"


def _post(entity: str, data: dict[str, Any]) -> EmbeddedRequest:
    return EmbeddedRequest.json("POST", entity, data)


def _merge(entity: str, key: int, data: dict[str, Any]) -> EmbeddedRequest:
    return EmbeddedRequest.json("MERGE", f"{entity}({key})", data)


def _citizen_row(isn: int, applicant: Applicant) -> dict[str, Any]:
    row: dict[str, Any] = {"ISN_CITIZEN": isn, "CITIZEN_SURNAME": applicant.full_name}
    if applicant.phone:
        row["PHONE"] = applicant.phone
    if applicant.email:
        row["E_MAIL"] = applicant.email
    if applicant.postal_address:
        row["CITIZEN_ADDR"] = applicant.postal_address
    return row


RowT = TypeVar("RowT", bound=wire.Row)


def _parse(model: type[RowT], rows: Iterable[dict[str, Any]]) -> list[RowT]:
    try:
        return [model.model_validate(row) for row in rows]
    except ValidationError:
        # The validation text would quote the row, personal data included.
        raise Transient(f"delo: a {model.__name__} row is not as the contract says") from None


def _isn(external_id: str) -> int:
    try:
        return int(external_id)
    except ValueError:
        raise Permanent("delo: the external id is not an ISN_DOC") from None


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _session_expired(response: httpx.Response) -> bool:
    """401, a redirect to the login page, or an error naming the session."""
    if response.status_code == 401:
        return True
    if response.is_redirect:
        return "login" in response.headers.get("location", "").lower()
    return response.status_code >= 400 and wire.odata_error_mentions_session(
        _json_or_none(response)
    )


def _batch_session_expired(response: httpx.Response) -> bool:
    """As `_session_expired`, or a changeset refused inside an accepted batch with 401."""
    if _session_expired(response):
        return True
    if not response.is_success:
        return False
    try:
        units = decode_responses(response.content, response.headers.get("content-type", ""))
    except (MultipartError, UnicodeDecodeError):
        return False
    return any(p.status == 401 for u in units for p in u.messages)


def _raise_for_status(response: httpx.Response, what: str, *, effect: bool) -> None:
    code = response.status_code
    if response.is_success:
        return
    refused = None
    if status_verdict(code, write=effect) is Verdict.PERMANENT:
        if code == 403:
            refused = f"delo: {what} forbidden (HTTP 403) (configuration: the account's rights)"
        else:
            error = wire.odata_error_code(_json_or_none(response))
            detail = f", {error}" if error else ""
            refused = f"delo: {what} refused (HTTP {code}{detail})"
    raise status_outcome(response, f"delo: {what}", write=effect, refused=refused)


def _part_outcome(part: EmbeddedResponse) -> HandlerOutcome:
    """What a failed changeset means: not applied; try again only if the server failed."""
    try:
        error = wire.odata_error_code(part.json())
    except ValueError:
        error = None
    detail = f", {error}" if error else ""
    if part.status == 429 or part.status >= 500:
        return Transient(f"delo: changeset failed on the server (HTTP {part.status}{detail}); "
                         "not applied")
    return Permanent(f"delo: changeset refused (HTTP {part.status}{detail}); not applied")
