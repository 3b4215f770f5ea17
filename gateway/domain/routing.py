"""Routing: which system and which executor receive a call, decided by its topic and hotline.

The rules come from the regulations, the data from configuration:

- [001, appendix 2] the topic dictionary (topics, consultation outcomes, results of
  consideration with their "comment required" rules) is what operators pick from;
- [003] ПОС: only organizations connected to ПОС may be addressees, only for categories they
  may receive; a matter of a body with subordinate organizations in ПОС goes to the body;
  when in doubt the regional government is the executor; every message starts with the
  hotline's marker («Центр мониторинга 112» by default);
- [002: 2.8.6, 2.8.9] «Дело»: a registration card under a rubric, with the executor
  subdivision and the controller;
- [004: 10.1] e-mail to the responsible person of every competent authority at once;
- [004: 12] health questions go to the health institution on duty;
- [002: 2.8.2] informational calls answered on the spot are journaled, not forwarded.

A table that can never work is refused before the daemon starts: `routing_problems` lists
every such defect, and `Router` will not be built from a table that has any. Once built,
a router never addresses an organization that cannot receive the message.

Pure domain: no configuration format and no validation library here; `config.routing`
reads the TOML files and builds these objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, tzinfo

from gateway.domain.ports import WorkCalendar
from gateway.domain.route import DeloTarget, EmailTarget, PosTarget, Route, TargetSystem
from gateway.errors import GatewayError

DEFAULT_TEXT_PREFIX = "Центр мониторинга 112"  # [003] the fixed marker of the hotline
DEFAULT_DEADLINE_POLICY = "default"

# ТОТК (the federal classifier of appeal topics): раздел.тематика.тема.вопрос.
TOTK_CODE = re.compile(r"\d{4}\.\d{4}\.\d{4}\.\d{4}")
# «Дело» hierarchical dictionary codes: "0." is the root, each level adds "<code>.".
DUE_CODE = re.compile(r"0\.(?:[0-9A-Za-z]+\.)+")
# Deliberately loose: catches typos (no "@", spaces, no domain), not every RFC corner.
EMAIL_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")

_QUOTES = str.maketrans({"«": '"', "»": '"', "“": '"', "”": '"', "„": '"', "ё": "е", "Ё": "Е"})


def normalise_topic(name: str) -> str:
    """The key topics are matched by: operators type «ё» or «е», quotes and spaces freely."""
    return " ".join(name.translate(_QUOTES).split()).casefold()


def default_deadline_policy(system: TargetSystem) -> str:
    """«Дело» requests [002: 2.8.9], e-mail requests [004: 10.2] and health questions
    [004: 12] run on their own clocks; everything else on the default one."""
    if system is TargetSystem.DELO:
        return "delo"
    if system is TargetSystem.EMAIL:
        return "email"
    if system is TargetSystem.HEALTH:
        return "health"
    return DEFAULT_DEADLINE_POLICY


# --- errors ---------------------------------------------------------------------------


class RoutingError(GatewayError):
    """A call cannot be routed; `field` names the intake field to blame, if any."""

    field: str | None = None


class UnknownTopic(RoutingError):
    """The topic is not in the topic dictionary [001, appendix 2]: intake answers 422."""

    field = "topic"

    def __init__(self, topic: str) -> None:
        super().__init__(
            f"Тема «{topic}» отсутствует в справочнике тем / unknown topic {topic!r}"
        )
        self.topic = topic


class NoTextPrefix(RoutingError):
    """[003] a ПОС message must start with the hotline's marker, and this hotline has none."""

    field = "hotline"

    def __init__(self, hotline: str) -> None:
        super().__init__(
            f"Для линии «{hotline}» не задана пометка для ПОС / hotline {hotline!r} has no "
            "text prefix for ПОС and there is no default"
        )
        self.hotline = hotline


