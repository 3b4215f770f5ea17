"""`gateway demo`: the whole flow on one machine, for a person to watch.

Starts the ПОС and «Дело» simulators and an SMTP sink on loopback, runs the real gateway
(API and daemon) on the configured database (SQLite by default), feeds it a handful of
realistic calls through its own HTTP API, plays the other side's people (the ministry
answering, an official replying to the e-mail request [004: 10.2], an operator calling
back, staff confirming directly in ПОС), and prints how every call moves to «Ответ готов
к передаче» and on to delivered. The contact centre's mailbox is a second sink's Maildir
(var/mailbox/), read by the same reply reader that reads IMAP in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import httpx
from aiohttp import web
from pydantic import SecretStr

from config.settings import Settings
from gateway.storage.database import is_sqlite

if TYPE_CHECKING:
    from gateway.api.server import Served


@dataclass
class DemoCall:
    journal_id: str
    topic: str
    summary: str
    answer_channel: str
    # How the answer reaches the citizen in this story: "callback" (operator, via the
    # gateway), "pos_staff", "email", "official_reply" (the official answers the e-mail
    # request by a reply letter, then an operator calls back), "none" (journaled only).
    delivery: str
    informational: bool = False
    id: str | None = None
    route: str = ""
    status: str = "—"
    number: str | None = None
    done: bool = False
    delivered_by_demo: bool = False
    history: list[str] = field(default_factory=list)
    replied: bool = False


def demo_calls(run: str) -> list[DemoCall]:
    return [
        DemoCall(f"DEMO-{run}-1", "Отопление", "В квартире нет отопления третий день",
                 "phone", "callback"),
        DemoCall(f"DEMO-{run}-2", "Горячее водоснабжение",
                 "Нет горячей воды во всём подъезде с понедельника", "phone", "pos_staff"),
        DemoCall(f"DEMO-{run}-3", "Энергоснабжение",
                 "Перебои с электричеством вечером, мигает свет", "email", "email"),
        DemoCall(f"DEMO-{run}-4", "Земля и имущество",
                 "Соседний участок огородили с захватом проезда", "phone", "callback"),
        DemoCall(f"DEMO-{run}-5", "Безнадзорные животные",
                 "Стая собак у школы № 5 по утрам", "phone", "official_reply"),
        DemoCall(f"DEMO-{run}-6", "Справочная информация (адреса, телефоны, режим работы)",
                 "Спросили часы приёма МФЦ, ответ дан сразу", "phone", "none",
                 informational=True),
    ]


def _body(call: DemoCall, n: int) -> dict[str, Any]:
    received = datetime.now(UTC) - timedelta(minutes=55)
    return {
        "journal_id": call.journal_id,
        "hotline": "122",
        "received_at": received.isoformat(),
        "operator": "Оператор Демо",
        "applicant": {
            "last_name": "Иванов", "first_name": "Иван", "middle_name": "Иванович",
            "phone": f"+7900555{n:04d}", "email": f"citizen{n}@example.ru",
        },
        "problem_address": f"г. Примерск, ул. Образцовая, {n}",
        "topic": call.topic,
        "summary": call.summary,
        "urgency": "urgent" if n % 2 else "control",
        "answer_channel": call.answer_channel,
        "informational": call.informational,
    }


async def run_demo(settings: Settings, *, once: bool, timeout_s: float, out: TextIO) -> int:
    """Runs the demo; returns 0 when every call reached its end within the time allowed."""
    from adapters.delo.simulator import DeloSimulatorSettings
    from adapters.delo.simulator import create_app as delo_app
    from adapters.email.maildir_box import MaildirMailbox
    from adapters.email.sink import start_sink
    from adapters.pos.simulator import PosSimulatorSettings, start_simulator
    from gateway.api.context import SERVICES_KEY
    from gateway.api.health import metrics_app
    from gateway.api.server import serve
    from gateway.bootstrap import bootstrap, build_adapters
    from gateway.storage.migrate import ensure_current, upgrade_async

    var = Path("var")  # made by the CLI before the loop starts
    pos_sim = await start_simulator(settings=PosSimulatorSettings(stage_seconds=2.0))
    delo_settings = DeloSimulatorSettings(reply_after_s=6.0)
    delo_runner = web.AppRunner(delo_app(delo_settings), access_log=None)
    await delo_runner.setup()
    delo_site = web.TCPSite(delo_runner, "127.0.0.1", 0)
    await delo_site.start()
    delo_url = f"http://127.0.0.1:{delo_runner.addresses[0][1]}"
    sink = await start_sink("127.0.0.1", 0, var / "maildir")
    # The contact centre's own mailbox, where officials' replies arrive.
    inbox = await start_sink("127.0.0.1", 0, var / "mailbox")

    operator_token, admin_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    tokens = settings.api_tokens or SecretStr(f"operator:{operator_token},admin:{admin_token}")
    if settings.api_tokens:
        operator_token = _token_of(settings.api_tokens, "operator")
        admin_token = _token_of(settings.api_tokens, "admin")
    settings = settings.model_copy(update={
        "api_tokens": tokens,
        "pos": settings.pos.model_copy(update={
            "base_url": pos_sim.url, "token": SecretStr(PosSimulatorSettings().token),
            "poll_interval_s": 1.0}),
        "delo": settings.delo.model_copy(update={
            "base_url": delo_url, "username": delo_settings.username,
            "password": SecretStr(delo_settings.password), "poll_interval_s": 1.0}),
        "smtp": settings.smtp.model_copy(update={
            "host": "127.0.0.1", "port": sink.port, "security": "none"}),
        "imap": settings.imap.model_copy(update={"poll_interval_s": 1.0}),
    })
    if is_sqlite(settings.database_url):
        await upgrade_async(settings.database_url)
    adapters = build_adapters(settings)
    adapters.mailbox = MaildirMailbox(var / "mailbox")
    gateway = bootstrap(settings, adapters=adapters)
    served: Served | None = None
    try:
        if not is_sqlite(settings.database_url):
            await ensure_current(gateway.engine)
        served = await serve(gateway.app, settings.http, settings.metrics,
                             metrics_app(gateway.app[SERVICES_KEY]))
        await gateway.daemon.start()
        base = f"http://{settings.http.host}:{settings.http.port}"
        _print_intro(out, base, admin_token, operator_token, pos_sim.url, delo_url, sink.port)
        ok = await _play(base, operator_token, pos_sim.url, out, timeout_s,
                         _Official(var / "maildir", inbox.port))
        if not once:
            print("\nThe gateway keeps running; Ctrl-C stops it.", file=out)
            await _until_signalled()
        return 0 if ok else 1
    finally:
        await gateway.daemon.stop()
        if served is not None:
            await served.close()
        await gateway.engine.dispose()
        await pos_sim.close()
        await delo_runner.cleanup()
        await sink.close()
        await inbox.close()


@dataclass(frozen=True)
class _Official:
    """The responsible person: reads the request in the sink, replies to the hotline."""

    outgoing: Path  # where the gateway's letters land
    inbox_port: int  # the contact centre's mailbox (SMTP)

    async def reply(self, appeal_id: str) -> bool:
        """A reply to the appeal's first request letter; False while none has arrived."""
        import email.policy
        import mailbox
        from email.message import EmailMessage
        from email.utils import getaddresses, make_msgid

        import aiosmtplib

        def find() -> EmailMessage | None:
            box = mailbox.Maildir(str(self.outgoing), create=True)
            for key in sorted(box.iterkeys()):
                with box.get_file(key) as handle:
                    letter = email.message_from_bytes(handle.read(),
                                                      policy=email.policy.default)
                if isinstance(letter, EmailMessage) and \
                        str(letter.get("X-Gateway-Appeal", "")) == appeal_id:
                    return letter
            return None

        request = await asyncio.to_thread(find)
        if request is None:
            return False
        official = getaddresses([str(request["To"])])[0][1]
        reply = EmailMessage()
        reply["From"] = official
        reply["To"] = "hotline@gateway.demo"
        reply["Subject"] = f"RE: {request['Subject']}"
        reply["Message-ID"] = make_msgid(domain="official.demo")
        reply["In-Reply-To"] = str(request["Message-ID"])
        reply["References"] = str(request["Message-ID"])
        reply.set_content("Выезд специалистов назначен на завтра, 10:00; о результатах "
                          "сообщим дополнительно.\n\n-----Original Message-----\n> …\n")
        await aiosmtplib.send(reply, hostname="127.0.0.1", port=self.inbox_port, timeout=10)
        return True


