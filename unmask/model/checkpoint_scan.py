"""Telling a complete checkpoint dir from what a crash or a damaged disk leaves, without reading
its tensors: every file present and parsing, safetensors headers that match the file sizes,
every tensor that state.json refers to present. Also the tensor/JSON split of nested state
dicts that checkpoints store instead of pickles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch


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


SNAPSHOT_PREFIX = "step_"


def snapshots(run_dir: Path) -> list[Path]:
    """The `step_*` snapshots of a run, oldest first."""
    return sorted(p for p in Path(run_dir).glob(f"{SNAPSHOT_PREFIX}*") if p.is_dir())


class Incomplete(Exception):
    """Why a checkpoint dir cannot be used: one line that names the file at fault."""


def safetensors_header(file: Path) -> dict:
    """A safetensors header, checked against the file size: catches truncated and zeroed files
    without reading the tensors."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n < 2 or 8 + n > size:
                raise Incomplete(f"{file.name} is truncated or corrupt (no valid header)")
            header = json.loads(f.read(n))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
                  default=0)
    except FileNotFoundError:
        raise Incomplete(f"{file.name} is missing") from None
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise Incomplete(f"{file.name} is truncated or corrupt ({err})") from None
    if 8 + n + end != size:
        raise Incomplete(f"{file.name} is truncated or corrupt ({size} bytes; its header "
                          f"describes {8 + n + end})")
    return header


def parse_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Incomplete(f"{file.name} is missing") from None
    except (OSError, ValueError) as err:
        raise Incomplete(f"{file.name} is truncated or corrupt ({err})") from None


def tensor_refs(obj: Any) -> set[str]:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return {obj["__tensor__"]}
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else ()
    return set().union(*map(tensor_refs, values))


def train_step_of(skeleton: Any) -> int:
    """counters.step of a training state as the Trainer writes it; -1 when it has none."""
    state = join_tensors(skeleton, _NoTensors())
    try:
        return int(state["counters"]["step"])
    except (KeyError, TypeError, ValueError):
        return -1


class _NoTensors(dict):
    def __missing__(self, key):
        return None


def inspect_dir(ckpt_dir: Path, need_state: bool) -> int:
    """The training step of a complete checkpoint dir (-1 without one); else Incomplete."""
    if not (ckpt_dir / "config.json").is_file():
        raise Incomplete("config.json is missing (an interrupted save)")
    safetensors_header(ckpt_dir / "model.safetensors")
    for name in ("config.json", "tokenizer.json", "meta.json"):
        parse_json(ckpt_dir / name)
    if not (need_state or (ckpt_dir / "state.json").exists()
            or (ckpt_dir / "state.safetensors").exists()):
        return -1
    skeleton = parse_json(ckpt_dir / "state.json")
    missing = tensor_refs(skeleton) - set(safetensors_header(ckpt_dir / "state.safetensors"))
    if missing:
        raise Incomplete(f"state.json refers to {len(missing)} tensors that state.safetensors "
                          "lacks")
    return train_step_of(skeleton)


def candidates(run_dir: Path, name: str) -> list[Path]:
    """NAME and what an interrupted save of it can leave: `NAME.old` and temp dirs; for
    `latest` also the snapshots (`train.keep_last_k`)."""
    found = [run_dir / name, run_dir / f"{name}.old", *sorted(run_dir.glob(f".{name}.tmp-*"))]
    if name == "latest":
        found += snapshots(run_dir)
    return [p for p in found if p.is_dir()]


def newest_complete(families: list[list[Path]], need_state: bool
                     ) -> tuple[Path | None, list[str]]:
    """The complete dir with the highest training step (ties: earlier family, then the later
    write), and one message per dir skipped."""
    chosen, best_key, skipped = None, None, []
    for rank, family in enumerate(families):
        for ckpt_dir in family:
            try:
                step = inspect_dir(ckpt_dir, need_state)
                key = (step, -rank, (ckpt_dir / "config.json").stat().st_mtime_ns)
            except Incomplete as why:
                skipped.append(f"skipping checkpoint {ckpt_dir}: {why}")
                continue
            except FileNotFoundError:  # removed while we looked
                continue
            if best_key is None or key > best_key:
                chosen, best_key = ckpt_dir, key
    if chosen is not None and (chosen.name.startswith(".") or chosen.name.endswith(".old")):
        skipped.append(f"using {chosen}, a complete checkpoint left by an interrupted save")
    elif chosen is not None and chosen.name.startswith(SNAPSHOT_PREFIX) and skipped:
        skipped.append(f"using {chosen}, the newest complete snapshot")
    return chosen, skipped
