"""Reading one of our TOML files into a pydantic model, with errors that name file and entry."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


def describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_input=False):
        where = ".".join(str(part) for part in error["loc"]) or "file"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def load_model(
    model: type[Model], path: Path | None, default_file: str, error: type[Exception]
) -> Model:
    """`path`, or the packaged `config/<default_file>` when None; `error` carries any problem."""
    if path is None:
        name = f"config/{default_file}"
        reader = resources.files("config").joinpath(default_file).read_text
    else:
        name = str(path)
        reader = path.read_text
    try:
        text = reader(encoding="utf-8")
    except OSError as exc:
        raise error(f"{name}: cannot read: {exc}") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{name}: not valid TOML: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(f"{name}: {describe(exc)}") from exc
