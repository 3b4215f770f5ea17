"""Loading and checking the TOML topic dictionary and routing table, shipped and broken ones."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.routing import (
    DEFAULT_ROUTING_FILE,
    DEFAULT_TOPICS_FILE,
    RoutingConfigError,
    check_routing,
    load_router,
)
from gateway.domain.route import TargetSystem
from gateway.domain.routing import TOTK_CODE, Router, UnknownTopic

POLICIES = ("default", "delo", "email", "health")

# [001, appendix 2] «Перечень тематик сообщений», as written in the regulation.
TOPICS_001 = (
    "Безнадзорные животные",
    "Благоустройство придомовой территории; городов и поселков",
    "Газоснабжение и газификация населенных пунктов",
    "Горячее водоснабжение",
    "Градостроительство и архитектура",
    "Жалобы на действия (бездействие) должностных и уполномоченных лиц",
    "Земля и имущество",
    "Канализация",
    "Капитальный ремонт жилого дома",
    "Культура и искусство",
    "Личный прием (Губернатор, должностное лиц ОИВ и ОМС)",
    "Образование",
    "Оплата жилищно-коммунальных услуг ЖКХ",
    "Отопление",
    "Поздравления, благодарности, приглашения",
    "Предоставление жилья",
    "Предпринимательство и потребительский рынок",
    "Программа \"Народный бюджет\"",
    "Рассмотрение обращений (сообщений)",
    "Ритуальные услуги",
    "Социальная защита населения",
    "Справочная информация (адреса, телефоны, режим работы)",
    "Текущее содержание многоквартирного дома",
    "Телевидение",
    "Транспорт",
    "Уборка снега",
    "Улично-дорожная сеть",
    "Физическая культура и спорт",
    "Холодное водоснабжение",
    "Энергоснабжение",
    "Нерезультативный звонок",
    "Прочие вопросы",
)

TOPICS_TOML = """
[[topics]]
name = "Отопление"
totk = "0005.0005.0056.1156"

[[topics]]
name = "Уборка снега"

[[topics]]
name = "Прочие вопросы"
"""

ROUTING_HEAD = """
[pos]
default_text_prefix = "Центр мониторинга 112"

[[pos.categories]]
id = 101
name = "ЖКХ"
subcategories = [{ id = 10101, name = "Отопление" }]

[[pos.categories]]
id = 199
name = "Прочее"
subcategories = [{ id = 19901, name = "Иное" }]

[[pos.organizations]]
id = 5000
name = "Правительство Примерной области"
any_category = true

[[pos.organizations]]
id = 5001
name = "Министерство ЖКХ"
categories = [101]

[[pos.organizations]]
id = 5011
name = "ОГКУ «Центр ЖКХ»"
categories = [101]
parent = 5001

[[pos.organizations]]
id = 5002
name = "Жилинспекция"
categories = [101]
connected = false

[fallback]
organization = 5000
category = 199
subcategory = 19901

[[delo.departments]]
due = "0.2EZ47.2EZ48."
name = "Управление документационного обеспечения"

[[delo.departments]]
due = "0.2EZ47.2EZ49."
name = "Комитет ЖКХ"

