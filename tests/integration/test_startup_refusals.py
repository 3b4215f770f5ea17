"""Issue 12: `gateway run` with a database it cannot use says so in one line naming the
setting and the error class, without the password, and exits non-zero."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_cli_run import free_port, gateway_env, run_gateway

PASSWORD = "pg-s3cret-pw"


def assert_one_line_refusal(stderr: str, error_class: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert "GATEWAY_DATABASE_URL" in lines[0]
    assert error_class in lines[0]
    assert PASSWORD not in stderr


def test_an_unreachable_postgres_server_is_one_line_without_the_password(
    tmp_path: Path,
) -> None:
    url = f"postgresql+asyncpg://gw:{PASSWORD}@127.0.0.1:{free_port()}/gw"

    result = run_gateway(tmp_path, gateway_env(GATEWAY_DATABASE_URL=url), "run")

    assert result.returncode != 0
    assert_one_line_refusal(result.stderr, "ConnectionRefusedError")
    assert PASSWORD not in result.stdout


def test_a_sqlite_file_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'no-such-dir' / 'gateway.db'}"

    result = run_gateway(tmp_path, gateway_env(GATEWAY_DATABASE_URL=url), "run")

    assert result.returncode != 0
    assert_one_line_refusal(result.stderr, "OperationalError")


def test_one_token_for_two_roles_stops_gateway_run(tmp_path: Path) -> None:
    env = gateway_env(GATEWAY_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
                      GATEWAY_API_TOKENS="operator:same-t0ken,admin:same-t0ken")

    result = run_gateway(tmp_path, env, "run")

    assert result.returncode != 0
    assert "GATEWAY_API_TOKENS" in result.stderr
    assert "same-t0ken" not in result.stderr + result.stdout
    assert not (tmp_path / "gateway.db").exists()  # refused before anything started
