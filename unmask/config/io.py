"""Reading config values: flattening, typed coercion of overrides, literal-only config files."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from typing import Any

from unmask.errors import UserError


class ConfigError(UserError):
    """A user mistake in a config file, preset name or override."""


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'model': {'n_layer': 4}} -> {'model.n_layer': 4}."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def valid_keys(config: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            keys += valid_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def coerce(key: str, value: Any, current: Any) -> Any:
    """Turn an override (often a string from the command line) into the field's type."""
    kind = type(current)
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{key} expects true/false, got {value!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ConfigError(f"{key} expects a {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, kind):
        raise ConfigError(f"{key} expects a {kind.__name__}, got {value!r}")
    return value


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a JSON config or a Python file of literal `key = value` lines (never executed)."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            return flatten(json.loads(text))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: invalid JSON ({err})") from None
    values: dict[str, Any] = {}
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as err:
        raise ConfigError(f"{path}:{err.lineno}: syntax error in config file") from None
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # docstring
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            raise ConfigError(
                f"{path}:{node.lineno}: config files may only contain `name = literal` lines"
            )
        try:
            values[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            raise ConfigError(f"{path}:{node.lineno}: value must be a literal") from None
    return flatten(values)
