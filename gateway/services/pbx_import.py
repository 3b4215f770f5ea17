"""`gateway pbx import`: the phone exchange's call records into the call-load journal.

[001: appendix 1] the journal's received, lost and outgoing figures come from the PBX.
Every good line of a file is stored in one transaction (nothing half-written); a line
seen before (same CDR unique id) is skipped, so importing a file twice changes nothing.
The missed inbound calls to call back [001: 13–14] are counted through
`missed_calls_to_call_back`, the seam where issue 13's callback tasks plug in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Protocol

from gateway.domain.ports import Clock
from gateway.domain.reporting import PbxCall
from gateway.services.reports import missed_calls_to_call_back


class PbxCallStore(Protocol):
    async def store(self, calls: Sequence[PbxCall], imported_at: datetime,
                    progress: Callable[[int], None] | None = None) -> int: ...


@dataclass(frozen=True, slots=True)
class PbxImportResult:
    read: int
    new: int
    to_call_back: int  # missed inbound calls, one per number per day

    @property
    def repeated(self) -> int:
        return self.read - self.new


async def import_pbx_calls(store: PbxCallStore, calls: Sequence[PbxCall], clock: Clock,
                           zone: tzinfo,
                           progress: Callable[[int], None] | None = None) -> PbxImportResult:
    new = await store.store(calls, clock.now(), progress)
    return PbxImportResult(len(calls), new, len(missed_calls_to_call_back(calls, zone)))
