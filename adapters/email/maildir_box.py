"""The `Mailbox` port over a local Maildir: the demo's contact-centre mailbox (an SMTP sink
writes it), and a developer's without an IMAP server.

Maildir has no UIDs, so this gives each message one, in the order it is first seen, and
keeps them in `gateway-uids.json` beside the Maildir; the UIDVALIDITY is fixed per
directory (written once in the same file). Like the IMAP reader it never deletes.
Production reads the mailbox over IMAP (`adapters.email.imap`).
"""

from __future__ import annotations

import asyncio
import json
import mailbox
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.email.replies import read_reply
from gateway.domain.ports import MailBatch


class MaildirMailbox:
    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self.name = "maildir"

    async def fetch_after(self, uidvalidity: int | None, last_uid: int,
                          limit: int) -> MailBatch:
        return await asyncio.to_thread(self._fetch_after, uidvalidity, last_uid, limit)

    async def settle(self, uids: Sequence[int]) -> None:
        """Nothing to mark: the Maildir stays as delivered."""

    async def aclose(self) -> None:
        """Nothing stays open."""

    def _fetch_after(self, uidvalidity: int | None, last_uid: int, limit: int) -> MailBatch:
        box = mailbox.Maildir(str(self._path), create=True)
        state_file = self._path / "gateway-uids.json"
        state: dict[str, Any] = (
            json.loads(state_file.read_text(encoding="utf-8")) if state_file.exists()
            else {"uidvalidity": secrets.randbelow(2**31 - 1) + 1, "uids": {}})
        uids: dict[str, int] = state["uids"]
        new_keys = sorted((k for k in box.iterkeys() if k not in uids),
                          key=lambda k: (box.get_message(k).get_date(), k))
        for key in new_keys:
            uids[key] = max(uids.values(), default=0) + 1
        if new_keys or not state_file.exists():
            temporary = state_file.with_suffix(".tmp")
            temporary.write_text(json.dumps(state), encoding="utf-8")
            os.replace(temporary, state_file)
        current = int(state["uidvalidity"])
        after = last_uid if current == uidvalidity else 0
        wanted = sorted((uid, key) for key, uid in uids.items() if uid > after)[:limit]
        messages = []
        for uid, key in wanted:
            with box.get_file(key) as handle:
                messages.append(read_reply(uid, handle.read()))
        return MailBatch(current, messages)
