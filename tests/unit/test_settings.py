"""Settings: a TOML file, overridden by GATEWAY_* variables; secrets never from the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config.settings import (
    Settings,
    SettingsError,
    load_settings,
    parse_api_tokens,
)
from gateway.tokens import hash_token


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No GATEWAY_* variable of the developer's shell, and no ./gateway.toml, leaks in."""
    for name in list(os.environ):
        if name.upper().startswith("GATEWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write_config(tmp_path: Path, text: str, name: str = "settings.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_without_a_file_or_environment_the_defaults_apply() -> None:
    settings = load_settings()

    assert settings.database_url == "sqlite+aiosqlite:///./gateway.db"
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 8080)
    assert settings.api_tokens is None
    assert settings.http.max_body_bytes == 64 * 1024


def test_polling_settings_default_to_a_minute_of_overlap_and_delo_from_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings()
    assert settings.pos.overlap_s == settings.delo.overlap_s == 60.0
    assert settings.delo.initial_since is None and settings.delo.docgroup_due is None

    monkeypatch.setenv("GATEWAY_DELO__INITIAL_SINCE", "2026-11-01T00:00:00+03:00")
    monkeypatch.setenv("GATEWAY_DELO__DOCGROUP_DUE", "0.1CP.")
    monkeypatch.setenv("GATEWAY_DELO__OVERLAP_S", "120")
    delo = load_settings().delo
    assert delo.initial_since is not None and delo.initial_since.isoformat() == (
        "2026-11-01T00:00:00+03:00")
    assert (delo.docgroup_due, delo.overlap_s) == ("0.1CP.", 120.0)


def test_settings_are_read_from_the_toml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, """
database_url = "sqlite+aiosqlite:///./from-file.db"
log_level = "debug"

[http]
host = "0.0.0.0"
port = 9000

[pos]
base_url = "https://pos.example.ru"
""")
    monkeypatch.setenv("GATEWAY_POS__TOKEN", "pos-secret")

    settings = load_settings(path)

    assert settings.database_url == "sqlite+aiosqlite:///./from-file.db"
    assert settings.log_level == "debug"
    assert (settings.http.host, settings.http.port) == ("0.0.0.0", 9000)
    assert settings.pos.base_url == "https://pos.example.ru"


def test_gateway_toml_in_the_working_directory_is_the_default_file(tmp_path: Path) -> None:
    write_config(tmp_path, "[http]\nport = 9001\n", name="gateway.toml")

    assert load_settings().http.port == 9001


def test_environment_variables_override_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, """
database_url = "sqlite+aiosqlite:///./from-file.db"
[http]
host = "0.0.0.0"
port = 9000
""")
    monkeypatch.setenv("GATEWAY_DATABASE_URL", "postgresql+asyncpg://gw@db/gateway")
    monkeypatch.setenv("GATEWAY_HTTP__PORT", "9100")

    settings = load_settings(path)

    assert settings.database_url == "postgresql+asyncpg://gw@db/gateway"
    assert settings.http.port == 9100
    assert settings.http.host == "0.0.0.0"  # the rest of the [http] table still comes from the file


def test_nested_settings_come_from_the_environment_with_double_underscores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_POS__BASE_URL", "https://pos.example.ru")
    monkeypatch.setenv("GATEWAY_POS__TOKEN", "pos-secret")
    monkeypatch.setenv("GATEWAY_POS__POLL_INTERVAL_S", "5")
    monkeypatch.setenv("GATEWAY_SMTP__PORT", "2525")
    monkeypatch.setenv("GATEWAY_DELO__PASSWORD", "s3cret")

    settings = load_settings()

    assert settings.pos.base_url == "https://pos.example.ru"
    assert settings.pos.token is not None
    assert settings.pos.token.get_secret_value() == "pos-secret"
    assert settings.pos.poll_interval_s == 5.0
    assert settings.smtp.port == 2525
    assert settings.delo.password is not None
    assert settings.delo.password.get_secret_value() == "s3cret"


@pytest.mark.parametrize(
    ("toml", "secret"),
    [
        ('api_tokens = "admin:abc"\n', "api_tokens"),
        ('[pos]\ntoken = "abc"\n', "pos.token"),
        ('[delo]\npassword = "abc"\n', "delo.password"),
        ('[smtp]\npassword = "abc"\n', "smtp.password"),
    ],
)
def test_secrets_in_the_toml_file_are_refused_by_name(
    tmp_path: Path, toml: str, secret: str
) -> None:
    path = write_config(tmp_path, toml)

    with pytest.raises(SettingsError) as refused:
        load_settings(path)

    assert secret in str(refused.value)
    assert "abc" not in str(refused.value)


