"""The `gateway` command: run the daemon, manage the schema, look at the status, check routes."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from adapters.errors import AdapterError
from config.errors import ConfigError
from config.settings import Settings, SettingsError, load_settings
from gateway.errors import GatewayError
from gateway.logs import configure_logging
from gateway.storage.database import is_sqlite

if TYPE_CHECKING:
    from gateway.domain.appeal import Appeal

log = structlog.get_logger("gateway")

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_CONFIG
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (GatewayError, AdapterError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML settings file (default: ./gateway.toml if present)")
    commands = parser.add_subparsers(metavar="COMMAND")

    run = commands.add_parser("run", help="start the API and the daemon")
    run.set_defaults(handler=_cmd_run)

    db = commands.add_parser("db", help="database schema").add_subparsers(metavar="ACTION")
    upgrade = db.add_parser("upgrade", help="apply the schema migrations")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=_cmd_db_upgrade)

    status = commands.add_parser(
        "status", help="status of a running instance (--url) or of the database")
    status.add_argument("--url", help="base URL of a running gateway, e.g. http://127.0.0.1:8080;"
                        " the admin token is read from GATEWAY_ADMIN_TOKEN")
    status.add_argument("--json", action="store_true", help="print the raw JSON")
    status.set_defaults(handler=_cmd_status)

    routes = commands.add_parser("routes", help="routing table").add_subparsers(metavar="ACTION")
    check = routes.add_parser("check", help="print the routing table and its problems")
    check.set_defaults(handler=_cmd_routes_check)

    demo = commands.add_parser(
        "demo", help="simulators + SMTP sink + the gateway, fed with sample calls")
    demo.add_argument("--once", action="store_true",
                      help="exit when every sample call reached its end (default: keep running)")
    demo.add_argument("--timeout", type=float, default=120.0,
                      help="seconds the sample calls may take (default 120)")
    demo.set_defaults(handler=_cmd_demo)

    sim = commands.add_parser("sim", help="run a simulator").add_subparsers(metavar="SYSTEM")
    for system in ("pos", "delo"):
        one = sim.add_parser(system, help=f"the {system} simulator, until interrupted")
        one.add_argument("--host", default="127.0.0.1")
        one.add_argument("--port", type=int, default=9100 if system == "pos" else 9200)
        faults = one.add_argument_group("behaviour and faults (every fault is off by default)")
        for name, kind, text in _SIM_OPTIONS[system]:
            faults.add_argument("--" + name.replace("_", "-"), dest=name, type=kind,
                                default=None, metavar=kind.__name__.upper(), help=text)
        one.set_defaults(handler=_cmd_sim, system=system)

    pos = commands.add_parser("pos", help="ПОС tools").add_subparsers(metavar="ACTION")
    pos_import = pos.add_parser("import", help="update appeals from ПОС's Excel export")
    pos_import.add_argument("file", type=Path)
    pos_import.set_defaults(handler=_cmd_pos_import)
    pos.add_parser("sync-dictionaries", help="fetch ПОС's EAS dictionaries (regions, "
                   "subjects, subsubjects) into pos.eas.dictionaries_file"
                   ).set_defaults(handler=_cmd_pos_sync_dictionaries)

    pbx = commands.add_parser("pbx", help="phone exchange tools").add_subparsers(metavar="ACTION")
    pbx_import = pbx.add_parser(
        "import", help="read a CDR file (Asterisk Master.csv or FreeSWITCH cdr_csv)")
    pbx_import.add_argument("file", type=Path)
    pbx_import.add_argument("--hotline", default=None, help="the hotline the PBX serves "
                            "(default: the first configured)")
    pbx_import.add_argument("--format", choices=("auto", "asterisk", "freeswitch"),
                            default="auto")
    pbx_import.set_defaults(handler=_cmd_pbx_import)

    report = commands.add_parser("report", help="write a report the regulations require")
    report.add_argument("kind", choices=("weekly", "monthly", "reconcile", "callload"))
    report.add_argument("--hotline", default=None,
                        help="hotline code (reconcile: optional, all hotlines without it)")
    report.add_argument("--period", required=True,
                        help="2026-W47, 2026-11 or 2026-11-01..2026-11-30")
    report.add_argument("--out", type=Path, required=True, help="the .xlsx file to write")
    report.add_argument("--pos-export", type=Path, default=None,
                        help="reconcile: ПОС's Excel export to compare row by row")
    report.set_defaults(handler=_cmd_report)

    outbox = commands.add_parser("outbox", help="outbox tools").add_subparsers(metavar="ACTION")
    retry = outbox.add_parser("retry", help="re-drive dead letters")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the outbox row to re-drive")
    which.add_argument("--all-dead", action="store_true", help="re-drive every dead letter")
    retry.set_defaults(handler=_cmd_outbox_retry)
    found = outbox.add_parser(
        "found", help="a parked ПОС create was found in ПОС: record its id, send nothing")
    found.add_argument("appeal_id")
    found.add_argument("pos_id")
    found.set_defaults(handler=_cmd_outbox_found)

    mail = commands.add_parser("mail", help="officials' reply letters").add_subparsers(
        metavar="ACTION")
    unmatched = mail.add_parser("unmatched", help="replies left for an operator")
    unmatched.set_defaults(handler=_cmd_mail_unmatched)
    assign = mail.add_parser("assign", help="make a left reply the answer of a call")
    assign.add_argument("mail_id")
    assign.add_argument("call_id")
    assign.set_defaults(handler=_cmd_mail_assign)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    configure_logging(settings.log_level)
    return settings


# --- run ---------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return asyncio.run(_run(settings))


async def _run(settings: Settings) -> int:
    from gateway.api.context import SERVICES_KEY
    from gateway.api.health import metrics_app
    from gateway.api.server import serve
    from gateway.bootstrap import bootstrap
    from gateway.storage.migrate import SchemaOutdated, ensure_current, upgrade_async

    try:
        if is_sqlite(settings.database_url):
            _open_sqlite_file(settings.database_url)
            await upgrade_async(settings.database_url)
    except DATABASE_ERRORS as exc:
        raise SettingsError(database_unreachable(settings.database_url, exc)) from None
    gateway = bootstrap(settings)
    try:
        if not is_sqlite(settings.database_url):
            try:
                await ensure_current(gateway.engine)
            except SchemaOutdated as exc:
                log.error("gateway.schema_outdated", message=str(exc))
                return EXIT_CONFIG
            except DATABASE_ERRORS as exc:
                raise SettingsError(database_unreachable(settings.database_url, exc)) from None
        try:
            served = await serve(gateway.app, settings.http, settings.metrics,
                                 metrics_app(gateway.app[SERVICES_KEY]))
        except OSError as exc:  # the port is taken, or the address is not this host's
            raise SettingsError(
                f"cannot listen where GATEWAY_HTTP__HOST/PORT (or GATEWAY_METRICS__HOST/"
                f"PORT) say: {type(exc).__name__}: {exc.strerror or exc}") from None
        await gateway.daemon.start()
        if not settings.api_tokens:
            log.warning("auth.no_tokens", hint="set GATEWAY_API_TOKENS=role:token,...; every "
                        "protected call answers 401 until then")
        log.info("gateway.started", listen=f"http://{settings.http.host}:{settings.http.port}",
                 metrics=(f"http://{settings.metrics.host}:{settings.metrics.port}/metrics"
                          if settings.metrics.port else "admin token on the API port"),
                 database=settings.database_url.split("://", 1)[0])
        await _until_signalled()
        log.info("gateway.stopping")
        await gateway.daemon.stop()
        await served.close()
        log.info("gateway.stopped")
        return 0
    finally:
        await gateway.close()


# What a database that is not there, not reachable or refusing us raises at start-up.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (OSError, SQLAlchemyError, sqlite3.Error)


def _open_sqlite_file(url: str) -> None:
    """Opens the SQLite file once without aiosqlite: when it cannot be opened, aiosqlite's
    worker thread outlives the event loop and prints a traceback of its own after ours."""
    parsed = make_url(url)
    if parsed.query or parsed.database in (None, "", ":memory:"):
        return
    connection = sqlite3.connect(parsed.database)
    try:
        connection.execute("PRAGMA schema_version")
    finally:
        connection.close()


def database_unreachable(url: str, error: BaseException) -> str:
    """One line for the operator: the setting and the error class, never the password."""
    shown = make_url(url).render_as_string(hide_password=True)
    return (f"cannot use the database of GATEWAY_DATABASE_URL ({shown}): "
            f"{type(error).__name__}")


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


# --- db ----------------------------------------------------------------------------------


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    from gateway.storage.migrate import upgrade

    settings = _settings(args)
    upgrade(settings.database_url, args.revision)
    log.info("db.upgraded", revision=args.revision)
    return 0


# --- status ------------------------------------------------------------------------------


def _cmd_status(args: argparse.Namespace) -> int:
    if args.url:
        report = _status_from_instance(args.url)
    else:
        settings = load_settings(args.config)
        # The report owns stdout; anything logged meanwhile goes to stderr.
        configure_logging(settings.log_level, stream=sys.stderr)
        if is_sqlite(settings.database_url):
            path = settings.database_url.split("///", 1)[-1]
            if path and path != ":memory:" and not Path(path).exists():
                raise SettingsError(
                    f"no database at {path}; run `gateway db upgrade` or `gateway run`")
        report = asyncio.run(_status_from_database(settings))
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.json
          else format_status(report))
    return 0


def _status_from_instance(url: str) -> dict[str, Any]:
    token = os.environ.get("GATEWAY_ADMIN_TOKEN")
    if not token:
        raise SettingsError("set GATEWAY_ADMIN_TOKEN to an admin token to read a running gateway")
    request = urllib.request.Request(  # noqa: S310 - an admin-given URL
        url.rstrip("/") + "/status", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            data: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as exc:
        raise SettingsError(f"{url} answered {exc.code}: check the token's role") from None
    except urllib.error.URLError as exc:
        raise SettingsError(f"{url} is not reachable: {exc.reason}") from None
    return data


async def _status_from_database(settings: Settings) -> dict[str, Any]:
    from gateway.bootstrap import Adapters, bootstrap
    from gateway.storage.migrate import SchemaOutdated, ensure_current

    gateway = bootstrap(settings, adapters=Adapters())
    try:
        try:
            await ensure_current(gateway.engine)
        except SchemaOutdated as exc:
            raise SettingsError(str(exc)) from None
        return await gateway.status.report()
    finally:
        await gateway.close()


def format_status(report: dict[str, Any]) -> str:
    """The status report for a person at a terminal."""
    outbox = report.get("outbox", {})
    lines = [f"gateway {report.get('version', '?')}", "", "outbox"]
    lines.append(
        "  pending {pending}  leased {leased}  done {done}  dead {dead}  cancelled {cancelled}"
        "  oldest pending {age}s".format(
            pending=outbox.get("pending", 0), leased=outbox.get("leased", 0),
            done=outbox.get("done", 0), dead=outbox.get("dead", 0),
            cancelled=outbox.get("cancelled", 0),
            age=outbox.get("oldest_pending_age_s", 0.0)))
    for target, counts in sorted(outbox.get("by_target", {}).items()):
        shown = "  ".join(f"{k} {v}" for k, v in counts.items())
        lines.append(f"    {target:<8} {shown}")
    lines += ["", "pollers"]
    for system, poller in sorted(report.get("pollers", {}).items()):
        lines.append(
            f"  {system:<8} last success {poller.get('last_success_at') or 'never'}"
            f"  lag {poller.get('lag_s')}s  last error {poller.get('last_error') or '-'}")
    appeals = report.get("appeals", {})
    lines += ["", "appeals"]
    for status, count in sorted(appeals.get("by_status", {}).items()):
        lines.append(f"  {status:<14} {count}")
    lines.append(f"  overdue        {appeals.get('overdue', 0)}")
    return "\n".join(lines)


# --- routes ------------------------------------------------------------------------------


def _cmd_routes_check(args: argparse.Namespace) -> int:
    from config.deadlines import load_deadline_policies
    from config.routing import check_routing

    settings = load_settings(args.config)
    report = check_routing(
        settings.routing_file, settings.topics_file,
        hotlines=[h.code for h in settings.hotlines],
        deadline_policies=load_deadline_policies(settings.deadlines_file).names,
    )
    print(report.text)
    dictionary_ok = True
    if settings.pos.dialect == "eas":
        dictionary_ok = _check_pos_dictionaries(settings)
    return 0 if report.ok and dictionary_ok else 1


def _check_pos_dictionaries(settings: Settings) -> bool:
    """Under EAS: the table's ПОС ids against the synced dictionaries (pos-eas.md §3)."""
    from adapters.pos.eas_dictionaries import CategoryUse, category_problems, load
    from config.routing import pos_category_uses

    path = settings.pos.eas.dictionaries_file
    try:
        dictionaries = load(path)
        uses = pos_category_uses(settings.routing_file)
    except (AdapterError, ConfigError) as exc:
        print(f"\nПОС dictionaries: cannot compare ({exc})")
        return False
    if dictionaries is None:
        print(f"\nПОС dictionaries: not synced yet ({path}); run `gateway pos "
              "sync-dictionaries` to compare the table's category ids with ПОС's")
        return True
    problems = category_problems(dictionaries, [
        CategoryUse(where, target.category_id, target.subcategory_id) for where, target in uses])
    print(f"\nПОС dictionaries synced {dictionaries.synced_at}: {dictionaries.counts()}")
    if not problems:
        print("Every ПОС category and subcategory of the table is in them.")
        return True
    print(f"{len(problems)} problem(s):")
    print("\n".join(f"  - {p}" for p in problems))
    return False


