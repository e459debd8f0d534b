"""Data parallelism across ranks, and the state-dict plumbing that keeps one checkpoint format.

`train.parallel=ddp`: every rank holds the whole model; DDP all-reduces the gradients.
`train.parallel=fsdp`: PyTorch's FSDP2 (`fully_shard`, per transformer block, then the root)
shards parameters, gradients and optimizer state over the ranks and gathers each block's
parameters only while it runs, for models that do not fit one GPU. It shards in place, so the
optimizer is built after `shard`.

A checkpoint is the same single file set either way (checkpoint.py: safetensors + JSON): under
FSDP the full weights and optimizer state are gathered to rank 0's CPU memory, the optimizer's
keyed by parameter index as `optimizer.state_dict()` keys it, and a full checkpoint (from one
process or any number of ranks) is sharded again on resume.
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from unmask.errors import UserError
from unmask.model import checkpoint as ckpt
from unmask.runtime.distributed import is_distributed, is_main, world_size

GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)  # full, on rank 0's CPU
SCATTER = StateDictOptions(full_state_dict=True)  # every rank passes the full state


def shard(model: torch.nn.Module, amp: torch.dtype | None) -> torch.nn.Module:
    """FSDP2 in place: each transformer block is one unit (gathered for its forward and
    backward, then freed), the root holds the rest (embedding / tied head, norm, heads)."""
    if amp == torch.float16:
        raise UserError("train.parallel=fsdp cannot use float16 loss scaling (each rank would "
                        "see only its shard's overflows); use train.dtype=bfloat16 or float32")
    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def gradient_sync(step_model: torch.nn.Module, model: torch.nn.Module, sync: bool):
    """Reduce gradients over ranks in this backward only when `sync` (the last micro-batch of
    an accumulation window); the others accumulate locally."""
    if sync or not is_distributed():
        yield
    elif is_sharded(model):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        with step_model.no_sync():
            yield


def clip_grad_norm(model: torch.nn.Module, max_norm: float) -> torch.Tensor:
    """Clip to `max_norm`; returns the total norm as a plain tensor (FSDP: over all shards)."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


class GatheredWeights:
    """What `checkpoint.save_checkpoint` reads of a model (its state_dict), gathered already."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = state

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.state)


def full_weights(model: torch.nn.Module):
    """The model to save: itself, or under FSDP its full weights (a collective: every rank
    calls it; only rank 0's answer holds the tensors)."""
    if not is_sharded(model):
        return model
    return GatheredWeights(get_model_state_dict(model, options=GATHER))


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Full weights (a checkpoint's) into the model, sharding them under FSDP."""
    if not is_sharded(model):
        ckpt.load_weights(model, weights)
        return
    own = model.state_dict()  # DTensors: .shape is the full shape
    misfit = [k for k, v in weights.items() if k in own and v.shape != own[k].shape]
    missing = sorted(set(own) - set(weights) - {"head.weight"})  # tied to embed.weight
    unexpected = sorted(set(weights) - set(own))
    if misfit or missing or unexpected:
        raise ckpt.CheckpointError(
            f"checkpoint does not fit the model (other shapes {misfit}, missing {missing}, "
            f"unexpected {unexpected}); use the model settings it was trained with, or train "
            "into a new --out directory")
    set_model_state_dict(model, {"head.weight": weights["embed.weight"], **weights},
                         options=SCATTER)


def _names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Each optimizer parameter's name, in the optimizer's (state-dict index) order."""
    name = {id(p): n for n, p in model.named_parameters()}
    return [name[id(p)] for group in optimizer.param_groups for p in group["params"]]


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """`optimizer.state_dict()`, also under FSDP (a collective; complete on rank 0 only)."""
    if not is_sharded(model):
        return optimizer.state_dict()
    full = get_optimizer_state_dict(model, optimizer, options=GATHER)
    if not is_main():
        return {}
    index = {n: i for i, n in enumerate(_names(model, optimizer))}
    return {"state": {index[n]: s for n, s in full["state"].items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]}
                             for g in full["param_groups"]]}


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                         state: dict) -> None:
    """The inverse of `optimizer_state`: a full state (keyed by index) into the optimizer."""
    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    names = _names(model, optimizer)
    by_name = {"state": {names[i]: s for i, s in state["state"].items()},
               "param_groups": [{**g, "params": [names[i] for i in g["params"]]}
                                for g in state["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, by_name, options=SCATTER)


def gather_objects(value) -> list:
    """Every rank's `value`, in rank order, on rank 0 (an empty list on the others)."""
    if not is_distributed():
        return [value]
    box = [None] * world_size() if is_main() else None
    dist.gather_object(value, box, dst=0)
    return box or []
