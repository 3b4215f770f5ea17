"""Reads the topic dictionary and the routing table (TOML); refuses tables that can never work.

Two doors, one set of checks:

- `load_router` is what start-up calls: it raises `RoutingConfigError` listing every
  problem, so the daemon never starts with a rule that would address an organization not
  connected to ПОС or not allowed the category [003];
- `check_routing` is what `gateway routes check` calls: it never raises, and describes the
  whole table (including where a subordinate organization is replaced by its parent
  [003]) with every problem, so an admin can fix them all in one go.

The shape of the files is checked here (pydantic); what the entries mean together is
checked by the pure domain (`gateway.domain.routing.routing_problems`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import time, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from config.errors import ConfigError
from gateway.domain.ports import WorkCalendar
from gateway.domain.route import TargetSystem
from gateway.domain.routing import (
    DEFAULT_DEADLINE_POLICY,
    DEFAULT_TEXT_PREFIX,
    ConsiderationResult,
    DeloDepartment,
    DeloRuleTarget,
    EmailAuthority,
    HealthDuty,
    PosCategory,
    PosDirectory,
    PosOrganization,
    PosRuleTarget,
    PosSubcategory,
    Router,
    RoutingRule,
    RoutingTable,
    Topic,
    TopicDictionary,
    normalise_topic,
    resolve_addressee,
    routing_problems,
    topic_problems,
)

DEFAULT_ROUTING_FILE = Path(__file__).with_name("routing.toml")
DEFAULT_TOPICS_FILE = Path(__file__).with_name("topics.toml")


class RoutingConfigError(ConfigError):
    """Start-up refused: the configuration has problems; each names its file and entry."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        listed = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"routing configuration refused ({len(self.problems)} problem(s)):\n"
                         f"{listed}")


# --- file shapes ---------------------------------------------------------------------------


class _Entry(BaseModel):
    # Unknown keys are refused: a misspelt "organizaton" must not silently become a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


# Files written before the spelling settled on "organization" still load.
_ORGANIZATION = AliasChoices("organization", "organisation")
_ORGANIZATIONS = AliasChoices("organizations", "organisations")


class _TopicEntry(_Entry):
    name: str
    totk: str = ""
    informational: bool = False


class _Consultation(_Entry):
    outcomes: list[str] = Field(default_factory=list)


class _ResultEntry(_Entry):
    name: str
    comment_required: bool = False
    comment_hint: str = ""


class _TopicsFile(_Entry):
    topics: list[_TopicEntry]
    consultation: _Consultation = Field(default_factory=_Consultation)
    results: list[_ResultEntry] = Field(default_factory=list)


class _Subcategory(_Entry):
    id: int
    name: str


class _Category(_Entry):
    id: int
    name: str
    subcategories: list[_Subcategory] = Field(default_factory=list)


class _Organization(_Entry):
    id: int
    name: str
    categories: list[int] = Field(default_factory=list)
    any_category: bool = False
    parent: int | None = None
    connected: bool = True


class _Pos(_Entry):
    default_text_prefix: str = DEFAULT_TEXT_PREFIX
    text_prefix: dict[str, str] = Field(default_factory=dict)
    categories: list[_Category] = Field(default_factory=list)
    organizations: list[_Organization] = Field(
        default_factory=list, validation_alias=_ORGANIZATIONS
    )


class _Fallback(_Entry):
    organization: int = Field(validation_alias=_ORGANIZATION)
    category: int
    subcategory: int
    deadline_policy: str = DEFAULT_DEADLINE_POLICY


class _Department(_Entry):
    due: str
    name: str


class _Delo(_Entry):
    departments: list[_Department] = Field(default_factory=list)


class _Authority(_Entry):
    id: str
    name: str
    recipients: list[str]


class _Email(_Entry):
    authorities: list[_Authority] = Field(default_factory=list)


class _Health(_Entry):
    institution: str
    address: str
    # [004: 12] the institutions' working hours ("HH:MM", local to the hotline).
    opens: time | None = None
    closes: time | None = None
    working_days_only: bool = True
    outside_hours: list[str] = Field(default_factory=list)


class _Rule(_Entry):
    topic: str
    hotline: str | None = None
    deadline_policy: str | None = None


class _PosRule(_Rule):
    system: Literal["pos"]
    category: int
    subcategory: int
    organization: int = Field(validation_alias=_ORGANIZATION)


class _DeloRule(_Rule):
    system: Literal["delo"]
    executor: str
    controller: str
    rubric: str | None = None


class _EmailRule(_Rule):
    system: Literal["email"]
    authorities: list[str] = Field(min_length=1)


class _HealthRule(_Rule):
    system: Literal["health"]


