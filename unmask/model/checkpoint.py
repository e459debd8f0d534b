"""Checkpoints: a directory with model.safetensors, config.json, tokenizer.json, meta.json and
the training state (optimizer, step, RNG, loader) as state.safetensors + state.json.

Nothing is pickled: nested state dicts are split into a tensor table (safetensors) and a JSON
skeleton that refers to it. A checkpoint is written into a temporary directory and renamed into
place, so a crash never leaves a half-written `latest` or `best`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from unmask.errors import UserError

FORMAT_VERSION = 1

FILES = ("model.safetensors", "config.json", "tokenizer.json", "meta.json")


class CheckpointError(UserError):
    """The checkpoint is missing, truncated or from an unknown format."""


def split_tensors(obj: Any, table: dict[str, torch.Tensor], prefix: str = "t") -> Any:
    """Replace every tensor in a nested structure by {"__tensor__": key}; fill `table`."""
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}{len(table)}"
        table[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[k, split_tensors(v, table, prefix)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [split_tensors(v, table, prefix) for v in obj]
    return obj


def join_tensors(obj: Any, table: dict[str, torch.Tensor]) -> Any:
    """Inverse of split_tensors (dict keys keep their type: optimizer state uses int keys)."""
    if isinstance(obj, dict) and "__tensor__" in obj:
        return table[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: join_tensors(v, table) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [join_tensors(v, table) for v in obj]
    return obj


def _model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict without the tied duplicate (safetensors refuses shared storage)."""
    state = model.state_dict()
    state.pop("head.weight", None)
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_checkpoint(path: Path, model: torch.nn.Module, config: dict, tokenizer_json: dict,
                    meta: dict, train_state: dict | None = None) -> Path:
    """Write a checkpoint directory atomically (temp dir in the same parent, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        save_file(_model_tensors(model), str(tmp / "model.safetensors"),
                  metadata={"format_version": str(FORMAT_VERSION)})
        (tmp / "config.json").write_text(json.dumps({"format_version": FORMAT_VERSION, **config},
                                                    indent=1))
        (tmp / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False))
        (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False))
        if train_state is not None:
            table: dict[str, torch.Tensor] = {}
            skeleton = split_tensors(train_state, table)
            save_file(table, str(tmp / "state.safetensors"))
            (tmp / "state.json").write_text(json.dumps(skeleton))
        old = path.with_name(path.name + ".old")
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir as is; a run dir -> its `best`, else `latest` (or a surviving .old)."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    for name in ("best", "latest", "best.old", "latest.old"):
        if (path / name / "model.safetensors").is_file():
            return path / name
    if not path.exists():
        raise CheckpointError(f"no such checkpoint or run directory: {path}")
    raise CheckpointError(f"{path} holds no checkpoint (no model.safetensors, best/ or latest/); "
                          "train first with `unmask train`")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file missing: {path}") from None
    except json.JSONDecodeError:
        raise CheckpointError(f"{path} is truncated or corrupt; use another checkpoint") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is truncated or corrupt ({err}); use another checkpoint"
                              ) from None


def upgrade(config: dict) -> dict:
    """The single place where older checkpoint formats are brought up to date."""
    version = config.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint format {version} is newer than this unmask "
                              f"({FORMAT_VERSION}); upgrade unmask")
    return config


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint dir into {config, tokenizer, meta, weights, train_state (or None)}."""
    path = find_checkpoint(path)
    config = upgrade(_read_json(path / "config.json"))
    weights = _read_tensors(path / "model.safetensors")
    state = None
    if (path / "state.json").is_file():
        state = join_tensors(_read_json(path / "state.json"),
                             _read_tensors(path / "state.safetensors"))
    return {"path": path, "config": config, "tokenizer": _read_json(path / "tokenizer.json"),
            "meta": _read_json(path / "meta.json"), "weights": weights, "train_state": state}


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if k != "head.weight"]
    if missing or unexpected:
        raise CheckpointError(f"checkpoint does not fit the model (missing {missing}, "
                              f"unexpected {unexpected})")