def _cmd_pos_sync_dictionaries(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return asyncio.run(_pos_sync_dictionaries(settings))


async def _pos_sync_dictionaries(settings: Settings) -> int:
    from adapters.pos.factory import build_eas
    from gateway.bootstrap import sync_pos_dictionaries
    from outbox import Permanent, Transient

    if settings.pos.dialect != "eas":
        print("gateway: the dictionaries are EAS's (GATEWAY_POS__DIALECT=eas)", file=sys.stderr)
        return EXIT_CONFIG
    try:
        client = build_eas(settings.pos)
    except ValueError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    async with client:
        try:
            synced = await sync_pos_dictionaries(client, settings.pos.eas.dictionaries_file)
        except (Transient, Permanent, OSError) as exc:
            print(f"gateway: dictionaries not synced: {exc}", file=sys.stderr)
            return 1
    print(f"synced to {settings.pos.eas.dictionaries_file}: {synced.counts()}")
    return 0


# --- demo and simulators -----------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import main_demo

    settings = load_settings(args.config)
    # The person watches the demo's own lines; the JSON log goes to a file beside it.
    Path("var").mkdir(exist_ok=True)
    log_file = Path("var/demo.log").open("a", encoding="utf-8")  # noqa: SIM115
    try:
        configure_logging(settings.log_level, stream=log_file)
        return main_demo(settings, args.once, args.timeout)
    finally:
        log_file.close()


# Simulator settings a command line may set: (field, type, help).
_SIM_OPTIONS: dict[str, tuple[tuple[str, type[float] | type[int], str], ...]] = {
    "pos": (
        ("stage_seconds", float, "seconds each stage lasts; 0 stops the clock (default 2)"),
        ("error_rate", float, "share of API requests answered 5xx before any effect"),
        ("rate_limit_rate", float, "share of API requests answered 429 before any effect"),
        ("retry_after_seconds", int, "Retry-After sent with a 429 (default 1)"),
        ("lost_response_rate", float, "share of answers dropped after the effect"),
        ("latency_ms", float, "delay before each API answer, in ms"),
        ("latency_jitter_ms", float, "random extra delay, up to this many ms"),
        ("late_commit_rate", float, "share of changes committed late: visible now, stamped "
                                    "--late-commit-s in the past"),
        ("late_commit_s", float, "how far in the past a late commit is stamped (default 30)"),
        ("seed", int, "seed of the fault RNG, to replay a run"),
    ),
    "delo": (
        ("reply_after_s", float, "seconds until executors answer (default: never)"),
        ("error_rate", float, "share of requests answered 500 before any effect"),
        ("throttle_rate", float, "share of requests answered 429 before any effect"),
        ("retry_after_s", int, "Retry-After sent with a 429 (default 1)"),
        ("lost_response_rate", float, "share of answers dropped after the effect"),
        ("latency_s", float, "each request waits up to this many seconds"),
        ("late_commit_rate", float, "share of row changes committed late: visible now, "
                                    "stamped --late-commit-s in the past"),
        ("late_commit_s", float, "how far in the past a late commit is stamped (default 30)"),
        ("seed", int, "seed of the fault RNG, to replay a run"),
    ),
}


def _sim_overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = (name for name, _, _ in _SIM_OPTIONS[args.system])
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _cmd_sim(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from adapters.delo.simulator import DeloSimulatorSettings
    from adapters.pos.simulator import PosSimulatorSettings

    model = PosSimulatorSettings if args.system == "pos" else DeloSimulatorSettings
    try:
        sim_settings = model(**_sim_overrides(args))
    except ValidationError as exc:
        fields = ", ".join("--" + ".".join(map(str, e["loc"])).replace("_", "-")
                           for e in exc.errors())
        print(f"gateway sim {args.system}: invalid {fields}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging("info")
    log.info(f"sim.{args.system}", listen=f"http://{args.host}:{args.port}")
    if isinstance(sim_settings, PosSimulatorSettings):
        from adapters.pos.simulator import run_simulator as run_pos

        run_pos(args.host, args.port, sim_settings)
    else:
        from adapters.delo.simulator import run_simulator as run_delo

        run_delo(args.host, args.port, sim_settings)
    return 0


# --- ПОС export import -------------------------------------------------------------------


def _cmd_pos_import(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return asyncio.run(_pos_import(settings, args.file))


async def _pos_import(settings: Settings, path: Path) -> int:
    from adapters.pos.export_import import read_export
    from adapters.pos.mapping import load_mapping
    from gateway.bootstrap import Adapters, bootstrap
    from gateway.domain.ports import ExternalUpdate
    from gateway.services.export_import import ExportedRow, import_rows

    try:
        parsed = read_export(path, load_mapping(settings.pos.mapping_file))
    except (AdapterError, OSError) as exc:
        print(f"gateway: cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    gateway = bootstrap(settings, adapters=Adapters())
    try:
        now = gateway.clock.now()
        rows = [
            ExportedRow(row.row, row.number, ExternalUpdate(
                system="pos", external_id=row.number, appeal_id=None, stage=row.stage,
                status=row.status, updated_at=now,
                planned_completion=row.planned_completion), fact=row.fact)
            for row in parsed.rows
        ]
        report = await import_rows(gateway.storage, "pos", rows, clock=gateway.clock,
                                   zone_of=settings.zone_of, outbox=gateway.outbox,
                                   marker_of=pos_marker if settings.pos.dialect == "eas"
                                   else None)
    finally:
        await gateway.close()
    print(report.text([(bad.row, bad.reason) for bad in parsed.bad_rows]))
    log.info("pos.import", applied=report.applied, unchanged=report.unchanged,
             unmatched=len(report.unmatched), bad_rows=len(parsed.bad_rows),
             found=report.found, confirmed=report.confirmed)
    return 0 if not report.unmatched and not parsed.bad_rows else 1


def pos_marker(appeal: Appeal) -> str | None:
    """What an EAS create wrote first in its text: how the export's «Факт» is matched."""
    from adapters.pos.eas_client import marker

    target = appeal.route.pos
    return marker(appeal, target.text_prefix) if target is not None else None


# --- PBX import and reports --------------------------------------------------------------


class _Progress:
    """A one-line counter on stderr when it is a terminal; silent otherwise."""

    def __init__(self, what: str, total: int | None = None) -> None:
        self._what = what
        self._total = total
        self._shown = sys.stderr.isatty()

    def __call__(self, done: int) -> None:
        if self._shown:
            of = f"/{self._total}" if self._total else ""
            print(f"\r{self._what}: {done}{of}", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self._shown:
            print(file=sys.stderr)


def _cmd_pbx_import(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return asyncio.run(_pbx_import(settings, args.file, args.hotline, args.format))


async def _pbx_import(settings: Settings, path: Path, hotline: str | None, kind: str) -> int:
    from adapters.pbx.cdr import Directions, read_cdr
    from config.reports import load_reports_config
    from gateway.bootstrap import Adapters, bootstrap
    from gateway.services.pbx_import import import_pbx_calls
    from gateway.storage.reports import SqlPbxCalls

    code = hotline or settings.hotlines[0].code
    if settings.hotline(code) is None:
        print(f"gateway: hotline {code} is not configured", file=sys.stderr)
        return EXIT_CONFIG
    pbx = load_reports_config(settings.reports_file).pbx
    directions = Directions(
        inbound_contexts=frozenset(pbx.inbound_contexts) or Directions().inbound_contexts,
        outbound_contexts=frozenset(pbx.outbound_contexts) or Directions().outbound_contexts,
        extension_max_digits=pbx.extension_max_digits)
    try:
        parsed = read_cdr(path, hotline=code, zone=settings.zone_of(code),
                          directions=directions, kind=kind, times_in_utc=pbx.times_in_utc)
    except (AdapterError, OSError) as exc:
        print(f"gateway: cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    gateway = bootstrap(settings, adapters=Adapters())
    progress = _Progress("stored", len(parsed.calls))
    try:
        result = await import_pbx_calls(SqlPbxCalls(gateway.engine, gateway.outbox),
                                        parsed.calls, gateway.clock, settings.zone_of(code),
                                        progress, callbacks=gateway.callbacks)
    finally:
        progress.done()
        await gateway.close()
    print(f"{parsed.source} CDR ({parsed.encoding}, {parsed.delimiter!r}): "
          f"{result.read} rows read, {result.new} new, {result.repeated} seen before; "
          f"{result.to_call_back} missed calls to call back: {result.tasks_created} new "
          f"callback tasks, {result.not_callable} too old or not a phone number")
    if parsed.ignored_columns:
        print(f"ignored unknown columns: {', '.join(parsed.ignored_columns)}")
    for bad in parsed.bad_rows:
        print(f"line {bad.line}: {bad.reason}")
    log.info("pbx.import", read=result.read, new=result.new, bad_rows=len(parsed.bad_rows),
             to_call_back=result.to_call_back, tasks_created=result.tasks_created)
    return 0 if not parsed.bad_rows else 1


def _cmd_report(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return asyncio.run(_report(settings, args))


async def _report(settings: Settings, args: argparse.Namespace) -> int:
    from gateway.bootstrap import Adapters, bootstrap
    from gateway.domain.reporting import UpstreamRow, parse_period

    period = parse_period(args.period)
    hotline: str | None = args.hotline
    if hotline is None and args.kind != "reconcile":
        hotline = settings.hotlines[0].code
    upstream = None
    if args.pos_export is not None:
        from adapters.pos.export_import import read_export
        from adapters.pos.mapping import load_mapping

        try:
            parsed = read_export(args.pos_export, load_mapping(settings.pos.mapping_file))
        except (AdapterError, OSError) as exc:
            print(f"gateway: cannot read {args.pos_export}: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        for bad in parsed.bad_rows:
            print(f"{args.pos_export}: row {bad.row}: {bad.reason}", file=sys.stderr)
        upstream = [UpstreamRow(r.row, r.number, r.stage) for r in parsed.rows]
    gateway = bootstrap(settings, adapters=Adapters())
    reports = gateway.reports
    assert reports is not None
    progress = _Progress("calls read")
    try:
        if args.kind == "weekly":
            assert hotline is not None
            content = await reports.weekly_file(hotline, period)
        elif args.kind == "monthly":
            assert hotline is not None
            content = await reports.monthly_file(hotline, period, progress)
        elif args.kind == "reconcile":
            content = await reports.reconcile_file(hotline, period, upstream)
        else:
            assert hotline is not None
            content = await reports.callload_file(hotline, period)
    finally:
        progress.done()
        await gateway.close()
    args.out.write_bytes(content)
    print(f"{args.kind} report for {period.label} written to {args.out}")
    return 0


# --- outbox ------------------------------------------------------------------------------


def _cmd_outbox_retry(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return asyncio.run(_outbox_retry(settings, args.id, args.all_dead))


async def _outbox_retry(settings: Settings, message_id: int | None, all_dead: bool) -> int:
    from gateway.bootstrap import Adapters, bootstrap
    from gateway.services.outbox_admin import NotDead, OutboxAdmin

    gateway = bootstrap(settings, adapters=Adapters())
    admin = OutboxAdmin(gateway.outbox, gateway.storage, gateway.clock)
    try:
        if all_dead:
            result = await admin.redrive_all_dead("cli")
            print(f"re-driven: {result.rows} (appeals back to accepted: {result.appeals})")
            return 0
        assert message_id is not None
        try:
            await admin.redrive(message_id, "cli")
        except (LookupError, NotDead) as exc:
            state = exc.state if isinstance(exc, NotDead) else "missing"
            print(f"gateway: outbox row {message_id} is {state}, not dead", file=sys.stderr)
            return 1
        print(f"re-driven: {message_id}")
        return 0
    finally:
        await gateway.close()


def _cmd_outbox_found(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return asyncio.run(_outbox_found(settings, args.appeal_id, args.pos_id))


async def _outbox_found(settings: Settings, appeal_id: str, pos_id: str) -> int:
    from gateway.bootstrap import Adapters, bootstrap
    from gateway.services.outbox_admin import OutboxAdmin

    gateway = bootstrap(settings, adapters=Adapters())
    admin = OutboxAdmin(gateway.outbox, gateway.storage, gateway.clock)
    try:
        if not await admin.record_found(appeal_id, "pos", pos_id, "cli"):
            print(f"gateway: no appeal {appeal_id}", file=sys.stderr)
            return 1
        print(f"registered: {appeal_id} as ПОС {pos_id}")
        return 0
    finally:
        await gateway.close()


# --- mail --------------------------------------------------------------------------------


def _cmd_mail_unmatched(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return asyncio.run(_mail_unmatched(settings))


async def _mail_unmatched(settings: Settings) -> int:
    """Prints the replies the reader left (for an operator's eyes: it holds what the
    letters say; nothing of it is logged)."""
    from gateway.bootstrap import Adapters, bootstrap
    from gateway.services.mail_replies import UnmatchedMailDesk

    gateway = bootstrap(settings, adapters=Adapters())
    try:
        items = await UnmatchedMailDesk(gateway.storage, gateway.clock).unmatched()
    finally:
        await gateway.close()
    zone = settings.zone_of("")
    for item in items:
        files = ", ".join(a.filename for a in item.attachments) or "—"
        print(f"{item.id}  {item.received_at.astimezone(zone):%d.%m.%Y %H:%M}  "
              f"{item.reason}  call {item.appeal_id or '—'}")
        print(f"    from: {item.sender}\n    subject: {item.subject}\n    files: {files}")
        print("    " + (item.text[:300].replace("\n", "\n    ") or "(no text)"))
    print(f"{len(items)} unmatched")
    return 0


def _cmd_mail_assign(args: argparse.Namespace) -> int:
    settings = _settings(args)
    return asyncio.run(_mail_assign(settings, args.mail_id, args.call_id))


async def _mail_assign(settings: Settings, mail_id: str, call_id: str) -> int:
    from gateway.bootstrap import Adapters, bootstrap
    from gateway.errors import GatewayError
    from gateway.services.mail_replies import UnmatchedMailDesk

    gateway = bootstrap(settings, adapters=Adapters())
    try:
        await UnmatchedMailDesk(gateway.storage, gateway.clock).assign(mail_id, call_id, "cli")
    except GatewayError as exc:
        print(f"gateway: cannot assign {mail_id}: {type(exc).__name__}", file=sys.stderr)
        return 1
    finally:
        await gateway.close()
    print(f"assigned: {mail_id} → {call_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