class _NoneRule(_Rule):
    system: Literal["none"]


_AnyRule = Annotated[
    _PosRule | _DeloRule | _EmailRule | _HealthRule | _NoneRule, Field(discriminator="system")
]


class _RoutingFile(_Entry):
    pos: _Pos
    fallback: _Fallback
    delo: _Delo = Field(default_factory=_Delo)
    email: _Email = Field(default_factory=_Email)
    health: _Health | None = None
    rules: list[_AnyRule] = Field(default_factory=list)


# --- from files to domain objects -----------------------------------------------------------


def _read(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle), []
    except OSError as exc:
        return None, [f"{path}: cannot be read ({exc.strerror or exc})"]
    except tomllib.TOMLDecodeError as exc:
        return None, [f"{path.name}: not valid TOML: {exc}"]


_RULE_TAGS = frozenset(s.value for s in TargetSystem)


def _shape_problems(exc: ValidationError, raw: Mapping[str, Any], source: str) -> list[str]:
    """Pydantic's errors, each placed like the domain's: file, entry, field."""
    problems: list[str] = []
    for error in exc.errors():
        loc = list(error["loc"])
        message = error["msg"]
        if len(loc) >= 2 and loc[0] in ("rules", "topics") and isinstance(loc[1], int):
            number = loc[1] + 1
            entries = raw.get(loc[0])
            entry = entries[loc[1]] if isinstance(entries, list) else None
            label = "topic" if loc[0] == "rules" else "name"
            key = "topic" if loc[0] == "rules" else "name"
            named = entry.get(key) if isinstance(entry, dict) else None
            where = f"{source} {loc[0][:-1]} #{number}"
            if isinstance(named, str):
                where += f' ({label} "{named}")'
            rest = loc[2:]
            if rest and loc[0] == "rules" and rest[0] in _RULE_TAGS:
                rest = rest[1:]  # the discriminator pydantic adds to the location
            field = ".".join(str(p) for p in rest)
            problems.append(f"{where}: {field}: {message}" if field else f"{where}: {message}")
        else:
            field = ".".join(str(p) for p in loc)
            problems.append(f"{source} [{field}]: {message}" if field else f"{source}: {message}")
    return problems


def _topics_from(parsed: _TopicsFile) -> TopicDictionary:
    return TopicDictionary(
        topics=tuple(
            Topic(t.name, t.totk.strip() or None, t.informational) for t in parsed.topics
        ),
        consultation_outcomes=tuple(parsed.consultation.outcomes),
        results=tuple(
            ConsiderationResult(r.name, r.comment_required, r.comment_hint)
            for r in parsed.results
        ),
    )


def _rule_from(rule: _PosRule | _DeloRule | _EmailRule | _HealthRule | _NoneRule) -> RoutingRule:
    common: dict[str, Any] = {
        "topic": rule.topic, "hotline": rule.hotline, "deadline_policy": rule.deadline_policy
    }
    if isinstance(rule, _PosRule):
        return RoutingRule(
            system=TargetSystem.POS,
            pos=PosRuleTarget(rule.category, rule.subcategory, rule.organization),
            **common,
        )
    if isinstance(rule, _DeloRule):
        return RoutingRule(
            system=TargetSystem.DELO,
            delo=DeloRuleTarget(rule.executor, rule.controller, rule.rubric),
            **common,
        )
    if isinstance(rule, _EmailRule):
        return RoutingRule(system=TargetSystem.EMAIL, email=tuple(rule.authorities), **common)
    if isinstance(rule, _HealthRule):
        return RoutingRule(system=TargetSystem.HEALTH, **common)
    return RoutingRule(system=TargetSystem.NONE, **common)


def _table_from(parsed: _RoutingFile) -> RoutingTable:
    pos = PosDirectory(
        categories=tuple(
            PosCategory(c.id, c.name, tuple(PosSubcategory(s.id, s.name) for s in c.subcategories))
            for c in parsed.pos.categories
        ),
        organizations=tuple(
            PosOrganization(
                id=o.id, name=o.name, categories=frozenset(o.categories),
                any_category=o.any_category, parent=o.parent, connected=o.connected,
            )
            for o in parsed.pos.organizations
        ),
        default_text_prefix=parsed.pos.default_text_prefix,
        text_prefixes=tuple(parsed.pos.text_prefix.items()),
    )
    fb = parsed.fallback
    return RoutingTable(
        pos=pos,
        fallback=PosRuleTarget(fb.category, fb.subcategory, fb.organization),
        fallback_deadline_policy=fb.deadline_policy,
        rules=tuple(_rule_from(r) for r in parsed.rules),
        delo_departments=tuple(DeloDepartment(d.due, d.name) for d in parsed.delo.departments),
        email_authorities=tuple(
            EmailAuthority(a.id, a.name, tuple(a.recipients)) for a in parsed.email.authorities
        ),
        health=HealthDuty(parsed.health.institution, parsed.health.address,
                          parsed.health.opens, parsed.health.closes,
                          parsed.health.working_days_only, tuple(parsed.health.outside_hours))
        if parsed.health else None,
    )


