"""Dot-path overrides with list indices over a config tree (`to_dict()` form), and override
files: `curriculum.stages[0].epochs=100` from the command line, a JSON file, a Python file of
literal assignments (read with `ast`, never executed) or a file of `key = value` lines."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

from unmask.config.io import ConfigError

_PART = re.compile(r"([A-Za-z_]\w*)|\[(\d+)\]")


def parse_path(key: str) -> list[str | int]:
    """'curriculum.stages[0].epochs' -> ['curriculum', 'stages', 0, 'epochs']."""
    parts = []
    for piece in key.split("."):
        matches = list(_PART.finditer(piece))
        if not piece or "".join(m.group() for m in matches) != piece or matches[0].group(2):
            raise ConfigError(f"malformed config key {key!r} (expected e.g. "
                              "curriculum.stages[0].epochs)")
        parts += [m.group(1) if m.group(1) else int(m.group(2)) for m in matches]
    return parts


def tree_keys(tree: Any, prefix: str = "") -> list[str]:
    """Every overridable leaf path of a config tree (`to_dict()` form)."""
    if isinstance(tree, dict):
        return [k for name, v in tree.items()
                for k in tree_keys(v, f"{prefix}.{name}" if prefix else name)]
    if isinstance(tree, list):
        return [k for i, v in enumerate(tree) for k in tree_keys(v, f"{prefix}[{i}]")]
    return [prefix]


def parse_override_args(items: list[str]) -> dict[str, str]:
    """`["training.batch_size=4", "curriculum.stages[0].epochs=3"]` -> {key: text}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value (e.g. "
                              "\"curriculum.stages[0].epochs=100\")")
        out[key.strip()] = value.strip()
    return out


def _flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists of dicts -> dot/index paths; lists of scalars stay values."""
    if isinstance(values, dict):
        out = {}
        for name, v in values.items():
            out.update(_flatten(v, f"{prefix}.{name}" if prefix else str(name)))
        return out
    if isinstance(values, list) and values and all(isinstance(v, dict) for v in values):
        out = {}
        for i, v in enumerate(values):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: values}


def read_override_file(path: str | Path) -> dict[str, Any]:
    """Overrides from a file: JSON (nested or dotted keys), a Python file of literal
    `name = value` lines (never executed; nested dicts), or `key = value` lines (any other
    suffix; `#` starts a comment)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"override file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            return _flatten(json.loads(text))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: invalid JSON ({err})") from None
    if path.suffix == ".py":
        try:
            tree = ast.parse(text, filename=str(path))
        except SyntaxError as err:
            raise ConfigError(f"{path}:{err.lineno}: syntax error") from None
        values = {}
        for node in tree.body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)):
                raise ConfigError(f"{path}:{node.lineno}: only `name = literal` lines allowed")
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                raise ConfigError(f"{path}:{node.lineno}: value must be a literal") from None
        return _flatten(values)
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return parse_override_args([line for line in lines if line])