@dataclass(frozen=True, slots=True)
class RoutingProblem:
    """One defect of the configuration; `where` names the file and the entry."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class RoutingTableInvalid(RoutingError):
    """The table can never work as written; `problems` lists every defect."""

    def __init__(self, problems: Iterable[RoutingProblem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"routing configuration has {len(self.problems)} problem(s):\n{lines}")


# --- the topic dictionary [001] ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic of calls (тематика сообщения) [001, appendix 2].

    `informational`: calls on this topic are normally answered on the spot and only
    journaled [002: 2.8.2] (reference information, a call that led nowhere).
    """

    name: str
    totk_code: str | None = None
    informational: bool = False


@dataclass(frozen=True, slots=True)
class ConsiderationResult:
    """A result of consideration (результат рассмотрения сообщения) [001, appendix 2]."""

    name: str
    comment_required: bool = False
    comment_hint: str = ""  # what the comment must say, e.g. the date of the next call

    def comment_missing(self, comment: str | None) -> bool:
        return self.comment_required and not (comment and comment.strip())


@dataclass(frozen=True, slots=True)
class TopicDictionary:
    """Topics, consultation outcomes and results of consideration operators choose from."""

    topics: tuple[Topic, ...]
    consultation_outcomes: tuple[str, ...] = ()
    results: tuple[ConsiderationResult, ...] = ()
    _by_key: dict[str, Topic] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, Topic] = {}
        for topic in self.topics:
            index.setdefault(normalise_topic(topic.name), topic)
        object.__setattr__(self, "_by_key", index)

    def find(self, name: str) -> Topic | None:
        return self._by_key.get(normalise_topic(name))

    def is_known_topic(self, name: str) -> bool:
        return self.find(name) is not None

    def topic(self, name: str) -> Topic:
        """The dictionary's topic for what an operator typed; `UnknownTopic` if none."""
        found = self.find(name)
        if found is None:
            raise UnknownTopic(name)
        return found

    def result(self, name: str) -> ConsiderationResult | None:
        key = normalise_topic(name)
        return next((r for r in self.results if normalise_topic(r.name) == key), None)

    def is_known_outcome(self, name: str) -> bool:
        key = normalise_topic(name)
        return any(normalise_topic(o) == key for o in self.consultation_outcomes)


def topic_problems(topics: TopicDictionary, source: str = "topics.toml") -> list[RoutingProblem]:
    """Defects of the topic dictionary: duplicates, blank names, malformed ТОТК codes."""
    problems: list[RoutingProblem] = []
    if not topics.topics:
        problems.append(RoutingProblem(source, "the topic list is empty"))
    seen: dict[str, int] = {}
    for number, topic in enumerate(topics.topics, start=1):
        where = f'{source} topic #{number} ("{topic.name}")'
        key = normalise_topic(topic.name)
        if not key:
            problems.append(RoutingProblem(where, "the name is empty"))
            continue
        if key in seen:
            problems.append(RoutingProblem(where, f"duplicates topic #{seen[key]}"))
        else:
            seen[key] = number
        if topic.totk_code is not None and not TOTK_CODE.fullmatch(topic.totk_code):
            problems.append(RoutingProblem(
                where,
                f"ТОТК code {topic.totk_code!r} is not раздел.тематика.тема.вопрос "
                "(four groups of four digits, e.g. 0005.0005.0056.1149)",
            ))
    for kind, names in (
        ("consultation outcome", topics.consultation_outcomes),
        ("result", tuple(r.name for r in topics.results)),
    ):
        seen_names: set[str] = set()
        for name in names:
            key = normalise_topic(name)
            if not key:
                problems.append(RoutingProblem(source, f"a {kind} has an empty name"))
            elif key in seen_names:
                problems.append(RoutingProblem(source, f'{kind} "{name}" is listed twice'))
            seen_names.add(key)
    return problems


# --- the routing table ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PosSubcategory:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class PosCategory:
    """A ПОС category; its subcategories are the only ones a message may carry with it."""

    id: int
    name: str
    subcategories: tuple[PosSubcategory, ...] = ()

    def has_subcategory(self, subcategory_id: int) -> bool:
        return any(s.id == subcategory_id for s in self.subcategories)