def _parse_topics(path: Path) -> tuple[TopicDictionary | None, list[str]]:
    raw, problems = _read(path)
    if raw is None:
        return None, problems
    try:
        parsed = _TopicsFile.model_validate(raw)
    except ValidationError as exc:
        return None, _shape_problems(exc, raw, path.name)
    topics = _topics_from(parsed)
    return topics, [str(p) for p in topic_problems(topics, source=path.name)]


def _parse_table(path: Path) -> tuple[RoutingTable | None, list[str]]:
    raw, problems = _read(path)
    if raw is None:
        return None, problems
    try:
        parsed = _RoutingFile.model_validate(raw)
    except ValidationError as exc:
        return None, _shape_problems(exc, raw, path.name)
    return _table_from(parsed), []


@dataclass(frozen=True, slots=True)
class _Loaded:
    table: RoutingTable | None
    topics: TopicDictionary | None
    problems: tuple[str, ...]


def _load(
    routing_path: Path | None,
    topics_path: Path | None,
    hotlines: Collection[str] | None,
    deadline_policies: Collection[str] | None,
) -> _Loaded:
    routing_path = routing_path or DEFAULT_ROUTING_FILE
    topics_path = topics_path or DEFAULT_TOPICS_FILE
    topics, problems = _parse_topics(topics_path)
    table, table_problems = _parse_table(routing_path)
    problems += table_problems
    if table is not None and topics is not None:
        problems += [
            str(p) for p in routing_problems(
                table, topics, hotlines=hotlines, deadline_policies=deadline_policies,
                source=routing_path.name,
            )
        ]
    return _Loaded(table, topics, tuple(problems))


def load_router(
    routing_path: Path | None = None,
    topics_path: Path | None = None,
    *,
    hotlines: Collection[str] | None = None,
    deadline_policies: Collection[str] | None = None,
    calendar: WorkCalendar | None = None,
    zone_of: Callable[[str], tzinfo] | None = None,
) -> Router:
    """The router for start-up; `RoutingConfigError` listing every problem if there is any.

    `hotlines`: the configured hotline codes (rules naming others, and hotlines without a
    ПОС marker, are refused); `deadline_policies`: the names the deadline configuration
    defines. Either may be None to skip that cross-check.
    """
    loaded = _load(routing_path, topics_path, hotlines, deadline_policies)
    if loaded.problems or loaded.table is None or loaded.topics is None:
        raise RoutingConfigError(loaded.problems)
    return Router(
        loaded.table, loaded.topics, hotlines=hotlines, deadline_policies=deadline_policies,
        calendar=calendar, zone_of=zone_of,
    )


def delo_executor_dues(routing_path: Path | None = None) -> tuple[str, ...]:
    """The «Дело» departments the routing table sends calls to: the poller reads only theirs.

    Only the table is read (no topic cross-checks); `RoutingConfigError` if it is unusable.
    """
    table, problems = _parse_table(routing_path or DEFAULT_ROUTING_FILE)
    if table is None:
        raise RoutingConfigError(problems)
    return executor_dues_of(table)


def pos_category_uses(routing_path: Path | None = None) -> list[tuple[str, PosRuleTarget]]:
    """Every ПОС target of the table (rules and the fallback), named for a report; for the
    comparison with ПОС's own dictionaries. `RoutingConfigError` if the table is unusable."""
    table, problems = _parse_table(routing_path or DEFAULT_ROUTING_FILE)
    if table is None:
        raise RoutingConfigError(problems)
    uses = [("fallback", table.fallback)]
    for rule in table.rules:
        if rule.pos is not None:
            where = f"rule «{rule.topic}»" + (f" ({rule.hotline})" if rule.hotline else "")
            uses.append((where, rule.pos))
    return uses


def executor_dues_of(table: RoutingTable) -> tuple[str, ...]:
    return tuple(sorted({rule.delo.executor_due for rule in table.rules
                         if rule.system is TargetSystem.DELO and rule.delo is not None}))


# --- the human-readable report ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoutingReport:
    """What `gateway routes check` prints; `ok` is false when the daemon would refuse it."""

    ok: bool
    text: str
    problems: tuple[str, ...]


