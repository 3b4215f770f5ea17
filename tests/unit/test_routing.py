"""The router and the table checks, on small tables built in code [001], [002], [003], [004]."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.calendar import build_work_calendar
from gateway.domain.route import TargetSystem
from gateway.domain.routing import (
    ConsiderationResult,
    DeloDepartment,
    DeloRuleTarget,
    EmailAuthority,
    HealthDuty,
    NoTextPrefix,
    PosCategory,
    PosDirectory,
    PosOrganization,
    PosRuleTarget,
    PosSubcategory,
    Router,
    RoutingRule,
    RoutingTable,
    RoutingTableInvalid,
    Topic,
    TopicDictionary,
    UnknownTopic,
    resolve_addressee,
    routing_problems,
    topic_problems,
)

GOV, MINISTRY, CENTRE, INSPECTORATE, CITY, CITY_SERVICE = 5000, 5001, 5011, 5002, 5007, 5017

TOPICS = TopicDictionary(
    topics=(
        Topic("Отопление", "0005.0005.0056.1156"),
        Topic("Уборка снега"),
        Topic("Земля и имущество", "0003.0008.0086.0575"),
        Topic("Безнадзорные животные"),
        Topic("Здравоохранение"),
        Topic("Программа \"Народный бюджет\""),
        Topic("Справочная информация (адреса, телефоны, режим работы)", informational=True),
        Topic("Нерезультативный звонок", informational=True),
        Topic("Прочие вопросы"),
    ),
    consultation_outcomes=("консультация в рамках полномочий",),
    results=(
        ConsiderationResult("даны разъяснения"),
        ConsiderationResult("иное", comment_required=True),
    ),
)

DIRECTORY = PosDirectory(
    categories=(
        PosCategory(101, "ЖКХ", (PosSubcategory(10101, "Отопление"),)),
        PosCategory(102, "Благоустройство", (PosSubcategory(10202, "Уборка снега"),)),
        PosCategory(199, "Прочее", (PosSubcategory(19901, "Иное"),)),
    ),
    organizations=(
        PosOrganization(GOV, "Правительство области", any_category=True),
        PosOrganization(MINISTRY, "Министерство ЖКХ", frozenset({101})),
        PosOrganization(CENTRE, "ОГКУ «Центр ЖКХ»", frozenset({101, 102}), parent=MINISTRY),
        PosOrganization(INSPECTORATE, "Жилинспекция", frozenset({101}), connected=False),
        PosOrganization(CITY, "Администрация города", frozenset({102})),
        PosOrganization(CITY_SERVICE, "МБУ «Благоустройство»", frozenset({102}), parent=CITY),
    ),
    text_prefixes=(("doverie", "Телефон доверия главы"),),
)

HEAT = RoutingRule("Отопление", TargetSystem.POS, pos=PosRuleTarget(101, 10101, MINISTRY))
SNOW_POS = RoutingRule(
    "Уборка снега", TargetSystem.POS, hotline="122", pos=PosRuleTarget(102, 10202, CITY)
)
SNOW_DELO = RoutingRule(
    "Уборка снега", TargetSystem.DELO,
    delo=DeloRuleTarget("0.2EZ47.2EZ49.", "0.2EZ47.2EZ48.", "ЖКХ-02"),
)
LAND = RoutingRule(
    "Земля и имущество", TargetSystem.DELO, delo=DeloRuleTarget("0.2EZ47.2EZ4A.", "0.2EZ47.2EZ48.")
)
ANIMALS = RoutingRule("Безнадзорные животные", TargetSystem.EMAIL, email=("vet", "city"))
HEALTH = RoutingRule("Здравоохранение", TargetSystem.HEALTH)
REFERENCE = RoutingRule(
    "Справочная информация (адреса, телефоны, режим работы)", TargetSystem.NONE
)

TABLE = RoutingTable(
    pos=DIRECTORY,
    fallback=PosRuleTarget(199, 19901, GOV),
    rules=(HEAT, SNOW_DELO, SNOW_POS, LAND, ANIMALS, HEALTH, REFERENCE),
    delo_departments=(
        DeloDepartment("0.2EZ47.2EZ48.", "Управление документационного обеспечения"),
        DeloDepartment("0.2EZ47.2EZ49.", "Комитет ЖКХ"),
        DeloDepartment("0.2EZ47.2EZ4A.", "Управление имущественных отношений"),
    ),
    email_authorities=(
        EmailAuthority("vet", "Управление ветеринарии", ("vet@example.ru",)),
        EmailAuthority("city", "Администрация города", ("a@city.example.ru", "b@city.example.ru")),
    ),
    health=HealthDuty("Дежурная больница", "duty@health.example.ru"),
)


@pytest.fixture
def router() -> Router:
    return Router(TABLE, TOPICS)


def with_rules(*rules: RoutingRule, **changes: object) -> RoutingTable:
    return replace(TABLE, rules=rules, **changes)  # type: ignore[arg-type]


def problems_of(table: RoutingTable, **kwargs: object) -> list[str]:
    return [str(p) for p in routing_problems(table, TOPICS, **kwargs)]  # type: ignore[arg-type]


# --- routing ---------------------------------------------------------------------------------


def test_pos_rule_addresses_the_organization_with_the_default_marker(router: Router) -> None:
    route = router.route("Отопление", "122", informational=False)
    assert route.system is TargetSystem.POS
    assert route.pos is not None
    assert (route.pos.category_id, route.pos.subcategory_id) == (101, 10101)
    assert route.pos.organization_id == MINISTRY
    assert route.pos.text_prefix == "Центр мониторинга 112"
    assert route.executor == "Министерство ЖКХ"
    assert route.deadline_policy == "default"


def test_hotline_marker_replaces_the_default(router: Router) -> None:
    route = router.route("Отопление", "doverie", informational=False)
    assert route.pos is not None and route.pos.text_prefix == "Телефон доверия главы"


def test_the_prefix_is_per_hotline_and_the_112_marker_belongs_to_the_122_line(
    router: Router,
) -> None:
    """[003] «каждое вводимое сообщение, начинать с пометки: «Центр мониторинга 112»» is
    the 112/122 line's marker; another hotline's configured prefix wins; the default only
    where a hotline has none."""
    line_122 = router.route("Отопление", "122", informational=False)
    doverie = router.route("Отопление", "doverie", informational=False)

    assert line_122.pos is not None and doverie.pos is not None
    assert line_122.pos.text_prefix == "Центр мониторинга 112"
    assert doverie.pos.text_prefix != line_122.pos.text_prefix


def test_subordinate_organization_is_addressed_through_its_parent() -> None:
    rule = replace(HEAT, pos=PosRuleTarget(101, 10101, CENTRE))
    route = Router(with_rules(rule), TOPICS).route("Отопление", "122", False)
    assert route.pos is not None and route.pos.organization_id == MINISTRY
    assert route.executor == "Министерство ЖКХ"


def test_resolution_climbs_to_the_topmost_connected_body() -> None:
    deep = replace(DIRECTORY, organizations=(
        *DIRECTORY.organizations,
        PosOrganization(5111, "Филиал центра", frozenset({101}), parent=CENTRE),
    ))
    resolved = resolve_addressee(deep, 5111)
    assert not isinstance(resolved, str)
    assert resolved.organization.id == MINISTRY and resolved.via_parent


def test_connected_subordinate_of_an_unconnected_body_is_addressed_itself() -> None:
    directory = replace(DIRECTORY, organizations=(
        *DIRECTORY.organizations,
        PosOrganization(5012, "Участок жилинспекции", frozenset({101}), parent=INSPECTORATE),
    ))
    resolved = resolve_addressee(directory, 5012)
    assert not isinstance(resolved, str)
    assert resolved.organization.id == 5012 and not resolved.via_parent


def test_delo_rule_carries_rubric_executor_and_controller(router: Router) -> None:
    route = router.route("Уборка снега", "doverie", informational=False)
    assert route.system is TargetSystem.DELO
    assert route.delo is not None
    assert route.delo.rubric_code == "ЖКХ-02"
    assert route.delo.executor_due == "0.2EZ47.2EZ49."
    assert route.delo.controller_due == "0.2EZ47.2EZ48."
    assert route.executor == "Комитет ЖКХ"
    assert route.deadline_policy == "delo"  # [002: 2.8.9] the request within a working day


def test_delo_rubric_defaults_to_the_topics_totk_code(router: Router) -> None:
    route = router.route("Земля и имущество", "122", informational=False)
    assert route.delo is not None and route.delo.rubric_code == "0003.0008.0086.0575"


def test_email_rule_writes_to_every_competent_authority_at_once(router: Router) -> None:
    route = router.route("Безнадзорные животные", "122", informational=False)
    assert route.system is TargetSystem.EMAIL
    assert [(t.authority, t.recipients) for t in route.email] == [
        ("Управление ветеринарии", ("vet@example.ru",)),
        ("Администрация города", ("a@city.example.ru", "b@city.example.ru")),
    ]
    assert route.executor == "Управление ветеринарии; Администрация города"
    assert route.deadline_policy == "email"  # [004: 10.2] its own clock


def test_health_question_goes_to_the_institution_on_duty(router: Router) -> None:
    route = router.route("Здравоохранение", "122", informational=False)
    assert route.system is TargetSystem.HEALTH
    assert route.executor == "Дежурная больница"
    assert [t.recipients for t in route.email] == [("duty@health.example.ru",)]
    assert route.deadline_policy == "health"


HOURS = HealthDuty("Дежурная больница", "duty@health.example.ru", time(8, 0), time(20, 0),
                   working_days_only=True, outside_hours=("city",))


def _hours_router() -> Router:
    return Router(replace(TABLE, health=HOURS), TOPICS, calendar=build_work_calendar(),
                  zone_of=lambda _: ZoneInfo("Europe/Moscow"))


@pytest.mark.parametrize("local", [
    datetime(2026, 11, 23, 8, 0),  # Monday, opening time
    datetime(2026, 11, 23, 19, 59),  # Monday, a minute before closing
])
def test_a_health_question_in_the_institutions_hours_goes_to_the_institution(
        local: datetime) -> None:
    at = local.replace(tzinfo=ZoneInfo("Europe/Moscow"))
    route = _hours_router().route("Здравоохранение", "122", False, at)
    assert (route.system, route.executor) == (TargetSystem.HEALTH, "Дежурная больница")


@pytest.mark.parametrize("local", [
    datetime(2026, 11, 23, 7, 59),  # Monday, before opening
    datetime(2026, 11, 23, 20, 0),  # Monday, closing time
    datetime(2026, 11, 22, 12, 0),  # Sunday noon
    datetime(2027, 1, 5, 12, 0),  # the New Year holidays
])
def test_outside_the_institutions_hours_the_contact_centre_sends_its_own_request(
        local: datetime) -> None:
    at = local.replace(tzinfo=ZoneInfo("Europe/Moscow"))
    route = _hours_router().route("Здравоохранение", "122", False, at)
    assert route.system is TargetSystem.EMAIL  # [004: 12] "as usual": item 10
    assert [t.authority for t in route.email] == ["Администрация города"]
    assert route.deadline_policy == "health"


def test_hours_naming_an_unknown_authority_are_refused() -> None:
    broken = replace(HOURS, outside_hours=("nobody",))
    with pytest.raises(RoutingTableInvalid, match="nobody"):
        Router(replace(TABLE, health=broken), TOPICS)


def test_rule_may_name_its_deadline_policy() -> None:
    rule = replace(HEAT, deadline_policy="urgent-heat")
    route = Router(with_rules(rule), TOPICS).route("Отопление", "122", False)
    assert route.deadline_policy == "urgent-heat"


def test_none_rule_journals_only(router: Router) -> None:
    route = router.route("Справочная информация (адреса, телефоны, режим работы)", "122", False)
    assert route.system is TargetSystem.NONE
    assert route.pos is None and route.delo is None and route.email == ()


def test_informational_call_is_journaled_whatever_the_rule(router: Router) -> None:
    assert router.route("Отопление", "122", informational=True).system is TargetSystem.NONE


def test_informational_topic_without_a_rule_is_journaled(router: Router) -> None:
    assert router.route("Нерезультативный звонок", "122", False).system is TargetSystem.NONE


def test_topic_without_a_rule_goes_to_the_regional_government(router: Router) -> None:
    route = router.route("Прочие вопросы", "122", informational=False)
    assert route.system is TargetSystem.POS
    assert route.pos is not None
    assert (route.pos.organization_id, route.pos.category_id) == (GOV, 199)
    assert route.executor == "Правительство области"
    assert route == router.fallback("122")


def test_hotline_specific_rule_beats_the_general_one(router: Router) -> None:
    assert router.route("Уборка снега", "122", False).system is TargetSystem.POS
    assert router.route("Уборка снега", "doverie", False).system is TargetSystem.DELO
    assert router.route("Уборка снега", "другая", False).system is TargetSystem.DELO


def test_unknown_topic_is_refused_naming_the_field(router: Router) -> None:
    with pytest.raises(UnknownTopic) as caught:
        router.route("Погода", "122", informational=False)
    assert caught.value.field == "topic"
    assert "Погода" in str(caught.value)
    with pytest.raises(UnknownTopic):
        router.route("Погода", "122", informational=True)


def test_topic_matching_forgives_case_yo_quotes_and_spaces(router: Router) -> None:
    assert router.is_known_topic("  отопление ")
    assert router.is_known_topic("Программа «Народный  бюджет»")
    assert not router.is_known_topic("Отопление зимой")
    assert router.route("УБОРКА СНЕГА", "122", False).system is TargetSystem.POS


def test_results_say_when_a_comment_is_required() -> None:
    other = TOPICS.result("Иное")
    assert other is not None and other.comment_missing("  ")
    assert not other.comment_missing("перезвонить 24.11 в 10:00")
    explained = TOPICS.result("даны разъяснения")
    assert explained is not None and not explained.comment_missing(None)
    assert TOPICS.is_known_outcome("Консультация в рамках полномочий")


# --- refusals ----------------------------------------------------------------------------------


def test_the_sample_table_has_no_problems() -> None:
    assert problems_of(TABLE) == []
    assert topic_problems(TOPICS) == []


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        pytest.param(
            with_rules(replace(HEAT, pos=PosRuleTarget(101, 10101, 5099))),
            'routing.toml rule #1 (topic "Отопление"): organization 5099 is not connected to ПОС',
            id="organization-unknown",
        ),
        pytest.param(
            with_rules(SNOW_DELO, SNOW_POS, replace(HEAT, pos=PosRuleTarget(101, 10101, 5002))),
            'routing.toml rule #3 (topic "Отопление"): organization 5002 is not connected to ПОС',
            id="organization-not-connected",
        ),
        pytest.param(
            with_rules(replace(HEAT, pos=PosRuleTarget(102, 10202, MINISTRY))),
            "rule #1 (topic \"Отопление\"): organization 5001 (Министерство ЖКХ) may not "
            "receive category 102",
            id="category-not-allowed",
        ),
        pytest.param(
            with_rules(replace(HEAT, pos=PosRuleTarget(102, 10202, CENTRE))),
            "organization 5011 is subordinate to 5001 (Министерство ЖКХ), which is addressed "
            "instead [003] and may not receive category 102",
            id="parent-not-allowed",
        ),
        pytest.param(
            with_rules(replace(HEAT, pos=PosRuleTarget(150, 15001, MINISTRY))),
            "category 150 is not in the ПОС category list",
            id="category-unknown",
        ),
        pytest.param(
            with_rules(replace(HEAT, pos=PosRuleTarget(101, 10202, MINISTRY))),
            "subcategory 10202 does not belong to category 101 (ЖКХ)",
            id="subcategory-of-another-category",
        ),
        pytest.param(
            with_rules(replace(HEAT, topic="Погода")),
            'rule #1 (topic "Погода"): topic "Погода" is not in the topic dictionary',
            id="topic-unknown",
        ),
        pytest.param(
            with_rules(HEAT, replace(HEAT, pos=PosRuleTarget(199, 19901, GOV))),
            'rule #2 (topic "Отопление"): duplicates rule #1 (same topic, all hotlines)',
            id="duplicate",
        ),
        pytest.param(
            with_rules(SNOW_POS, replace(SNOW_POS, topic="уборка  снега")),
            "rule #2 (topic \"уборка  снега\"): duplicates rule #1 (same topic, hotline '122')",
            id="duplicate-per-hotline",
        ),
        pytest.param(
            with_rules(SNOW_POS, pos=replace(DIRECTORY, default_text_prefix="")),
            "rule #1 (topic \"Уборка снега\"): hotline '122' has no text prefix for ПОС",
            id="hotline-without-prefix",
        ),
        pytest.param(
            with_rules(pos=replace(DIRECTORY, text_prefixes=(("122", " "),))),
            "[pos.text_prefix] hotline '122': the text prefix is empty",
            id="blank-prefix",
        ),
        pytest.param(
            with_rules(replace(SNOW_DELO, delo=DeloRuleTarget("0.2EZ47.ZZZ.", "0.2EZ47.2EZ48."))),
            "executor 0.2EZ47.ZZZ. is not in the «Дело» department list",
            id="delo-executor-unknown",
        ),
        pytest.param(
            with_rules(replace(SNOW_DELO, delo=DeloRuleTarget("0.2EZ47.2EZ49.", "0.9."))),
            "controller 0.9. is not in the «Дело» department list",
            id="delo-controller-unknown",
        ),
        pytest.param(
            with_rules(
                replace(SNOW_DELO, delo=DeloRuleTarget("0.2EZ47.2EZ49.", "0.2EZ47.2EZ48."))
            ),
            'rule #1 (topic "Уборка снега"): no rubric: give rubric_code, or a ТОТК code',
            id="delo-no-rubric",
        ),
        pytest.param(
            with_rules(delo_departments=(DeloDepartment("2EZ47", "Без корня"),)),
            "[delo] department '2EZ47' (Без корня): is not a DUE code",
            id="delo-bad-due",
        ),
        pytest.param(
            with_rules(replace(ANIMALS, email=("vet", "nobody"))),
            "authority 'nobody' is not in the [email] list",
            id="email-authority-unknown",
        ),
        pytest.param(
            with_rules(replace(ANIMALS, email=())),
            "system email needs its target",
            id="email-no-authorities",
        ),
        pytest.param(
            with_rules(email_authorities=(EmailAuthority("vet", "Ветеринария", ()),)),
            "[email] authority 'vet' (Ветеринария): has no recipients",
            id="email-authority-without-recipients",
        ),
        pytest.param(
            with_rules(email_authorities=(EmailAuthority("vet", "Ветеринария", ("vet.ru",)),)),
            "'vet.ru' is not an e-mail address",
            id="email-bad-address",
        ),
        pytest.param(
            with_rules(HEALTH, health=None),
            "system health needs the [health] duty institution",
            id="health-not-configured",
        ),
        pytest.param(
            with_rules(replace(HEAT, delo=SNOW_DELO.delo)),
            "system pos cannot carry a delo target",
            id="mixed-targets",
        ),
        pytest.param(
            with_rules(fallback=PosRuleTarget(101, 10101, INSPECTORATE)),
            "routing.toml fallback: organization 5002 is not connected to ПОС",
            id="fallback-not-connected",
        ),
        pytest.param(
            with_rules(fallback=PosRuleTarget(102, 10202, MINISTRY)),
            "routing.toml fallback: organization 5001 (Министерство ЖКХ) may not receive "
            "category 102",
            id="fallback-category-not-allowed",
        ),
        pytest.param(
            with_rules(pos=replace(DIRECTORY, organizations=(
                *DIRECTORY.organizations,
                PosOrganization(6001, "А", frozenset({101}), parent=6002),
                PosOrganization(6002, "Б", frozenset({101}), parent=6001),
            ))),
            "[pos] organization 6001 (А): has a cycle of parents",
            id="parent-cycle",
        ),
        pytest.param(
            with_rules(pos=replace(DIRECTORY, organizations=(
                *DIRECTORY.organizations, PosOrganization(6001, "А", parent=6999),
            ))),
            "[pos] organization 6001 (А): parent 6999 is not in the organization list",
            id="parent-unknown",
        ),
        pytest.param(
            with_rules(pos=replace(DIRECTORY, organizations=(
                *DIRECTORY.organizations, PosOrganization(6001, "А", frozenset({777})),
            ))),
            "[pos] organization 6001 (А): category 777 is not in the category list",
            id="organization-category-unknown",
        ),
        pytest.param(
            with_rules(pos=replace(DIRECTORY, organizations=(
                *DIRECTORY.organizations, PosOrganization(GOV, "Дубль"),
            ))),
            "[pos] organization 5000: listed twice",
            id="organization-twice",
        ),
    ],
)
def test_table_that_can_never_work_is_refused(table: RoutingTable, expected: str) -> None:
    found = problems_of(table)
    assert any(expected in p for p in found), found
    with pytest.raises(RoutingTableInvalid) as caught:
        Router(table, TOPICS)
    assert expected in str(caught.value)


def test_rule_for_a_hotline_that_is_not_configured_is_refused() -> None:
    found = problems_of(TABLE, hotlines=["doverie"])
    assert found == [
        "routing.toml rule #3 (topic \"Уборка снега\"): hotline '122' is not configured"
    ]


def test_configured_hotline_without_any_marker_is_refused() -> None:
    table = with_rules(HEAT, pos=replace(DIRECTORY, default_text_prefix=""))
    found = problems_of(table, hotlines=["doverie", "122"])
    assert found == [
        "routing.toml [pos.text_prefix]: hotline '122' has no text prefix and there is no "
        "default; its calls cannot go to ПОС [003]"
    ]


def test_unknown_deadline_policy_is_refused() -> None:
    table = with_rules(replace(HEAT, deadline_policy="fast"), HEALTH)
    found = problems_of(table, deadline_policies=["default", "email"])
    assert 'routing.toml rule #1 (topic "Отопление"): deadline policy \'fast\' is not defined' \
        in found
    assert any("rule #2" in p and "'health' is not defined" in p for p in found)


def test_every_problem_is_listed_not_only_the_first() -> None:
    table = with_rules(
        replace(HEAT, pos=PosRuleTarget(101, 10101, INSPECTORATE)),
        replace(ANIMALS, email=("nobody",)),
        fallback=PosRuleTarget(199, 19901, 5099),
    )
    found = problems_of(table)
    assert len(found) == 3
    assert [p.split(":")[0] for p in found] == [
        'routing.toml rule #1 (topic "Отопление")',
        'routing.toml rule #2 (topic "Безнадзорные животные")',
        "routing.toml fallback",
    ]


def test_marker_missing_for_a_hotline_is_refused_at_routing_time() -> None:
    router = Router(with_rules(HEAT, pos=replace(DIRECTORY, default_text_prefix="")), TOPICS)
    with pytest.raises(NoTextPrefix) as caught:
        router.route("Отопление", "122", False)
    assert caught.value.field == "hotline"
    assert router.route("Отопление", "doverie", False).system is TargetSystem.POS


@pytest.mark.parametrize(
    ("topics", "expected"),
    [
        (TopicDictionary((Topic("Отопление"), Topic("отопление"))),
         'topics.toml topic #2 ("отопление"): duplicates topic #1'),
        (TopicDictionary((Topic("Отопление", "5.5.56.1149"),)),
         "ТОТК code '5.5.56.1149' is not раздел.тематика.тема.вопрос"),
        (TopicDictionary((Topic(" "),)), 'topics.toml topic #1 (" "): the name is empty'),
        (TopicDictionary(()), "topics.toml: the topic list is empty"),
        (TopicDictionary((Topic("А"),), results=(ConsiderationResult("иное"),) * 2),
         'result "иное" is listed twice'),
    ],
)
def test_topic_dictionary_defects_are_listed(topics: TopicDictionary, expected: str) -> None:
    assert any(expected in str(p) for p in topic_problems(topics))


# --- the property: a built router never addresses an organization that cannot receive ------

ORG_IDS = list(range(7001, 7007))
CATEGORIES = (
    PosCategory(1, "A", (PosSubcategory(11, "a"),)),
    PosCategory(2, "B", (PosSubcategory(21, "b"),)),
    PosCategory(3, "C", (PosSubcategory(31, "c"),)),
)


@st.composite
def random_tables(draw: st.DrawFn) -> RoutingTable:
    organizations = [PosOrganization(GOV, "Правительство", any_category=True)]
    for index, org_id in enumerate(ORG_IDS):
        parent = draw(st.none() | st.sampled_from([GOV, *ORG_IDS[:index]]))
        organizations.append(PosOrganization(
            org_id, f"org {org_id}",
            categories=frozenset(draw(st.sets(st.sampled_from([1, 2, 3])))),
            parent=parent, connected=draw(st.booleans()),
        ))
    directory = PosDirectory(CATEGORIES, tuple(organizations))
    base = RoutingTable(pos=directory, fallback=PosRuleTarget(3, 31, GOV))
    rules: list[RoutingRule] = []
    for topic in TOPICS.topics:
        category = draw(st.sampled_from(CATEGORIES))
        rule = RoutingRule(
            topic.name, TargetSystem.POS,
            hotline=draw(st.none() | st.sampled_from(["122", "doverie"])),
            pos=PosRuleTarget(category.id, category.subcategories[0].id,
                               draw(st.sampled_from([GOV, *ORG_IDS, 7999]))),
        )
        # Keep the rules the checks accept: the router must then route them safely.
        if not routing_problems(replace(base, rules=(rule,)), TOPICS):
            rules.append(rule)
    return replace(base, rules=tuple(rules))


@settings(max_examples=150, deadline=None)
@given(
    table=random_tables(),
    topic=st.sampled_from([t.name for t in TOPICS.topics]),
    hotline=st.sampled_from(["122", "doverie", "другая"]) | st.text(min_size=1, max_size=8),
    informational=st.booleans(),
)
def test_routed_pos_organization_is_always_connected_and_allowed(
    table: RoutingTable, topic: str, hotline: str, informational: bool
) -> None:
    router = Router(table, TOPICS)
    route = router.route(topic, hotline, informational)
    if route.system is not TargetSystem.POS:
        assert route.system is TargetSystem.NONE
        return
    assert route.pos is not None
    org = table.pos.organization(route.pos.organization_id)
    assert org is not None and org.connected
    assert org.may_receive(route.pos.category_id)
    category = table.pos.category(route.pos.category_id)
    assert category is not None and category.has_subcategory(route.pos.subcategory_id)
    assert route.pos.text_prefix.startswith("Центр мониторинга 112") or hotline == "doverie"
    # [003] a body's subordinate is never addressed while a connected body stands above it.
    parent = org.parent
    while parent is not None:
        above = table.pos.organization(parent)
        assert above is not None and not above.connected
        parent = above.parent