def test_every_secret_in_the_file_is_named_at_once(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'api_tokens = "admin:abc"\n[smtp]\npassword = "x"\n')

    with pytest.raises(SettingsError) as refused:
        load_settings(path)

    assert "api_tokens" in str(refused.value)
    assert "smtp.password" in str(refused.value)


def test_a_bad_setting_from_the_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_HTTP__PORT", "abc")

    with pytest.raises(SettingsError) as refused:
        load_settings()

    assert "GATEWAY_HTTP__PORT" in str(refused.value)
    assert "http.port" in str(refused.value)


def test_a_bad_setting_in_the_file_names_the_file_and_the_setting(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[http]\nport = 70000\n")

    with pytest.raises(SettingsError) as refused:
        load_settings(path)

    message = str(refused.value)
    assert "http.port" in message
    assert str(path) in message


@pytest.mark.parametrize(
    ("variable", "value", "setting"),
    [
        ("GATEWAY_DATABASE_URL", "mysql://db/gateway", "database_url"),
        ("GATEWAY_TIMEZONE", "Europe/Nowhere", "timezone"),
        ("GATEWAY_LOG_LEVEL", "loud", "log_level"),
        ("GATEWAY_POS__POLL_INTERVAL_S", "-1", "pos.poll_interval_s"),
        ("GATEWAY_POS__OVERLAP_S", "-5", "pos.overlap_s"),
        ("GATEWAY_DELO__INITIAL_SINCE", "last week", "delo.initial_since"),
    ],
)
def test_other_bad_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, setting: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as refused:
        load_settings()

    assert setting in str(refused.value)
    assert variable in str(refused.value)


@pytest.mark.parametrize(
    ("variables", "missing"),
    [
        ({"GATEWAY_POS__BASE_URL": "https://pos.example.ru"}, "GATEWAY_POS__TOKEN"),
        ({"GATEWAY_DELO__BASE_URL": "https://delo.example.ru",
          "GATEWAY_DELO__USERNAME": "gw"}, "GATEWAY_DELO__PASSWORD"),
    ],
)
def test_a_half_configured_adapter_is_refused_naming_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], missing: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError) as refused:
        load_settings()

    message = str(refused.value)
    assert missing in message
    assert "GATEWAY_)" not in message  # no empty setting name for a rule across settings


def test_an_unknown_setting_in_the_file_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, "databse_url = \"sqlite+aiosqlite:///x.db\"\n")

    with pytest.raises(SettingsError) as refused:
        load_settings(path)

    assert "databse_url" in str(refused.value)


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(tmp_path / "absent.toml")

    assert "absent.toml" in str(refused.value)


def test_a_config_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[http\nport = \n")

    with pytest.raises(SettingsError) as refused:
        load_settings(path)

    assert "not valid TOML" in str(refused.value)


# --- API tokens ------------------------------------------------------------------------


def test_api_tokens_map_hashes_to_roles() -> None:
    hashed = parse_api_tokens("operator:op-token, delivery:dl-token,admin:ad-token")

    assert hashed == {
        hash_token("op-token"): "operator",
        hash_token("dl-token"): "delivery",
        hash_token("ad-token"): "admin",
    }
    assert "op-token" not in hashed  # only hashes are kept


def test_several_tokens_may_share_a_role_and_empty_entries_are_ignored() -> None:
    hashed = parse_api_tokens("operator:a,,operator:b,")

    assert sorted(hashed.values()) == ["operator", "operator"]


def test_a_token_may_contain_colons() -> None:
    assert parse_api_tokens("admin:a:b:c") == {hash_token("a:b:c"): "admin"}


def test_an_unknown_role_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_API_TOKENS", "operator:op,boss:secret-token")

    with pytest.raises(SettingsError) as refused:
        load_settings()

    message = str(refused.value)
    assert "GATEWAY_API_TOKENS" in message
    assert "boss" in message
    assert "secret-token" not in message


@pytest.mark.parametrize("raw", ["operator", "operator:", "operator:   ", ":token"])
def test_a_malformed_token_entry_is_refused(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("GATEWAY_API_TOKENS", raw)

    with pytest.raises(SettingsError) as refused:
        load_settings()

    assert "api_tokens" in str(refused.value)


def test_a_token_is_not_shown_when_settings_are_printed() -> None:
    settings = Settings(api_tokens="admin:xyzzy-plugh")

    assert settings.api_tokens is not None
    assert "xyzzy-plugh" not in repr(settings)
    assert "xyzzy-plugh" not in str(settings.model_dump())


# --- the secrets directory -------------------------------------------------------------


def test_secrets_are_read_from_the_secrets_directory(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "gateway_api_tokens").write_text("admin:from-file\n", encoding="utf-8")

    settings = load_settings(secrets_dir=secrets)

    assert settings.api_tokens is not None
    assert parse_api_tokens(settings.api_tokens.get_secret_value()) == {
        hash_token("from-file"): "admin"}


def test_the_secrets_directory_may_be_given_by_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "gateway_api_tokens").write_text("operator:op", encoding="utf-8")
    monkeypatch.setenv("GATEWAY_SECRETS_DIR", str(secrets))

    settings = load_settings()

    assert settings.api_tokens is not None
    assert settings.api_tokens.get_secret_value() == "operator:op"


def test_the_environment_wins_over_the_secrets_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "gateway_api_tokens").write_text("operator:op", encoding="utf-8")
    monkeypatch.setenv("GATEWAY_API_TOKENS", "admin:ad")

    settings = load_settings(secrets_dir=secrets)

    assert settings.api_tokens is not None
    assert settings.api_tokens.get_secret_value() == "admin:ad"


