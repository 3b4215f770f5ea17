"""`gateway pbx import`: the phone exchange's call records into the call-load journal.

[001: appendix 1] the journal's received, lost and outgoing figures come from the PBX.
Every good line of a file is stored in one transaction (nothing half-written); a line
seen before (same CDR unique id) is skipped, so importing a file twice changes nothing.
The missed inbound calls to call back [001: 13–14], one per number per local day, become
callback tasks through the callback desk: the same hotline + number + time again is the
same task, so a re-import creates none. A call too old to return (over 7 days) or from a
number that is not a phone number is counted, not turned into a task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Protocol

from gateway.domain.ports import Clock
from gateway.domain.reporting import PbxCall
from gateway.services.callbacks import CallbackDesk, MissedCall, MissedCallRefused
from gateway.services.reports import missed_calls_to_call_back


class PbxCallStore(Protocol):
    async def store(self, calls: Sequence[PbxCall], imported_at: datetime,
                    progress: Callable[[int], None] | None = None) -> int: ...


@dataclass(frozen=True, slots=True)
class PbxImportResult:
    read: int
    new: int
    to_call_back: int  # missed inbound calls, one per number per day
    tasks_created: int = 0  # callback tasks new with this import
    not_callable: int = 0  # too old to return, or not a phone number

    @property
    def repeated(self) -> int:
        return self.read - self.new


async def import_pbx_calls(store: PbxCallStore, calls: Sequence[PbxCall], clock: Clock,
                           zone: tzinfo,
                           progress: Callable[[int], None] | None = None, *,
                           callbacks: CallbackDesk | None = None) -> PbxImportResult:
    new = await store.store(calls, clock.now(), progress)
    missed = missed_calls_to_call_back(calls, zone)
    created = refused = 0
    if callbacks is not None:
        for call in missed:
            assert call.caller is not None  # chosen only with a caller number
            try:
                result = await callbacks.report_missed(
                    MissedCall(call.hotline, call.caller, call.started_at), actor="pbx")
            except MissedCallRefused:
                refused += 1
                continue
            created += result.created
    return PbxImportResult(len(calls), new, len(missed), created, refused)