def _describe_pos(table: RoutingTable, target: PosRuleTarget) -> str:
    where = f"category {target.category_id}/{target.subcategory_id}"
    resolved = resolve_addressee(table.pos, target.organization_id)
    if isinstance(resolved, str):
        return f"ПОС, organization {target.organization_id} (unusable), {where}"
    org = resolved.organization
    text = f"ПОС, {org.name} ({org.id}), {where}"
    if resolved.via_parent:
        text += (f"; the rule names {target.organization_id}, a subordinate "
                 f"organization: addressed to its parent {org.id} [003]")
    return text


def _describe_rule(table: RoutingTable, topics: TopicDictionary, rule: RoutingRule) -> str:
    if rule.system is TargetSystem.POS and rule.pos is not None:
        target = _describe_pos(table, rule.pos)
    elif rule.system is TargetSystem.DELO and rule.delo is not None:
        executor = table.department(rule.delo.executor_due)
        controller = table.department(rule.delo.controller_due)
        topic = topics.find(rule.topic)
        rubric = rule.delo.rubric_code or (topic.totk_code if topic else None) or "?"
        target = (
            f"«Дело», executor {executor.name if executor else '?'} ({rule.delo.executor_due}), "
            f"controller {controller.name if controller else '?'} ({rule.delo.controller_due}), "
            f"rubric {rubric}"
        )
    elif rule.system is TargetSystem.EMAIL:
        parts = []
        for authority_id in rule.email:
            authority = table.authority(authority_id)
            parts.append(
                f"{authority.name} <{', '.join(authority.recipients)}>" if authority
                else f"{authority_id} (unknown)"
            )
        target = "e-mail to " + "; ".join(parts)
    elif rule.system is TargetSystem.HEALTH:
        duty = table.health
        target = (f"health institution on duty: {duty.institution} <{duty.address}>" if duty
                  else "health institution on duty (not configured)")
    else:
        return "journal only, not forwarded [002: 2.8.2]"
    return f"{target}; deadline policy {rule.policy}"


def _report_text(
    routing_path: Path, topics_path: Path, loaded: _Loaded
) -> str:
    lines = [f"Routing table:    {routing_path}", f"Topic dictionary: {topics_path}"]
    table, topics = loaded.table, loaded.topics
    if topics is not None:
        lines.append(
            f"  {len(topics.topics)} topics, {len(topics.consultation_outcomes)} consultation "
            f"outcomes, {len(topics.results)} results of consideration"
        )
    if table is not None and topics is not None:
        prefixes = ", ".join(f"{h}: «{p}»" for h, p in table.pos.text_prefixes)
        default = table.pos.default_text_prefix
        lines.append("")
        lines.append(
            f"ПОС text prefix: default «{default}»" if default.strip()
            else "ПОС text prefix: no default (each hotline needs its own)"
        )
        if prefixes:
            lines.append(f"  per hotline: {prefixes}")
        lines.append("")
        lines.append(f"Rules ({len(table.rules)}):")
        for number, rule in enumerate(table.rules, start=1):
            scope = f"hotline {rule.hotline}" if rule.hotline else "all hotlines"
            lines.append(f"  #{number} {rule.topic} [{scope}]")
            lines.append(f"      → {_describe_rule(table, topics, rule)}")
        covered = {normalise_topic(r.topic) for r in table.rules}
        uncovered = [t for t in topics.topics if normalise_topic(t.name) not in covered]
        fallback = f"{_describe_pos(table, table.fallback)}; " \
                   f"deadline policy {table.fallback_deadline_policy}"
        lines.append("")
        lines.append(f"Fallback (no rule fits): {fallback}")
        if uncovered:
            lines.append("Topics without a rule:")
            for topic in uncovered:
                fate = "journal only (informational topic)" if topic.informational \
                    else "fallback"
                lines.append(f"  {topic.name} → {fate}")
    lines.append("")
    if loaded.problems:
        lines.append(f"Problems ({len(loaded.problems)}): the daemon will refuse this table")
        lines.extend(f"  - {p}" for p in loaded.problems)
    else:
        lines.append("No problems: the table is usable.")
    return "\n".join(lines)


def check_routing(
    routing_path: Path | None = None,
    topics_path: Path | None = None,
    *,
    hotlines: Collection[str] | None = None,
    deadline_policies: Collection[str] | None = None,
) -> RoutingReport:
    """The whole table described, with every problem; never raises for a bad configuration."""
    routing_path = routing_path or DEFAULT_ROUTING_FILE
    topics_path = topics_path or DEFAULT_TOPICS_FILE
    loaded = _load(routing_path, topics_path, hotlines, deadline_policies)
    return RoutingReport(
        ok=not loaded.problems,
        text=_report_text(routing_path, topics_path, loaded),
        problems=loaded.problems,
    )