@dataclass(frozen=True, slots=True)
class PosOrganization:
    """An organization known to ПОС [003].

    `parent`: the body that coordinates this organization in ПОС; a message for this
    organization is addressed to the parent [003, instruction item 4].
    `connected`: false for organizations not (yet) in ПОС, kept so the table can say why
    a rule naming them is refused.
    """

    id: int
    name: str
    categories: frozenset[int] = frozenset()
    any_category: bool = False  # the regional government coordinates everything
    parent: int | None = None
    connected: bool = True

    def may_receive(self, category_id: int) -> bool:
        return self.any_category or category_id in self.categories


@dataclass(frozen=True, slots=True)
class PosDirectory:
    """What the gateway knows of ПОС: categories, connected organizations, text markers."""

    categories: tuple[PosCategory, ...]
    organizations: tuple[PosOrganization, ...]
    default_text_prefix: str = DEFAULT_TEXT_PREFIX  # "" means: each hotline needs its own
    text_prefixes: tuple[tuple[str, str], ...] = ()  # (hotline, prefix)

    def category(self, category_id: int) -> PosCategory | None:
        return next((c for c in self.categories if c.id == category_id), None)

    def organization(self, organization_id: int) -> PosOrganization | None:
        return next((o for o in self.organizations if o.id == organization_id), None)

    def text_prefix(self, hotline: str) -> str:
        """The hotline's marker, else the default; "" when neither is set."""
        own = next((p for h, p in self.text_prefixes if h == hotline), None)
        return own if own is not None else self.default_text_prefix


@dataclass(frozen=True, slots=True)
class PosRuleTarget:
    """A rule's ПОС target: the organization it names, which the route's `PosTarget` may
    replace by the parent [003]; category and subcategory as the rule gives them."""

    category_id: int
    subcategory_id: int
    organization_id: int


@dataclass(frozen=True, slots=True)
class DeloDepartment:
    """A subdivision in «Дело»'s DEPARTMENT dictionary [002, list of officials]."""

    due: str
    name: str


@dataclass(frozen=True, slots=True)
class DeloRuleTarget:
    """A rule's «Дело» target [002: 2.8.6, 2.8.9]: rubric, executor subdivision and
    controller of the card.

    `rubric_code` None: the topic's ТОТК code is the rubric of the route's `DeloTarget`.
    """

    executor_due: str
    controller_due: str
    rubric_code: str | None = None


@dataclass(frozen=True, slots=True)
class EmailAuthority:
    """An authority and its responsible persons' addresses [004: 10.1]."""

    id: str
    name: str
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HealthDuty:
    """[004: 12] the health institution on duty, reached through its duty mailbox, within
    the institutions' working hours; outside them the contact centre handles the call as
    usual, by an e-mail request to `outside_hours` authorities [004: 10].

    No hours: the institution takes every call.
    """

    institution: str
    address: str
    opens: time | None = None  # local to the hotline
    closes: time | None = None
    working_days_only: bool = True  # by the production calendar
    outside_hours: tuple[str, ...] = ()  # e-mail authority ids

    def is_open(self, local: datetime, working_day: bool) -> bool:
        if self.opens is None or self.closes is None:
            return True
        if self.working_days_only and not working_day:
            return False
        return self.opens <= local.time() < self.closes


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """One line of the table: a topic, optionally only for one hotline, and where it goes.

    Exactly the target of `system` is set: `pos`, `delo`, `email` (authority ids), or
    nothing for `health` and `none`. `deadline_policy` None: the system's default.
    """

    topic: str
    system: TargetSystem
    hotline: str | None = None
    pos: PosRuleTarget | None = None
    delo: DeloRuleTarget | None = None
    email: tuple[str, ...] = ()
    deadline_policy: str | None = None

    @property
    def policy(self) -> str:
        return self.deadline_policy or default_deadline_policy(self.system)


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """The whole routing configuration; `fallback` is the regional government in ПОС [003]."""

    pos: PosDirectory
    fallback: PosRuleTarget
    rules: tuple[RoutingRule, ...] = ()
    delo_departments: tuple[DeloDepartment, ...] = ()
    email_authorities: tuple[EmailAuthority, ...] = ()
    health: HealthDuty | None = None
    fallback_deadline_policy: str = DEFAULT_DEADLINE_POLICY

    def department(self, due: str) -> DeloDepartment | None:
        return next((d for d in self.delo_departments if d.due == due), None)

    def authority(self, authority_id: str) -> EmailAuthority | None:
        return next((a for a in self.email_authorities if a.id == authority_id), None)


