"""`gateway demo --once`: the README's main-job command, from an empty directory."""

from __future__ import annotations

import asyncio
import mailbox
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.flows.conftest import free_port

GATEWAY = Path(sys.executable).with_name("gateway")


@pytest.mark.slow
async def test_demo_runs_every_call_to_its_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_HTTP__PORT"] = str(free_port())

    done = await asyncio.to_thread(
        subprocess.run, [str(GATEWAY), "demo", "--once", "--timeout", "90"], cwd=tmp_path,
        env=env, capture_output=True, text=True, timeout=150, check=False)

    output = done.stdout
    assert done.returncode == 0, output + done.stderr
    assert "Ответ готов к передаче" in output
    assert "delivered" in output
    assert "Every call reached its end" in output
    # Issue 13: an interim answer [002: 2.8.10] and a callback with a retry [001: 13].
    assert "interim answer" in output and "answer expected by" in output
    assert "callback try 1" in output and "callback retry" in output
    assert "refused: too soon" in output
    assert (tmp_path / "gateway.db").is_file()  # the embedded default, in the working dir
    letters = mailbox.Maildir(str(tmp_path / "var" / "maildir"), create=False)
    assert len(letters) >= 3  # two requests for the stray dogs, one answer by e-mail
    # The stray dogs' call ended by the official's reply letter, not at «registered».
    assert "the official replied by e-mail" in output
    assert len(mailbox.Maildir(str(tmp_path / "var" / "mailbox"), create=False)) == 1
    log = (tmp_path / "var" / "demo.log").read_text(encoding="utf-8")
    assert "call.accepted" in log
    for personal in ("Иванов", "+7900555", "citizen", "Образцовая"):
        assert personal not in output and personal not in log
