"""The `gateway` command: run the daemon, manage the schema, look at the status, check routes."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from config.calendar import CalendarOverridesError
from config.deadlines import DeadlinesConfigError
from config.routing import RoutingConfigError
from config.settings import Settings, SettingsError, load_settings
from gateway.logs import configure_logging
from gateway.storage.database import is_sqlite

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
    except (SettingsError, RoutingConfigError, DeadlinesConfigError, CalendarOverridesError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
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
    from gateway.bootstrap import bootstrap
    from gateway.storage.migrate import SchemaOutdated, ensure_current, upgrade_async

    if is_sqlite(settings.database_url):
        await upgrade_async(settings.database_url)
    gateway = bootstrap(settings)
    try:
        if not is_sqlite(settings.database_url):
            try:
                await ensure_current(gateway.engine)
            except SchemaOutdated as exc:
                log.error("gateway.schema_outdated", message=str(exc))
                return EXIT_CONFIG
        runner = web.AppRunner(gateway.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.http.host, settings.http.port)
        await site.start()
        await gateway.start_background()
        log.info("gateway.started", listen=f"http://{settings.http.host}:{settings.http.port}",
                 database=settings.database_url.split("://", 1)[0])
        await _until_signalled()
        log.info("gateway.stopping")
        await gateway.stop_background()
        await runner.cleanup()
        log.info("gateway.stopped")
        return 0
    finally:
        await gateway.close()


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
    from gateway.bootstrap import bootstrap

    gateway = bootstrap(settings)
    try:
        return await gateway.status.report()
    finally:
        await gateway.close()


def format_status(report: dict[str, Any]) -> str:
    """The status report for a person at a terminal."""
    outbox = report.get("outbox", {})
    lines = [f"gateway {report.get('version', '?')}", "", "outbox"]
    lines.append(
        "  pending {pending}  leased {leased}  done {done}  dead {dead}"
        "  oldest pending {age}s".format(
            pending=outbox.get("pending", 0), leased=outbox.get("leased", 0),
            done=outbox.get("done", 0), dead=outbox.get("dead", 0),
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
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