# --- ПОС addressing [003] ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PosAddressee:
    """The organization a ПОС message is actually addressed to, and why."""

    organization: PosOrganization
    named: int  # the organization the rule names
    via_parent: bool  # true when the rule named a subordinate organization


def resolve_addressee(pos: PosDirectory, organization_id: int) -> PosAddressee | str:
    """The topmost connected body above (or at) the named organization, else why there is none.

    [003, instruction item 4] a matter of a body with subordinate organizations in ПОС is
    addressed to the body, which coordinates and informs its subordinates.
    """
    named = pos.organization(organization_id)
    if named is None:
        return f"organization {organization_id} is not connected to ПОС"
    chain = [named]
    current = named
    while current.parent is not None:
        parent = pos.organization(current.parent)
        if parent is None:
            break  # reported once for the directory; the chain ends here
        if any(o.id == parent.id for o in chain):
            return f"organization {organization_id} has a cycle of parents"
        chain.append(parent)
        current = parent
    connected = [o for o in chain if o.connected]
    if not connected:
        if len(chain) == 1:
            return f"organization {organization_id} is not connected to ПОС"
        return (
            f"organization {organization_id} is not connected to ПОС, nor is any body "
            f"above it ({', '.join(str(o.id) for o in chain[1:])})"
        )
    top = connected[-1]
    return PosAddressee(top, named=organization_id, via_parent=top.id != organization_id)


def _pos_rule_target_problems(
    pos: PosDirectory, target: PosRuleTarget
) -> tuple[list[str], PosAddressee | None]:
    problems: list[str] = []
    category = pos.category(target.category_id)
    if category is None:
        problems.append(f"category {target.category_id} is not in the ПОС category list")
    elif not category.has_subcategory(target.subcategory_id):
        problems.append(
            f"subcategory {target.subcategory_id} does not belong to category "
            f"{target.category_id} ({category.name})"
        )
    resolved = resolve_addressee(pos, target.organization_id)
    if isinstance(resolved, str):
        problems.append(resolved)
        return problems, None
    addressee = resolved.organization
    if not addressee.may_receive(target.category_id):
        if resolved.via_parent:
            problems.append(
                f"organization {target.organization_id} is subordinate to "
                f"{addressee.id} ({addressee.name}), which is addressed instead [003] and "
                f"may not receive category {target.category_id}"
            )
        else:
            problems.append(
                f"organization {addressee.id} ({addressee.name}) may not receive "
                f"category {target.category_id}"
            )
    return problems, resolved


def _in_parent_cycle(pos: PosDirectory, org: PosOrganization) -> bool:
    seen = {org.id}
    current: PosOrganization | None = org
    while current is not None and current.parent is not None:
        if current.parent in seen:
            return True
        seen.add(current.parent)
        current = pos.organization(current.parent)
    return False


