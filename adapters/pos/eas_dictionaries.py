"""ПОС's EAS dictionaries (pos-eas.md §3): regions, and the region's subjects and subsubjects.

The routing table names ПОС categories by id (`subjectId`/`subsubjectId` of a create); EAS
refuses ids it does not know, and retires some (`deleted`). `gateway pos sync-dictionaries`
and the daemon (at start and daily) keep a copy, and `gateway routes check` reports rules
whose ids are absent from it or retired, before a create fails on them.

The copy is a JSON file (default `var/pos-dictionaries.json`), not a table: it is
reference data that can be fetched again at any time, holds no personal data, changes
nothing transactional, and a file needs no migration and can be read by `routes check`
without a database. It is written whole to a temporary file and renamed, so a reader never
sees half of it; each replica keeps its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from adapters.errors import AdapterError

DEFAULT_FILE = Path("var/pos-dictionaries.json")


class DictionaryFileError(AdapterError, ValueError):
    """The stored copy cannot be read (edited by hand, or another program's file)."""


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    name: str
    deleted: bool = False
    subject_id: int | None = None  # a subsubject's category


@dataclass(frozen=True, slots=True)
class Dictionaries:
    region_id: int
    synced_at: str  # ISO 8601, UTC
    regions: list[Entry] = field(default_factory=list)
    subjects: list[Entry] = field(default_factory=list)
    subsubjects: list[Entry] = field(default_factory=list)

    def counts(self) -> str:
        return (f"regions {len(self.regions)}, subjects {len(self.subjects)}, "
                f"subsubjects {len(self.subsubjects)} (region {self.region_id})")


def save(path: Path, dictionaries: Dictionaries) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(asdict(dictionaries), ensure_ascii=False, indent=1),
                         encoding="utf-8")
    os.replace(temporary, path)


def load(path: Path) -> Dictionaries | None:
    """None when never synced."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DictionaryFileError(f"{path}: not readable ({type(exc).__name__})") from None
    try:
        return Dictionaries(
            region_id=int(data["region_id"]), synced_at=str(data["synced_at"]),
            **{kind: [Entry(**item) for item in data[kind]]
               for kind in ("regions", "subjects", "subsubjects")})
    except (KeyError, TypeError, ValueError) as exc:
        raise DictionaryFileError(f"{path}: not a dictionaries file "
                                  f"({type(exc).__name__})") from None


@dataclass(frozen=True, slots=True)
class CategoryUse:
    """Where the routing table sends calls: `where` names the rule for the report."""

    where: str
    category_id: int
    subcategory_id: int


def category_problems(dictionaries: Dictionaries, uses: Iterable[CategoryUse]) -> list[str]:
    """Category/subcategory ids the synced dictionary lacks, has retired, or pairs otherwise."""
    subjects = {s.id: s for s in dictionaries.subjects}
    subsubjects = {s.id: s for s in dictionaries.subsubjects}
    problems: list[str] = []
    for use in uses:
        subject = subjects.get(use.category_id)
        if subject is None:
            problems.append(f"{use.where}: category {use.category_id} is not among ПОС's "
                            f"subjects of region {dictionaries.region_id}")
        elif subject.deleted:
            problems.append(f"{use.where}: category {use.category_id} is retired in ПОС")
        sub = subsubjects.get(use.subcategory_id)
        if sub is None:
            problems.append(f"{use.where}: subcategory {use.subcategory_id} is not among ПОС's "
                            f"subsubjects of region {dictionaries.region_id}")
        elif sub.deleted:
            problems.append(f"{use.where}: subcategory {use.subcategory_id} is retired in ПОС")
        elif subject is not None and sub.subject_id not in (None, use.category_id):
            problems.append(f"{use.where}: subcategory {use.subcategory_id} belongs to ПОС "
                            f"category {sub.subject_id}, not {use.category_id}")
    return problems