def _token_of(tokens: SecretStr, role: str) -> str:
    for item in tokens.get_secret_value().split(","):
        name, _, token = item.strip().partition(":")
        if name == role:
            return token
    return ""


def _print_intro(out: TextIO, base: str, admin: str, operator: str, pos: str, delo: str,
                 smtp_port: int) -> None:
    print("Hotline gateway demo", file=out)
    print(f"  API and status:   {base}   (GET {base}/status with the admin token)", file=out)
    print(f"  admin token:      {admin}", file=out)
    print(f"  operator token:   {operator}", file=out)
    print(f"  ПОС simulator:    {pos}", file=out)
    print(f"  «Дело» simulator: {delo}", file=out)
    print(f"  SMTP sink:        127.0.0.1:{smtp_port}, letters in var/maildir/", file=out)
    print(f"  try: curl -H 'Authorization: Bearer {admin}' {base}/status", file=out)
    print("", file=out)


async def _play(base: str, operator_token: str, pos_url: str, out: TextIO,
                timeout_s: float, official: _Official) -> bool:
    run = datetime.now(UTC).strftime("%H%M%S")
    calls = demo_calls(run)
    headers = {"Authorization": f"Bearer {operator_token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as api, \
            httpx.AsyncClient(base_url=pos_url, timeout=10) as pos:
        for n, call in enumerate(calls, start=1):
            response = await api.post("/api/v1/calls", json=_body(call, n))
            if response.status_code not in (200, 201):
                print(f"  {call.journal_id}: refused {response.status_code} {response.text}",
                      file=out)
                call.done = True
                continue
            accepted = response.json()
            call.id = accepted["id"]
            call.route = f'{accepted["route"]["system"]} → {accepted["route"]["executor"]}'
            print(f"  accepted {call.journal_id}: {call.topic} → {call.route}", file=out)
        print("", file=out)
        await _interim_answer(api, calls, out)
        await _missed_call(api, out)
        print("", file=out)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not all(c.done for c in calls):
            if asyncio.get_running_loop().time() > deadline:
                print("\nNot every call reached its end in time; see /status.", file=out)
                return False
            await asyncio.sleep(1.0)
            for call in calls:
                if call.done or call.id is None:
                    continue
                await _follow(api, pos, call, out, official)
    print("\nEvery call reached its end: journaled, forwarded, answered and delivered.",
          file=out)
    return True


async def _follow(api: httpx.AsyncClient, pos: httpx.AsyncClient, call: DemoCall,
                  out: TextIO, official: _Official) -> None:
    appeal = (await api.get(f"/api/v1/calls/{call.id}")).json()
    status = appeal["status"]
    external = appeal.get("external") or {}
    if status != call.status:
        call.status = status
        shown = {"answer_ready": "answer_ready («Ответ готов к передаче»)",
                 "delivered": "delivered («Ответ передан заявителю»)"}.get(status, status)
        number = external.get("number") or ""
        print(f"  {datetime.now():%H:%M:%S}  {call.journal_id:<18} {shown:<42} {number}",
              file=out)
    # Only ends that are ends: delivered, or journaled (answered on the spot).
    if status in ("delivered", "journaled"):
        call.done = True
        return
    if status == "registered" and call.delivery == "official_reply" and not call.replied \
            and call.id is not None:
        call.replied = await official.reply(call.id)
        if call.replied:
            print(f"  {datetime.now():%H:%M:%S}  {call.journal_id:<18} "
                  "the official replied by e-mail", file=out)
    if status == "answer_ready" and not call.delivered_by_demo:
        if call.delivery in ("callback", "official_reply"):
            call.delivered_by_demo = True
            await _callback_with_retry(api, call, out)
            await api.post(f"/api/v1/calls/{call.id}/delivery", json={
                "channel": "phone", "delivered_at": datetime.now(UTC).isoformat(),
                "by": "Оператор Демо"})
        elif call.delivery == "pos_staff" and external.get("id"):
            call.delivered_by_demo = True
            await pos.post(f"/_sim/messages/{external['id']}/confirm",
                           json={"channel": "phone", "confirmed_by": "Сотрудник министерства"})


def _hhmm(value: str | datetime, like: str | None = None) -> str:
    """HH:MM in the hotline's zone: the API's answers carry it; our own times take the zone
    of an answer (`like`)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if like is not None:
        moment = moment.astimezone(datetime.fromisoformat(like).tzinfo)
    return moment.strftime("%H:%M")


async def _interim_answer(api: httpx.AsyncClient, calls: list[DemoCall], out: TextIO) -> None:
    """[002: 2.8.10] the operator tells the citizen why the answer takes longer, and when."""
    # The e-mail-routed call: the official has a working day; the citizen is told why.
    call = next((c for c in calls if c.id and c.delivery == "official_reply"), None)
    if call is None:
        return
    expected = datetime.now(UTC) + timedelta(days=5)
    response = await api.post(f"/api/v1/calls/{call.id}/interim", json={
        "reason": "Нужен выезд специалистов на место", "expected_at": expected.isoformat(),
        "channel": "phone", "by": "Оператор Демо"})
    if response.status_code == 201:
        due = response.json()["deadlines"]["interim_expected_at"]
        print(f"  interim answer   {call.journal_id}: the reason told, answer expected by "
              f"{datetime.fromisoformat(due):%d.%m %H:%M} [002: 2.8.10]", file=out)
    else:
        print(f"  interim answer   {call.journal_id}: refused {response.status_code}", file=out)


async def _missed_call(api: httpx.AsyncClient, out: TextIO) -> None:
    """[001: 12–14] a voicemail left out of hours becomes a callback task."""
    missed_at = datetime.now(UTC) - timedelta(minutes=45)
    response = await api.post("/api/v1/missed-calls", json={
        "hotline": "122", "phone": "+79005559999", "at": missed_at.isoformat(),
        "voicemail": "Прошу перезвонить по поводу уборки снега"})
    if response.status_code not in (200, 201):
        print(f"  missed call: refused {response.status_code}", file=out)
        return
    task = response.json()
    print(f"  missed call      voicemail → callback task, due by {_hhmm(task['due_at'])} "
          "of the next working day [001: 13]", file=out)
    path = f"/api/v1/callbacks/{task['id']}/attempts"
    first = datetime.now(UTC) - timedelta(minutes=40)
    tried = await api.post(path, json={"outcome": "no_answer", "at": first.isoformat()})
    if tried.status_code == 201:
        nxt = tried.json()["next_attempt_at"]
        print(f"  callback try 1   {_hhmm(first, nxt)}: no answer; retry between "
              f"{_hhmm(nxt)} and {_hhmm(tried.json()['next_attempt_by'])}", file=out)
        retry = await api.post(path, json={"outcome": "reached"})
        if retry.status_code == 201:
            print(f"  callback retry   {_hhmm(datetime.now(UTC), nxt)}: caller reached, task "
                  f"{retry.json()['state']}", file=out)


async def _callback_with_retry(api: httpx.AsyncClient, call: DemoCall, out: TextIO) -> None:
    """[001: 13] nobody answered the first callback (typed in from notes); a retry sooner
    than 30 minutes is refused, the next one reaches the applicant."""
    first = datetime.now(UTC) - timedelta(minutes=35)
    tried = await api.post(f"/api/v1/calls/{call.id}/attempts",
                           json={"outcome": "no_answer", "at": first.isoformat()})
    if tried.status_code != 201:
        return
    nxt = tried.json()["next_attempt_at"]
    print(f"  {datetime.now():%H:%M:%S}  {call.journal_id:<18} callback at "
          f"{_hhmm(first, nxt)}: no answer; retry from {_hhmm(nxt)}", file=out)
    soon = first + timedelta(minutes=10)
    refused = await api.post(f"/api/v1/calls/{call.id}/attempts",
                             json={"outcome": "busy", "at": soon.isoformat()})
    if refused.status_code == 409:
        allowed = refused.json()["error"]["fields"]["next_allowed_at"]
        print(f"  {datetime.now():%H:%M:%S}  {call.journal_id:<18} a retry at "
              f"{_hhmm(soon, nxt)} is refused: too soon, allowed from {_hhmm(allowed)}",
              file=out)
    print(f"  {datetime.now():%H:%M:%S}  {call.journal_id:<18} callback retry now: "
          "the applicant answers", file=out)


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    with contextlib.suppress(asyncio.CancelledError):
        await stop.wait()


def main_demo(settings: Settings, once: bool, timeout_s: float) -> int:
    return asyncio.run(run_demo(settings, once=once, timeout_s=timeout_s, out=sys.stdout))