def _directory_problems(table: RoutingTable, source: str) -> list[RoutingProblem]:
    problems: list[RoutingProblem] = []
    pos = table.pos
    category_ids = [c.id for c in pos.categories]
    for cid in sorted({c for c in category_ids if category_ids.count(c) > 1}):
        problems.append(RoutingProblem(f"{source} [pos] category {cid}", "listed twice"))
    for category in pos.categories:
        sub_ids = [s.id for s in category.subcategories]
        for sid in sorted({s for s in sub_ids if sub_ids.count(s) > 1}):
            problems.append(RoutingProblem(
                f"{source} [pos] category {category.id}", f"subcategory {sid} listed twice"
            ))
    org_ids = [o.id for o in pos.organizations]
    for oid in sorted({o for o in org_ids if org_ids.count(o) > 1}):
        problems.append(RoutingProblem(f"{source} [pos] organization {oid}", "listed twice"))
    known_categories = set(category_ids)
    for org in pos.organizations:
        where = f"{source} [pos] organization {org.id} ({org.name})"
        for cid in sorted(org.categories - known_categories):
            problems.append(RoutingProblem(where, f"category {cid} is not in the category list"))
        if org.parent is not None:
            if org.parent == org.id:
                problems.append(RoutingProblem(where, "is its own parent"))
            elif pos.organization(org.parent) is None:
                problems.append(RoutingProblem(
                    where, f"parent {org.parent} is not in the organization list"
                ))
            elif _in_parent_cycle(pos, org):
                problems.append(RoutingProblem(where, "has a cycle of parents"))
    for hotline, prefix in pos.text_prefixes:
        if not prefix.strip():
            problems.append(RoutingProblem(
                f"{source} [pos.text_prefix] hotline {hotline!r}",
                "the text prefix is empty; every ПОС message must start with one [003]",
            ))
    dues = [d.due for d in table.delo_departments]
    for due in sorted({d for d in dues if dues.count(d) > 1}):
        problems.append(RoutingProblem(f"{source} [delo] department {due}", "listed twice"))
    for dept in table.delo_departments:
        if not DUE_CODE.fullmatch(dept.due):
            problems.append(RoutingProblem(
                f"{source} [delo] department {dept.due!r} ({dept.name})",
                "is not a DUE code like 0.2EZ47.2EZ49.",
            ))
    ids = [a.id for a in table.email_authorities]
    for aid in sorted({a for a in ids if ids.count(a) > 1}):
        problems.append(RoutingProblem(f"{source} [email] authority {aid!r}", "listed twice"))
    for authority in table.email_authorities:
        where = f"{source} [email] authority {authority.id!r} ({authority.name})"
        if not authority.recipients:
            problems.append(RoutingProblem(where, "has no recipients"))
        for address in authority.recipients:
            if not EMAIL_ADDRESS.fullmatch(address):
                problems.append(RoutingProblem(where, f"{address!r} is not an e-mail address"))
    if table.health is not None and not EMAIL_ADDRESS.fullmatch(table.health.address):
        problems.append(RoutingProblem(
            f"{source} [health]", f"{table.health.address!r} is not an e-mail address"
        ))
    if table.health is not None:
        duty = table.health
        for authority_id in duty.outside_hours:
            if table.authority(authority_id) is None:
                problems.append(RoutingProblem(
                    f"{source} [health]", f"outside_hours: unknown authority {authority_id!r}"))
        if (duty.opens is None) != (duty.closes is None) or (
                duty.opens is not None and duty.closes is not None and duty.opens >= duty.closes):
            problems.append(RoutingProblem(
                f"{source} [health]", "hours: give both opens and closes, opens first"))
    return problems


def _rule_problems(
    rule: RoutingRule, table: RoutingTable, topics: TopicDictionary
) -> list[str]:
    problems: list[str] = []
    topic = topics.find(rule.topic)
    if topic is None:
        problems.append(f'topic "{rule.topic}" is not in the topic dictionary')
    wanted = {
        TargetSystem.POS: "pos", TargetSystem.DELO: "delo", TargetSystem.EMAIL: "email"
    }.get(rule.system)
    present = {
        name for name, value in (("pos", rule.pos), ("delo", rule.delo), ("email", rule.email))
        if value
    }
    if wanted is not None and wanted not in present:
        problems.append(f"system {rule.system.value} needs its target")
    for extra in sorted(present - {wanted} if wanted else present):
        problems.append(f"system {rule.system.value} cannot carry a {extra} target")
    if rule.system is TargetSystem.POS and rule.pos is not None:
        problems.extend(_pos_rule_target_problems(table.pos, rule.pos)[0])
        if rule.hotline is not None and not table.pos.text_prefix(rule.hotline).strip():
            problems.append(f"hotline {rule.hotline!r} has no text prefix for ПОС [003]")
    if rule.system is TargetSystem.DELO and rule.delo is not None:
        for role, due in (("executor", rule.delo.executor_due),
                          ("controller", rule.delo.controller_due)):
            if table.department(due) is None:
                problems.append(f"{role} {due} is not in the «Дело» department list")
        if rule.delo.rubric_code is None and (topic is None or topic.totk_code is None):
            problems.append(
                "no rubric: give rubric_code, or a ТОТК code to the topic in topics.toml"
            )
        elif rule.delo.rubric_code is not None and not rule.delo.rubric_code.strip():
            problems.append("the rubric code is empty")
    if rule.system is TargetSystem.EMAIL:
        seen: set[str] = set()
        for authority_id in rule.email:
            if authority_id in seen:
                problems.append(f"authority {authority_id!r} is named twice")
            seen.add(authority_id)
            if table.authority(authority_id) is None:
                problems.append(f"authority {authority_id!r} is not in the [email] list")
    if rule.system is TargetSystem.HEALTH and table.health is None:
        problems.append("system health needs the [health] duty institution")
    return problems


