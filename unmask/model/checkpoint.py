"""Checkpoints: a directory with model.safetensors, config.json, tokenizer.json, meta.json and
the training state (optimizer, step, RNG, loader) as state.safetensors + state.json.

Nothing is pickled: nested state dicts are split into a tensor table (safetensors) and a JSON
skeleton that refers to it.

A crash at any moment leaves a complete checkpoint that can be found, because a save never
deletes a complete checkpoint before its replacement is in place (`save_checkpoint`):

1. every file goes into a fresh temp dir `.NAME.tmp-*` beside NAME and is fsynced; config.json
   is written last, so a temp dir that holds it holds everything; then the temp dir is fsynced;
2. NAME is renamed to `NAME.old` (a `NAME.old` left by an earlier save is removed first: the
   NAME beside it is newer), the temp dir is renamed to NAME, and the parent dir is fsynced;
3. `NAME.old` and temp dirs left by interrupted saves are removed.

A crash leaves NAME, or `NAME.old` and/or a complete temp dir. `resumable_checkpoint` and
`find_checkpoint` consider all of them, keep those that are complete (every file present and
parsing; a safetensors header that matches the file size) and take the highest training step.
One process writes a given NAME at a time (the trainer saves on rank 0 only).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
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


def _fsync(path: Path) -> None:
    """Flush a file, or a directory's entries (names created or renamed in it), to disk."""
    if os.name != "posix" and path.is_dir():
        return  # directories cannot be opened for fsync on Windows
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, obj: Any, **dumps_args) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, **dumps_args))
        f.flush()
        os.fsync(f.fileno())


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor],
                   metadata: dict[str, str] | None = None) -> None:
    save_file(tensors, str(path), metadata=metadata)
    _fsync(path)


def save_checkpoint(path: Path, model: torch.nn.Module, config: dict, tokenizer_json: dict,
                    meta: dict, train_state: dict | None = None) -> Path:
    """Write checkpoint dir `path` so that a crash at any moment leaves a complete checkpoint
    (the sequence is in the module docstring). A save that fails with an error puts the
    previous checkpoint back and leaves no temp dir."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.with_name(path.name + ".old")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    moved_aside = False
    try:
        _write_tensors(tmp / "model.safetensors", _model_tensors(model),
                       {"format_version": str(FORMAT_VERSION)})
        _write_json(tmp / "tokenizer.json", tokenizer_json, ensure_ascii=False)
        _write_json(tmp / "meta.json", meta, ensure_ascii=False)
        if train_state is not None:
            table: dict[str, torch.Tensor] = {}
            skeleton = split_tensors(train_state, table)
            _write_tensors(tmp / "state.safetensors", table)
            _write_json(tmp / "state.json", skeleton)
        # Written last: a temp dir holding config.json holds every other file, fsynced.
        _write_json(tmp / "config.json", {"format_version": FORMAT_VERSION, **config}, indent=1)
        _fsync(tmp)
        if path.exists():
            if old.exists():
                shutil.rmtree(old)  # left by an interrupted save; `path` is newer and stays
            os.replace(path, old)
            moved_aside = True
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        if moved_aside and not path.exists():
            os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    for leftover in path.parent.glob(f".{path.name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    return path


# ------------------------------------------------------------------ finding a complete checkpoint


class _Incomplete(Exception):
    """Why a checkpoint dir cannot be used: one line that names the file at fault."""


def _header(file: Path) -> dict:
    """A safetensors header, checked against the file size: catches truncated and zeroed files
    without reading the tensors."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or n < 2 or 8 + n > size:
                raise _Incomplete(f"{file.name} is truncated or corrupt (no valid header)")
            header = json.loads(f.read(n))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
                  default=0)
    except FileNotFoundError:
        raise _Incomplete(f"{file.name} is missing") from None
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise _Incomplete(f"{file.name} is truncated or corrupt ({err})") from None
    if 8 + n + end != size:
        raise _Incomplete(f"{file.name} is truncated or corrupt ({size} bytes; its header "
                          f"describes {8 + n + end})")
    return header


def _json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _Incomplete(f"{file.name} is missing") from None
    except (OSError, ValueError) as err:
        raise _Incomplete(f"{file.name} is truncated or corrupt ({err})") from None


def _tensor_refs(obj: Any) -> set[str]:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return {obj["__tensor__"]}
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else ()
    return set().union(*map(_tensor_refs, values))


def _train_step(skeleton: Any) -> int:
    """counters.step of a training state as the Trainer writes it; -1 when it has none."""
    state = join_tensors(skeleton, _NoTensors())
    try:
        return int(state["counters"]["step"])
    except (KeyError, TypeError, ValueError):
        return -1


class _NoTensors(dict):
    def __missing__(self, key):
        return None