[[email.authorities]]
id = "city"
name = "Администрация города"
recipients = ["a@city.example.ru"]
"""


def write(tmp_path: Path, rules: str, head: str = ROUTING_HEAD,
          topics: str = TOPICS_TOML) -> tuple[Path, Path]:
    routing = tmp_path / "routing.toml"
    routing.write_text(head + textwrap.dedent(rules), encoding="utf-8")
    topics_path = tmp_path / "topics.toml"
    topics_path.write_text(topics, encoding="utf-8")
    return routing, topics_path


# --- the shipped configuration ----------------------------------------------------------------


def test_shipped_files_load_with_no_problems() -> None:
    report = check_routing(hotlines=["122"], deadline_policies=POLICIES)
    assert report.ok, report.text
    assert report.problems == ()
    assert "No problems" in report.text
    router = load_router(hotlines=["122"], deadline_policies=POLICIES)
    assert isinstance(router, Router)


def test_shipped_rules_name_only_policies_the_shipped_deadlines_define() -> None:
    from config.deadlines import load_deadline_policies

    names = load_deadline_policies().names
    assert check_routing(hotlines=["122"], deadline_policies=names).ok


def test_shipped_files_are_the_packaged_defaults() -> None:
    assert Path(__file__).parents[2] / "config" / "routing.toml" == DEFAULT_ROUTING_FILE
    assert DEFAULT_TOPICS_FILE.name == "topics.toml" and DEFAULT_TOPICS_FILE.is_file()


def test_shipped_dictionary_has_every_topic_of_the_regulation() -> None:
    names = [t.name for t in load_router().topics.topics]
    assert [n for n in names if n in TOPICS_001] == list(TOPICS_001)
    assert set(names) - set(TOPICS_001) == {"Здравоохранение"}  # [004: 12]


def test_shipped_dictionary_marks_informational_topics() -> None:
    informational = {t.name for t in load_router().topics.topics if t.informational}
    assert informational == {
        "Справочная информация (адреса, телефоны, режим работы)", "Нерезультативный звонок"
    }


def test_shipped_totk_codes_are_well_formed() -> None:
    topics = load_router().topics
    assert topics.topic("Оплата жилищно-коммунальных услуг ЖКХ").totk_code == \
        "0005.0005.0056.1149"
    for topic in topics.topics:
        assert topic.totk_code is None or TOTK_CODE.fullmatch(topic.totk_code)


def test_shipped_outcomes_and_results_follow_the_regulation() -> None:
    topics = load_router().topics
    assert topics.consultation_outcomes == (
        "консультация в рамках полномочий",
        "предоставлена справочная информация",
        "вопрос передан в отдел, организацию",
    )
    required = {r.name: r.comment_required for r in topics.results}
    assert required == {
        "ответ дан, гражданин удовлетворен": False,
        "даны разъяснения": False,
        "ответ невозможно дать сразу, необходимо перезвонить": True,
        "ответ дан, но гражданин не удовлетворён": True,
        "недозвон/телефон недоступен/занято": True,
        "иное": True,
    }
    callback = topics.result("ответ невозможно дать сразу, необходимо перезвонить")
    assert callback is not None and "дата и время" in callback.comment_hint


def test_shipped_table_uses_every_kind_of_target() -> None:
    router = load_router()
    systems = {
        router.route(t.name, "122", informational=False).system for t in router.topics.topics
    }
    assert systems == set(TargetSystem)


def test_shipped_table_routes_the_usual_calls() -> None:
    router = load_router()
    heat = router.route("Отопление", "122", False)
    assert heat.pos is not None and heat.pos.organization_id == 5001  # via ОГКУ 5011 [003]
    assert heat.pos.text_prefix == "Центр мониторинга 112"
    assert router.route("Уборка снега", "122", False).system is TargetSystem.POS
    assert router.route("Уборка снега", "doverie", False).system is TargetSystem.DELO
    other = router.route("Прочие вопросы", "122", False)
    assert other.pos is not None and other.pos.organization_id == 5000
    assert len(router.route("Безнадзорные животные", "122", False).email) == 2


def test_report_says_where_a_subordinate_is_replaced_by_its_parent() -> None:
    text = check_routing().text
    assert "the rule names 5011, a subordinate organization: addressed to its parent 5001" \
        in text
    assert "Прочие вопросы → fallback" in text
    assert "Fallback (no rule fits): ПОС, Правительство Примерной области (5000)" in text


@settings(max_examples=200, deadline=None)
@given(
    topic=st.sampled_from([*TOPICS_001, "Здравоохранение"]),
    hotline=st.sampled_from(["122", "doverie"]) | st.text(min_size=1, max_size=10),
    informational=st.booleans(),
)
def test_shipped_router_only_addresses_connected_allowed_organizations(
    topic: str, hotline: str, informational: bool
) -> None:
    router = _SHIPPED
    route = router.route(topic, hotline, informational)
    if informational:
        assert route.system is TargetSystem.NONE
    if route.pos is not None:
        org = router.table.pos.organization(route.pos.organization_id)
        assert org is not None and org.connected
        assert org.may_receive(route.pos.category_id)
        category = router.table.pos.category(route.pos.category_id)
        assert category is not None and category.has_subcategory(route.pos.subcategory_id)
        assert route.pos.text_prefix


_SHIPPED = load_router(hotlines=["122"], deadline_policies=POLICIES)


# --- refusals from files ------------------------------------------------------------------------


def test_rule_naming_an_unconnected_organization_is_refused_with_its_number(
    tmp_path: Path,
) -> None:
    routing, topics = write(tmp_path, """
        [[rules]]
        topic = "Уборка снега"
        system = "email"
        authorities = ["city"]

        [[rules]]
        topic = "Прочие вопросы"
        system = "none"

        [[rules]]
        topic = "Отопление"
        system = "pos"
        category = 101
        subcategory = 10101
        organization = 5002
    """)
    with pytest.raises(RoutingConfigError) as caught:
        load_router(routing, topics)
    assert 'routing.toml rule #3 (topic "Отопление"): organization 5002 is not connected to ПОС' \
        in str(caught.value)
    assert len(caught.value.problems) == 1


def test_rule_naming_a_subordinate_loads_and_addresses_the_parent(tmp_path: Path) -> None:
    routing, topics = write(tmp_path, """
        [[rules]]
        topic = "Отопление"
        system = "pos"
        category = 101
        subcategory = 10101
        organization = 5011
    """)
    route = load_router(routing, topics).route("Отопление", "122", False)
    assert route.pos is not None and route.pos.organization_id == 5001
    assert "addressed to its parent 5001 [003]" in check_routing(routing, topics).text


def test_file_in_the_old_spelling_organisation_still_loads(tmp_path: Path) -> None:
    head = ROUTING_HEAD.replace("organization", "organisation")
    routing, topics = write(tmp_path, """
        [[rules]]
        topic = "Отопление"
        system = "pos"
        category = 101
        subcategory = 10101
        organisation = 5011
    """, head=head)
    route = load_router(routing, topics).route("Отопление", "122", False)
    assert route.pos is not None and route.pos.organization_id == 5001
    assert check_routing(routing, topics).problems == ()


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        pytest.param(
            """
            [[rules]]
            topic = "Отопление"
            system = "pos"
            subcategory = 10101
            organization = 5001
            """,
            'routing.toml rule #1 (topic "Отопление"): category: Field required',
            id="missing-field",
        ),
        pytest.param(
            """
            [[rules]]
            topic = "Отопление"
            system = "pos"
            category = 101
            subcategory = 10101
            organizaton = 5001
            """,
            'routing.toml rule #1 (topic "Отопление"): organizaton: Extra inputs are not '
            "permitted",
            id="misspelt-key",
        ),
        pytest.param(
            """
            [[rules]]
            topic = "Отопление"
            system = "fax"
            """,
            'routing.toml rule #1 (topic "Отопление"): Input tag \'fax\' found using \'system\'',
            id="unknown-system",
        ),
        pytest.param(
            """
            [[rules]]
            topic = "Отопление"
            system = "email"
            authorities = []
            """,
            'routing.toml rule #1 (topic "Отопление"): authorities: List should have at least 1',
            id="email-without-authorities",
        ),
        pytest.param(
            """
            [[rules]]
            topic = "Погода"
            system = "none"
            """,
            'routing.toml rule #1 (topic "Погода"): topic "Погода" is not in the topic dictionary',
            id="unknown-topic",
        ),
        pytest.param(
            """
            [[rules]]
            topic = "Отопление"
            system = "none"

            [[rules]]
            topic = "Отопление"
            system = "email"
            authorities = ["city"]
            """,
            'routing.toml rule #2 (topic "Отопление"): duplicates rule #1',
            id="duplicate",
        ),
        pytest.param(
            """
            [[rules]]
            topic = "Уборка снега"
            system = "delo"
            executor = "0.2EZ47.2EZ49."
            controller = "0.2EZ47.2EZ48."
            """,
            'routing.toml rule #1 (topic "Уборка снега"): no rubric',
            id="delo-without-rubric",
        ),
        pytest.param(
            """
            [[rules]]
            topic = "Уборка снега"
            system = "health"
            """,
            "system health needs the [health] duty institution",
            id="health-not-configured",
        ),
    ],
)
def test_broken_rule_is_refused_naming_it(tmp_path: Path, rules: str, expected: str) -> None:
    routing, topics = write(tmp_path, rules)
    with pytest.raises(RoutingConfigError) as caught:
        load_router(routing, topics)
    assert expected in str(caught.value)
    report = check_routing(routing, topics)
    assert not report.ok
    assert any(expected in p for p in report.problems)


def test_delo_rule_without_rubric_takes_the_topics_totk_code(tmp_path: Path) -> None:
    routing, topics = write(tmp_path, """
        [[rules]]
        topic = "Отопление"
        system = "delo"
        executor = "0.2EZ47.2EZ49."
        controller = "0.2EZ47.2EZ48."
    """)
    route = load_router(routing, topics).route("Отопление", "122", False)
    assert route.delo is not None and route.delo.rubric_code == "0005.0005.0056.1156"


def test_invalid_fallback_is_refused(tmp_path: Path) -> None:
    head = ROUTING_HEAD.replace("organization = 5000", "organization = 5002")
    routing, topics = write(tmp_path, "", head=head)
    with pytest.raises(RoutingConfigError, match=re.escape(
        "routing.toml fallback: organization 5002 is not connected to ПОС"
    )):
        load_router(routing, topics)


def test_missing_fallback_is_refused(tmp_path: Path) -> None:
    head = ROUTING_HEAD.replace("[fallback]", "[fallback_]")
    routing, topics = write(tmp_path, "", head=head)
    report = check_routing(routing, topics)
    assert "routing.toml [fallback]: Field required" in report.problems


def test_hotline_without_marker_is_refused_when_there_is_no_default(tmp_path: Path) -> None:
    head = ROUTING_HEAD.replace(
        'default_text_prefix = "Центр мониторинга 112"', 'default_text_prefix = ""'
    )
    routing, topics = write(tmp_path, "", head=head)
    with pytest.raises(RoutingConfigError, match="hotline '122' has no text prefix"):
        load_router(routing, topics, hotlines=["122"])
    fixed = head.replace('[[pos.categories]]', '[pos.text_prefix]\n"122" = "ЦМ 112"\n\n'
                         '[[pos.categories]]', 1)
    routing, topics = write(tmp_path, "", head=fixed)
    route = load_router(routing, topics, hotlines=["122"]).route("Прочие вопросы", "122", False)
    assert route.pos is not None and route.pos.text_prefix == "ЦМ 112"


def test_rule_for_an_unconfigured_hotline_is_refused(tmp_path: Path) -> None:
    routing, topics = write(tmp_path, """
        [[rules]]
        topic = "Отопление"
        hotline = "123"
        system = "none"
    """)
    with pytest.raises(RoutingConfigError, match="hotline '123' is not configured"):
        load_router(routing, topics, hotlines=["122"])


def test_unknown_deadline_policy_is_refused(tmp_path: Path) -> None:
    routing, topics = write(tmp_path, """
        [[rules]]
        topic = "Уборка снега"
        system = "email"
        authorities = ["city"]
        deadline_policy = "slow"
    """)
    with pytest.raises(RoutingConfigError, match="deadline policy 'slow' is not defined"):
        load_router(routing, topics, deadline_policies=POLICIES)


def test_topics_file_problems_name_the_topic(tmp_path: Path) -> None:
    topics_text = TOPICS_TOML + '\n[[topics]]\nname = "Канализация"\ntotk = "0005-0005"\n'
    routing, topics = write(tmp_path, "", topics=topics_text)
    with pytest.raises(RoutingConfigError) as caught:
        load_router(routing, topics)
    assert 'topics.toml topic #4 ("Канализация"): ТОТК code \'0005-0005\'' in str(caught.value)


def test_topics_file_shape_problems_name_the_topic(tmp_path: Path) -> None:
    routing, topics = write(tmp_path, "", topics='[[topics]]\nname = "Отопление"\ninfo = 1\n')
    report = check_routing(routing, topics)
    assert 'topics.toml topic #1 (name "Отопление"): info: Extra inputs are not permitted' \
        in report.problems


# --- check_routing never raises ------------------------------------------------------------------


def test_check_lists_every_problem_at_once(tmp_path: Path) -> None:
    routing, topics = write(tmp_path, """
        [[rules]]
        topic = "Отопление"
        system = "pos"
        category = 101
        subcategory = 10101
        organization = 5002

        [[rules]]
        topic = "Погода"
        system = "email"
        authorities = ["nobody"]
    """)
    report = check_routing(routing, topics)
    assert not report.ok
    assert report.problems == (
        'routing.toml rule #1 (topic "Отопление"): organization 5002 is not connected to ПОС',
        'routing.toml rule #2 (topic "Погода"): topic "Погода" is not in the topic dictionary',
        "routing.toml rule #2 (topic \"Погода\"): authority 'nobody' is not in the [email] list",
    )
    assert "Problems (3): the daemon will refuse this table" in report.text
    assert "organization 5002 (unusable)" in report.text


def test_check_reports_a_file_that_is_not_toml(tmp_path: Path) -> None:
    routing, topics = write(tmp_path, "[[rules]\n")
    report = check_routing(routing, topics)
    assert not report.ok
    assert report.problems[0].startswith("routing.toml: not valid TOML")


def test_check_reports_a_missing_file(tmp_path: Path) -> None:
    report = check_routing(tmp_path / "nowhere.toml", DEFAULT_TOPICS_FILE)
    assert not report.ok
    assert "nowhere.toml: cannot be read" in report.problems[0]
    with pytest.raises(RoutingConfigError, match="cannot be read"):
        load_router(tmp_path / "nowhere.toml")


def test_unknown_topic_at_intake_is_a_domain_error() -> None:
    with pytest.raises(UnknownTopic) as caught:
        _SHIPPED.route("Погода", "122", False)
    assert caught.value.field == "topic"