def routing_problems(
    table: RoutingTable,
    topics: TopicDictionary,
    *,
    hotlines: Collection[str] | None = None,
    deadline_policies: Collection[str] | None = None,
    source: str = "routing.toml",
) -> list[RoutingProblem]:
    """Every reason the table can never work as written; empty when it is sound.

    `hotlines` (the configured hotline codes) and `deadline_policies` (the policies the
    deadline configuration defines), when given, are checked against what rules name.
    """
    problems = _directory_problems(table, source)
    policies = set(deadline_policies) if deadline_policies is not None else None
    seen: dict[tuple[str, str | None], int] = {}
    for number, rule in enumerate(table.rules, start=1):
        where = f'{source} rule #{number} (topic "{rule.topic}")'
        found = [RoutingProblem(where, m) for m in _rule_problems(rule, table, topics)]
        key = (normalise_topic(rule.topic), rule.hotline)
        if key in seen:
            scope = f"hotline {rule.hotline!r}" if rule.hotline else "all hotlines"
            found.append(RoutingProblem(
                where, f"duplicates rule #{seen[key]} (same topic, {scope})"
            ))
        else:
            seen[key] = number
        if hotlines is not None and rule.hotline is not None and rule.hotline not in hotlines:
            found.append(RoutingProblem(where, f"hotline {rule.hotline!r} is not configured"))
        if policies is not None and rule.policy not in policies:
            found.append(RoutingProblem(where, f"deadline policy {rule.policy!r} is not defined"))
        problems.extend(found)
    fallback_where = f"{source} fallback"
    for message in _pos_rule_target_problems(table.pos, table.fallback)[0]:
        problems.append(RoutingProblem(fallback_where, message))
    if policies is not None and table.fallback_deadline_policy not in policies:
        problems.append(RoutingProblem(
            fallback_where,
            f"deadline policy {table.fallback_deadline_policy!r} is not defined",
        ))
    if hotlines is not None:
        for hotline in hotlines:
            if not table.pos.text_prefix(hotline).strip():
                problems.append(RoutingProblem(
                    f"{source} [pos.text_prefix]",
                    f"hotline {hotline!r} has no text prefix and there is no default; "
                    "its calls cannot go to ПОС [003]",
                ))
    return problems


# --- the router ---------------------------------------------------------------------------