def _inspect(ckpt_dir: Path, need_state: bool) -> int:
    """The training step of a complete checkpoint dir (-1 without one); else _Incomplete."""
    if not (ckpt_dir / "config.json").is_file():
        raise _Incomplete("config.json is missing (an interrupted save)")
    _header(ckpt_dir / "model.safetensors")
    for name in ("config.json", "tokenizer.json", "meta.json"):
        _json(ckpt_dir / name)
    if not (need_state or (ckpt_dir / "state.json").exists()
            or (ckpt_dir / "state.safetensors").exists()):
        return -1
    skeleton = _json(ckpt_dir / "state.json")
    missing = _tensor_refs(skeleton) - set(_header(ckpt_dir / "state.safetensors"))
    if missing:
        raise _Incomplete(f"state.json refers to {len(missing)} tensors that state.safetensors "
                          "lacks")
    return _train_step(skeleton)


def _candidates(run_dir: Path, name: str) -> list[Path]:
    """NAME and what an interrupted save of it can leave: `NAME.old` and temp dirs."""
    found = [run_dir / name, run_dir / f"{name}.old", *sorted(run_dir.glob(f".{name}.tmp-*"))]
    return [p for p in found if p.is_dir()]


def _newest_complete(families: list[list[Path]], need_state: bool
                     ) -> tuple[Path | None, list[str]]:
    """The complete dir with the highest training step (ties: earlier family, then the later
    write), and one message per dir skipped."""
    chosen, best_key, skipped = None, None, []
    for rank, family in enumerate(families):
        for ckpt_dir in family:
            try:
                step = _inspect(ckpt_dir, need_state)
                key = (step, -rank, (ckpt_dir / "config.json").stat().st_mtime_ns)
            except _Incomplete as why:
                skipped.append(f"skipping checkpoint {ckpt_dir}: {why}")
                continue
            except FileNotFoundError:  # removed while we looked
                continue
            if best_key is None or key > best_key:
                chosen, best_key = ckpt_dir, key
    if chosen is not None and (chosen.name.startswith(".") or chosen.name.endswith(".old")):
        skipped.append(f"using {chosen}, a complete checkpoint left by an interrupted save")
    return chosen, skipped


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def resumable_checkpoint(run_dir: str | Path, log: Callable[[str], None] = print
                         ) -> Path | None:
    """The newest complete checkpoint with training state in run dir `run_dir`, for
    `--resume auto`; None only when the run has none at all.

    Takes the newest complete one of `latest`, `latest.old` and `.latest.tmp-*` (what an
    interrupted save leaves; highest counters.step in state.json, `latest` winning a tie), and
    falls back to `best` and its leftovers only when none of those is complete, so a run never
    restarts at step 0 while a complete checkpoint of it exists. Each dir skipped as incomplete
    or corrupt is named through `log`, with the file at fault.
    """
    run_dir = Path(run_dir)
    chosen = None
    for name in ("latest", "best"):
        chosen, messages = _newest_complete([_candidates(run_dir, name)], need_state=True)
        for message in messages:
            log(message)
        if chosen is not None:
            break
    return chosen


def find_checkpoint(path: str | Path, log: Callable[[str], None] = _stderr) -> Path:
    """A checkpoint dir as is; a run dir -> its newest complete `best`, else `latest`.

    `NAME.old` and complete temp dirs left by an interrupted save count as NAME (also when
    `path` names a NAME that such a save left missing); incomplete or corrupt dirs are skipped,
    each named through `log`.
    """
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    if path.is_dir():
        families = [_candidates(path, "best"), _candidates(path, "latest")]
    elif path.parent.is_dir():
        families = [_candidates(path.parent, path.name)]
    else:
        families = []
    skipped: list[str] = []
    for family in families:
        chosen, messages = _newest_complete([family], need_state=False)
        skipped += messages
        if chosen is not None:
            for message in skipped:
                log(message)
            return chosen
    if skipped:
        raise CheckpointError(f"{path} holds no complete checkpoint: " + "; ".join(skipped))
    if not path.exists():
        raise CheckpointError(f"no such checkpoint or run directory: {path}")
    raise CheckpointError(f"{path} holds no checkpoint (no model.safetensors, best/ or latest/); "
                          "train first with `unmask train`")


# A checkpoint's JSON files are small (the optimizer's tensors live in state.safetensors);
# anything bigger is not ours, and is refused before it is read into memory.
MAX_JSON_BYTES = 64 * 2**20


def read_json(path: Path) -> dict:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise CheckpointError(f"{path} is larger than {MAX_JSON_BYTES // 2**20} MiB; not a "
                                  "checkpoint file written by unmask")
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file missing: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
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
    config = upgrade(read_json(path / "config.json"))
    weights = _read_tensors(path / "model.safetensors")
    state = None
    if (path / "state.json").is_file():
        state = join_tensors(read_json(path / "state.json"),
                             _read_tensors(path / "state.safetensors"))
    return {"path": path, "config": config, "tokenizer": read_json(path / "tokenizer.json"),
            "meta": read_json(path / "meta.json"), "weights": weights, "train_state": state}


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if k != "head.weight"]
    if missing or unexpected:
        raise CheckpointError(f"checkpoint does not fit the model (missing {missing}, "
                              f"unexpected {unexpected})")
