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

With `keep_previous` (the trainer's `train.keep_last_k` > 1) step 2 renames NAME to the
snapshot `step_<its step>` instead of `NAME.old`, and step 3 keeps it; `prune_snapshots` later
drops the oldest snapshots (each renamed to a hidden name before it is removed).

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
from unmask.model.checkpoint_scan import (  # noqa: F401  (join/split are part of this API)
    SNAPSHOT_PREFIX,
    Incomplete,
    candidates,
    inspect_dir,
    join_tensors,
    newest_complete,
    parse_json,
    snapshots,
    split_tensors,
    train_step_of,
)

FORMAT_VERSION = 1

FILES = ("model.safetensors", "config.json", "tokenizer.json", "meta.json")


class CheckpointError(UserError):
    """The checkpoint is missing, truncated or from an unknown format."""


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
                    meta: dict, train_state: dict | None = None,
                    keep_previous: bool = False) -> Path:
    """Write checkpoint dir `path` so that a crash at any moment leaves a complete checkpoint
    (the sequence is in the module docstring). A save that fails with an error puts the
    previous checkpoint back and leaves no temp dir. `keep_previous` keeps the checkpoint it
    replaces as the snapshot `step_<its step>` beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if keep_previous:
        _promote_leftover(path)  # so that it, too, becomes a snapshot
    old = (keep_previous and _snapshot_name(path)) or path.with_name(path.name + ".old")
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
    if not old.name.startswith(SNAPSHOT_PREFIX):
        shutil.rmtree(old, ignore_errors=True)
    for leftover in path.parent.glob(f".{path.name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    return path


def _snapshot_name(path: Path) -> Path | None:
    """`step_<step>` beside `path` for the complete checkpoint in it; None when it has no
    readable training step (nothing worth keeping: it goes as `NAME.old` would)."""
    try:
        step = train_step_of(parse_json(path / "state.json"))
    except (Incomplete, OSError):
        return None
    return path.with_name(f"{SNAPSHOT_PREFIX}{step:08d}") if step >= 0 else None


def _promote_leftover(path: Path) -> None:
    """The newest complete `NAME.old` / temp dir an interrupted save left becomes NAME when it
    is newer (NAME moving aside as its snapshot first), so the snapshots keep every step."""
    leftovers = [p for p in (path.with_name(path.name + ".old"),
                             *path.parent.glob(f".{path.name}.tmp-*")) if p.is_dir()]
    chosen, _ = newest_complete([leftovers], need_state=False)
    if chosen is None:
        return
    if path.exists():
        try:
            newer = inspect_dir(chosen, need_state=False) > inspect_dir(path, need_state=False)
        except (Incomplete, OSError):
            return  # NAME is damaged: the usual sequence replaces it
        aside = _snapshot_name(path)
        if not newer or aside is None or aside.exists():
            return
        os.replace(path, aside)
    os.replace(chosen, path)


def prune_snapshots(run_dir: Path, keep: int) -> None:
    """Remove all but the newest `keep` snapshots. Each is first renamed to a hidden name, so a
    crash half-way through its removal leaves nothing that looks like a checkpoint."""
    run_dir = Path(run_dir)
    found = snapshots(run_dir)
    for snapshot in found[: max(len(found) - keep, 0)]:
        os.replace(snapshot, run_dir / f".{snapshot.name}.del")
    for leftover in run_dir.glob(f".{SNAPSHOT_PREFIX}*.del"):
        shutil.rmtree(leftover, ignore_errors=True)


# ------------------------------------------------------------------ finding a complete checkpoint


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
        chosen, messages = newest_complete([candidates(run_dir, name)], need_state=True)
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
        families = [candidates(path, "best"), candidates(path, "latest")]
    elif path.parent.is_dir():
        families = [candidates(path.parent, path.name)]
    else:
        families = []
    skipped: list[str] = []
    for family in families:
        chosen, messages = newest_complete([family], need_state=False)
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
    own = model.state_dict()
    misfit = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in weights.items()
              if k in own and v.shape != own[k].shape]
    if misfit:
        raise CheckpointError(f"checkpoint does not fit the model ({len(misfit)} tensors differ "
                              f"in shape, e.g. {misfit[0]}, checkpoint vs model); use the model "
                              "settings it was trained with, or train into a new --out directory")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if k != "head.weight"]
    if missing or unexpected:
        raise CheckpointError(f"checkpoint does not fit the model (missing {missing}, "
                              f"unexpected {unexpected})")