def test_a_bad_token_in_the_secrets_directory_is_refused(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "gateway_api_tokens").write_text("root:x", encoding="utf-8")

    with pytest.raises(SettingsError) as refused:
        load_settings(secrets_dir=secrets)

    assert "api_tokens" in str(refused.value)


# --- hotlines and their time zones ----------------------------------------------------


def test_a_hotline_is_read_in_its_own_time_zone(tmp_path: Path) -> None:
    path = write_config(tmp_path, """
[[hotlines]]
code = "122"
timezone = "Europe/Ulyanovsk"
""")

    settings = load_settings(path)

    assert str(settings.zone_of("122")) == "Europe/Ulyanovsk"
    assert str(settings.zone_of("unknown")) == "Europe/Moscow"


# --- issue 12: secrets in the database URL, shared tokens, operating limits ------------


def test_a_database_url_with_a_password_in_the_file_is_refused(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, 'database_url = "postgresql+asyncpg://gw:pg-s3cret@db.example/gw"\n')

    with pytest.raises(SettingsError) as refused:
        load_settings(path)

    message = str(refused.value)
    assert "database_url" in message
    assert "GATEWAY_DATABASE_URL" in message
    assert "secrets directory" in message
    assert "pg-s3cret" not in message


def test_a_database_url_without_a_password_may_stay_in_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'database_url = "postgresql+asyncpg://gw@db.example/gw"\n')

    assert load_settings(path).database_url == "postgresql+asyncpg://gw@db.example/gw"


def test_a_database_url_with_a_password_comes_from_the_secrets_directory(
    tmp_path: Path,
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "gateway_database_url").write_text(
        "postgresql+asyncpg://gw:pw@db.example/gw", encoding="utf-8")

    settings = load_settings(secrets_dir=secrets)

    assert settings.database_url == "postgresql+asyncpg://gw:pw@db.example/gw"


def test_one_token_for_two_roles_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_API_TOKENS", "operator:shared-t0ken,admin:shared-t0ken")

    with pytest.raises(SettingsError) as refused:
        load_settings()

    message = str(refused.value)
    assert "GATEWAY_API_TOKENS" in message
    assert "two roles" in message
    assert "shared-t0ken" not in message


def test_the_same_token_twice_for_one_role_is_harmless() -> None:
    assert parse_api_tokens("operator:t,operator:t") == {hash_token("t"): "operator"}


def test_operating_limits_have_defaults_and_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = load_settings()
    monkeypatch.setenv("GATEWAY_DATABASE__LOCK_TIMEOUT_S", "1.5")
    monkeypatch.setenv("GATEWAY_HTTP__HEADER_TIMEOUT_S", "3")
    monkeypatch.setenv("GATEWAY_METRICS__PORT", "9464")
    monkeypatch.setenv("GATEWAY_DATABASE_URL", "sqlite+aiosqlite:///./other.db")

    settings = load_settings()

    assert (defaults.database.statement_timeout_s, defaults.database.lock_timeout_s) == (30, 5)
    assert defaults.http.header_timeout_s == 10
    assert defaults.metrics.port is None and defaults.metrics.cache_s == 5
    assert settings.database.lock_timeout_s == 1.5
    assert settings.database_url == "sqlite+aiosqlite:///./other.db"
    assert settings.http.header_timeout_s == 3
    assert settings.metrics.port == 9464
