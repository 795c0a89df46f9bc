"""Load a DeploymentSpec from a YAML/JSON file and command-line overrides, with readable errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cli.errors import UserError
from models.spec import DeploymentSpec


def load_spec(path: str | None = None, overrides: dict[str, Any] | None = None) -> DeploymentSpec:
    """File values first, then overrides (dotted paths such as `instances.count`)."""
    values = read_spec_file(path) if path else {}
    for dotted, value in (overrides or {}).items():
        set_dotted(values, dotted, value)
    try:
        return DeploymentSpec.model_validate(values)
    except ValidationError as err:
        source = f"spec {path}" if path else "spec"
        raise UserError(f"invalid {source}:\n{format_validation_error(err)}") from None


def read_spec_file(path: str) -> dict[str, Any]:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"spec file {path} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read spec file {path}: {err}") from None
    try:
        data = yaml.safe_load(text)  # YAML is a superset of JSON: one parser for both
    except yaml.YAMLError as err:
        raise UserError(f"spec file {path} is not valid YAML or JSON: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(
            f"spec file {path} must hold a mapping of settings (e.g. 'deployment_id: web'), "
            f"not a {type(data).__name__}"
        )
    return data


def parse_assignment(text: str) -> tuple[str, Any]:
    """`instances.count=4` -> ("instances.count", 4); the value is read as a YAML scalar."""
    if "=" not in text:
        raise UserError(f"--set expects PATH=VALUE (e.g. instances.count=4), got {text!r}")
    path, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return path.strip(), value


def set_dotted(values: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = values
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"cannot set {dotted}: {part} is not a group of settings")
        node = child
    node[leaf] = value


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for error in err.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"]) or "spec"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting; check its spelling against the spec reference in README.md"
        lines.append(f"- {location}: {message}")
    return "\n".join(lines)
