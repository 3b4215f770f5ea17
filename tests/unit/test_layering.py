"""The layering the design promises, read from the code's own imports.

The domain knows nothing of storage, the API, the adapters or the outbox; services speak
to storage only through the unit of work and never touch SQLAlchemy; only the wiring
(bootstrap, the CLI, the demo) knows the concrete adapters and the configuration files.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Wiring may know everything; nothing else in the core may name adapters or config.
WIRING = {"gateway/bootstrap.py", "gateway/cli.py", "gateway/demo.py"}


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at top level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def offending(paths: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in paths:
        bad = sorted(name for name in imports_of(path)
                     if any(name == f or name.startswith(f + ".") for f in forbidden))
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def test_the_domain_imports_no_layer_above_it_and_no_framework() -> None:
    forbidden = ("gateway.services", "gateway.storage", "gateway.api", "gateway.bootstrap",
                 "adapters", "outbox", "config", "sqlalchemy", "aiohttp", "httpx", "pydantic",
                 "structlog", "alembic")
    assert offending(modules("gateway/domain"), forbidden) == {}


def test_services_use_no_sqlalchemy_no_storage_and_no_api() -> None:
    forbidden = ("sqlalchemy", "gateway.storage", "gateway.api", "adapters", "config", "aiohttp")
    assert offending(modules("gateway/services"), forbidden) == {}


def test_only_the_wiring_imports_adapters_and_config() -> None:
    core = [p for p in modules("gateway") if str(p.relative_to(ROOT)) not in WIRING]
    assert offending(core, ("adapters", "config")) == {}


@pytest.mark.parametrize("package", ["outbox", "adapters"])
def test_outbox_and_adapters_do_not_reach_into_services_storage_or_api(package: str) -> None:
    forbidden = ("gateway.services", "gateway.storage", "gateway.api", "gateway.bootstrap")
    assert offending(modules(package), forbidden) == {}


def test_the_layering_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f() -> None:\n    from sqlalchemy import text\n", encoding="utf-8")
    assert imports_of(sample) == {"sqlalchemy"}
