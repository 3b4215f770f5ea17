"""A real IMAP server for the mail-reader tests: given by GATEWAY_TEST_IMAP_* variables, or
a throwaway Dovecot started with .ci/dovecot.sh. Absent: the tests skip and say why, unless
GATEWAY_TEST_REQUIRE_IMAP=1 (CI), which makes absence a failure.

Each test gets a folder of its own (`ImapServer.new_folder`), so tests never see each
other's letters; letters are put there with IMAP APPEND, as a mail server delivers them.
"""

from __future__ import annotations

import imaplib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_IMAP_ENV = "GATEWAY_TEST_REQUIRE_IMAP"
SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "dovecot.sh"


@dataclass(frozen=True)
class ImapServer:
    host: str
    port: int  # plain, STARTTLS offered
    tls_port: int | None  # IMAPS
    user: str
    password: str
    ca_file: str | None

    def _client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4(self.host, self.port, timeout=10)
        client.login(self.user, self.password)
        return client

    def new_folder(self) -> str:
        name = f"test-{secrets.token_hex(6)}"
        client = self._client()
        try:
            status, _ = client.create(name)
            assert status == "OK", "cannot create a test folder"
        finally:
            client.logout()
        return name

    def deliver(self, folder: str, raw: bytes) -> int:
        """The letter into `folder`; its UID."""
        client = self._client()
        try:
            status, data = client.append(folder, None, imaplib.Time2Internaldate(time.time()),
                                         raw)
            assert status == "OK", data
            client.select(folder)
            _, found = client.uid("SEARCH", "ALL")
            return max(int(u) for u in found[0].split())
        finally:
            client.logout()

    def uids(self, folder: str) -> list[int]:
        client = self._client()
        try:
            client.select(folder, readonly=True)
            _, found = client.uid("SEARCH", "ALL")
            return sorted(int(u) for u in (found[0] or b"").split())
        finally:
            client.logout()

    def recreate(self, folder: str) -> None:
        """Deleted and made again: the folder gets a new UIDVALIDITY."""
        client = self._client()
        try:
            client.delete(folder)
            client.create(folder)
        finally:
            client.logout()


def _unavailable(reason: str) -> None:
    message = f"no IMAP server for the mail-reader tests: {reason}"
    if os.environ.get(REQUIRE_IMAP_ENV) == "1":
        pytest.fail(message)
    pytest.skip(message)


def _from_env(env: dict[str, str]) -> ImapServer:
    tls = env.get("GATEWAY_TEST_IMAP_TLS_PORT")
    return ImapServer(env["GATEWAY_TEST_IMAP_HOST"], int(env["GATEWAY_TEST_IMAP_PORT"]),
                      int(tls) if tls else None, env["GATEWAY_TEST_IMAP_USER"],
                      env["GATEWAY_TEST_IMAP_PASSWORD"], env.get("GATEWAY_TEST_IMAP_CA_FILE"))


@pytest.fixture(scope="session")
def imap_server() -> Iterator[ImapServer]:
    if os.environ.get("GATEWAY_TEST_IMAP_HOST"):
        server = _from_env(dict(os.environ))
        try:
            server.uids("INBOX")
        except (OSError, imaplib.IMAP4.error) as exc:
            _unavailable(f"{server.host}:{server.port}: {type(exc).__name__}")
        yield server
        return
    if shutil.which("dovecot") is None:
        _unavailable("dovecot is not installed (apt-get install dovecot-imapd) and "
                     "GATEWAY_TEST_IMAP_HOST is not set")
    # Not under pytest's own temporary directory: run as root, Dovecot's unprivileged
    # processes must be able to reach their files, and pytest's directories are private.
    directory = Path(tempfile.mkdtemp(prefix="gw-dovecot-"))
    directory.chmod(0o755)
    started = subprocess.run([str(SCRIPT), "start", str(directory)], capture_output=True,
                             text=True, timeout=60, check=False)
    if started.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        _unavailable(f".ci/dovecot.sh failed: {started.stderr.strip()[-300:]}")
    try:
        env = dict(line.split("=", 1) for line in
                   (directory / "env").read_text().splitlines() if "=" in line)
        yield _from_env(env)
    finally:
        subprocess.run([str(SCRIPT), "stop", str(directory)], capture_output=True,
                       timeout=60, check=False)
        shutil.rmtree(directory, ignore_errors=True)
