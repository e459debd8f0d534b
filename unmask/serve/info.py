"""The model panel: what is loaded, how big, where, trained how far, and its run's checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from unmask.errors import UserError
from unmask.model.checkpoint import join_tensors, read_json
from unmask.sampling.registry import (
    SAMPLERS,
    default_sampler,
    fitting_samplers,
    pick_sampler,
)
from unmask.serve.settings import Limits


class _NoTensors(dict):
    def __missing__(self, key):
        return None


def training_step(ckpt_dir: Path) -> int | None:
    """counters.step of a checkpoint's training state (None without one)."""
    state_file = Path(ckpt_dir) / "state.json"
    if not state_file.is_file():
        return None
    try:
        state = join_tensors(read_json(state_file), _NoTensors())
        return int(state["counters"]["step"])
    except (UserError, KeyError, TypeError, ValueError):
        return None


def run_checkpoints(ckpt_dir: Path) -> list[dict]:
    """Every checkpoint beside the loaded one in its run dir (`best`, `latest`, ...), with its
    training step; leftovers of interrupted saves (`.NAME.tmp-*`, `NAME.old`) are not listed."""
    ckpt_dir = Path(ckpt_dir).resolve()
    found = []
    for path in sorted(ckpt_dir.parent.iterdir()):
        if (path.is_dir() and not path.name.startswith(".") and not path.name.endswith(".old")
                and (path / "model.safetensors").is_file()):
            found.append({"name": path.name, "path": str(path), "step": training_step(path),
                          "loaded": path == ckpt_dir})
    return found


def process_memory() -> int | None:
    """Resident set size of this process in bytes (Linux; None elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def model_info(pre, limits: Limits) -> dict:
    """Everything the page's model panel and its controls need, JSON-ready."""
    model, config, tok = pre.model, pre.config, pre.tokenizer
    device = next(model.parameters()).device
    tensors = list(model.parameters()) + list(model.buffers())
    memory = {"weights_bytes": sum(t.numel() * t.element_size() for t in tensors),
              "process_rss_bytes": process_memory()}
    if device.type == "cuda":
        memory["cuda_allocated_bytes"] = torch.cuda.memory_allocated(device)
    s = config.sample
    longest = pick_sampler(None, pre).max_length(config.model.block_size, 0)
    length = s.length if longest is None else min(s.length, longest)
    return {
        "checkpoint": str(pre.path),
        "mode": config.model.mode,
        "objective": config.train.objective,
        "parameters": model.num_parameters(),
        "layers": config.model.n_layer, "heads": config.model.n_head,
        "width": config.model.n_embd, "context": config.model.block_size,
        "vocab_size": tok.vocab_size, "tokenizer": tok.kind,
        "device": str(device), "memory": memory,
        "training_step": training_step(Path(pre.path)),
        "checkpoints": run_checkpoints(Path(pre.path)),
        "samplers": {name: SAMPLERS[name].summary for name in fitting_samplers(config)},
        "default_sampler": default_sampler(config),
        "defaults": {"length": min(length, limits.max_length), "steps": s.steps, "temperature": s.temperature,
                     "top_k": s.top_k, "top_p": s.top_p, "seed": s.seed},
        "limits": {"max_prompt_chars": limits.max_prompt_chars,
                   "max_length": limits.max_length, "max_steps": limits.max_steps,
                   "max_speed": limits.max_speed, "max_concurrent": limits.max_concurrent},
    }