class Router:
    """Decides the route of a call at intake; built only from a table without problems."""

    def __init__(
        self,
        table: RoutingTable,
        topics: TopicDictionary,
        *,
        hotlines: Collection[str] | None = None,
        deadline_policies: Collection[str] | None = None,
        calendar: WorkCalendar | None = None,
        zone_of: Callable[[str], tzinfo] | None = None,
    ) -> None:
        self._calendar = calendar
        self._zone_of = zone_of
        problems = topic_problems(topics) + routing_problems(
            table, topics, hotlines=hotlines, deadline_policies=deadline_policies
        )
        if problems:
            raise RoutingTableInvalid(problems)
        self._table = table
        self._topics = topics
        self._rules: dict[tuple[str, str | None], RoutingRule] = {
            (normalise_topic(r.topic), r.hotline): r for r in table.rules
        }

    @property
    def topics(self) -> TopicDictionary:
        return self._topics

    @property
    def table(self) -> RoutingTable:
        return self._table

    def is_known_topic(self, name: str) -> bool:
        return self._topics.is_known_topic(name)

    def canonical_topic(self, name: str) -> str:
        """The dictionary's own spelling of a topic an operator typed; UnknownTopic if none."""
        return self._topics.topic(name).name

    def rule_for(self, topic: str, hotline: str) -> RoutingRule | None:
        """The hotline's own rule for the topic, else the rule for all hotlines."""
        key = normalise_topic(topic)
        return self._rules.get((key, hotline)) or self._rules.get((key, None))

    def route(self, topic: str, hotline: str, informational: bool,
              at: datetime | None = None) -> Route:
        """Where a call goes; `UnknownTopic` if the topic is not in the dictionary.

        `at`: when the call came, for the health institutions' working hours [004: 12]
        (without it, or without a calendar, the institution on duty takes the call).

        Informational calls, and calls on an informational topic that no rule sends
        anywhere, are journaled only (system none) [002: 2.8.2]. A topic no rule covers
        goes to the regional government in ПОС for coordination [003].
        """
        known = self._topics.topic(topic)
        if informational:
            return Route.none()
        rule = self.rule_for(known.name, hotline)
        if rule is None:
            if known.informational:
                return Route.none()
            return self.fallback(hotline)
        return self._route_by(rule, known, hotline, at)

    def fallback(self, hotline: str) -> Route:
        """[003] «Правительство ... области» coordinates whatever nobody else clearly owns."""
        return self._pos_route(self._table.fallback, hotline, self._table.fallback_deadline_policy)

    def _route_by(self, rule: RoutingRule, topic: Topic, hotline: str,
                  at: datetime | None = None) -> Route:
        table = self._table
        if rule.system is TargetSystem.POS and rule.pos is not None:
            return self._pos_route(rule.pos, hotline, rule.policy)
        if rule.system is TargetSystem.DELO and rule.delo is not None:
            executor = table.department(rule.delo.executor_due)
            rubric = rule.delo.rubric_code or topic.totk_code or ""
            return Route(
                system=TargetSystem.DELO,
                executor=executor.name if executor else rule.delo.executor_due,
                delo=DeloTarget(rubric, rule.delo.executor_due, rule.delo.controller_due),
                deadline_policy=rule.policy,
            )
        if rule.system is TargetSystem.EMAIL:
            authorities = [a for a in map(table.authority, rule.email) if a is not None]
            return Route(
                system=TargetSystem.EMAIL,
                executor="; ".join(a.name for a in authorities),
                email=tuple(EmailTarget(a.name, a.recipients) for a in authorities),
                deadline_policy=rule.policy,
            )
        if rule.system is TargetSystem.HEALTH and table.health is not None:
            duty = table.health
            if at is not None and self._calendar is not None and self._zone_of is not None \
                    and duty.outside_hours:
                local = at.astimezone(self._zone_of(hotline))
                if not duty.is_open(local, self._calendar.is_working_day(local.date())):
                    outside = [a for a in map(table.authority, duty.outside_hours)
                               if a is not None]
                    return Route(
                        system=TargetSystem.EMAIL,
                        executor="; ".join(a.name for a in outside),
                        email=tuple(EmailTarget(a.name, a.recipients) for a in outside),
                        deadline_policy=rule.policy,
                    )
            return Route(
                system=TargetSystem.HEALTH,
                executor=duty.institution,
                email=(EmailTarget(duty.institution, (duty.address,)),),
                deadline_policy=rule.policy,
            )
        return Route(system=TargetSystem.NONE, executor="", deadline_policy=rule.policy)

    def _pos_route(self, target: PosRuleTarget, hotline: str, policy: str) -> Route:
        prefix = self._table.pos.text_prefix(hotline)
        if not prefix.strip():
            raise NoTextPrefix(hotline)
        resolved = resolve_addressee(self._table.pos, target.organization_id)
        if isinstance(resolved, str):  # excluded by validation; kept for type narrowing
            raise RoutingTableInvalid([RoutingProblem("routing", resolved)])
        addressee = resolved.organization
        return Route(
            system=TargetSystem.POS,
            executor=addressee.name,
            pos=PosTarget(
                category_id=target.category_id,
                subcategory_id=target.subcategory_id,
                organization_id=addressee.id,
                text_prefix=prefix,
            ),
            deadline_policy=policy,
        )
