"""An exponential moving average of the weights (`train.ema_decay`), validated and sampled from.

The average over the last ~1/(1 - decay) steps (Polyak averaging) smooths out the noise that
the learning rate keeps in the last iterate, so it is often the better model to evaluate and
sample; it costs one float32 copy of the parameters and one fused lerp per optimizer step (no
host sync).

In a checkpoint the roles swap: `model.safetensors` holds the averaged weights, so `unmask
sample`, `unmask eval` and everything else that loads a checkpoint uses them unchanged, and the
training state holds the trained weights (`state_dict`), so `--resume` continues exactly.

Buffers are not averaged: the RoPE tables are constants, and a classifier's BatchNorm statistics
are recomputed for the weights being validated (precise BN runs inside `applied`).
"""

from __future__ import annotations

import contextlib

import torch

from unmask.errors import UserError
from unmask.model.checkpoint import CheckpointError
from unmask.train import parallel

WARMUP = 10  # decay (1 + n) / (WARMUP + n) for the n-th update while that is below ema_decay


class EMA:
    """Float32 shadow copies of `model`'s parameters, moved toward them by `update`."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if parallel.is_sharded(model):
            raise UserError("train.ema_decay needs every rank to hold the whole model; use "
                            "train.parallel=ddp, or train.ema_decay=0 with fsdp")
        self.model, self.decay, self.updates = model, float(decay), 0
        named = dict(model.named_parameters())  # unique: the tied head is embed.weight
        self.names, self.params = list(named), list(named.values())
        self.shadow = [p.detach().float().clone() for p in self.params]

    def current_decay(self) -> float:
        """The decay of the next update: short at first, so the random initialisation does not
        dominate the average for thousands of steps."""
        return min(self.decay, (1 + self.updates) / (WARMUP + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """shadow <- decay * shadow + (1 - decay) * weights; call after each optimizer step."""
        live = [p.detach().float() for p in self.params]  # float(): no copy for float32
        torch._foreach_lerp_(self.shadow, live, 1.0 - self.current_decay())
        self.updates += 1

    @contextlib.contextmanager
    def applied(self):
        """The averaged weights in the model for the duration (validation); the trained ones,
        bit for bit, after."""
        with torch.no_grad():
            trained = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(self.params, self.shadow)
        try:
            yield self.model
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, trained)

    def averaged_weights(self) -> parallel.GatheredWeights:
        """What a checkpoint's model.safetensors holds: the model's state dict (buffers
        included) with the averages in place of the parameters, tied names included."""
        index = {id(p): i for i, p in enumerate(self.params)}
        state = self.model.state_dict()
        for name, p in self.model.named_parameters(remove_duplicate=False):
            state[name] = self.shadow[index[id(p)]].to(p.dtype)
        return parallel.GatheredWeights(state)

    def state_dict(self) -> dict:
        """The training state beside `averaged_weights`: the trained weights and the count."""
        return {"updates": self.updates,
                "raw_weights": {n: p.detach() for n, p in zip(self.names, self.params)}}

    @torch.no_grad()
    def load_state_dict(self, state: dict | None) -> None:
        """After a checkpoint's model.safetensors was loaded into the model: those are the
        averages, and `state` puts the trained weights back. Without a saved EMA state (a run
        that had none) the average starts afresh from the loaded weights."""
        torch._foreach_copy_(self.shadow, [p.detach().float() for p in self.params])
        self.updates = 0 if state is None else int(state["updates"])
        if state is not None:
            load_raw_weights(self.params, self.names, state)


def restore(model: torch.nn.Module, ema: EMA | None, state: dict | None) -> None:
    """The EMA part of a resume, once the checkpoint's weights are in `model`. A checkpoint with
    an average resumed without one trains on from its trained weights (the average is dropped)."""
    if ema is not None:
        ema.load_state_dict(state)
    elif state is not None:
        named = dict(model.named_parameters())
        with torch.no_grad():
            load_raw_weights(list(named.values()), list(named), state)


def load_raw_weights(params: list[torch.Tensor], names: list[str], state: dict) -> None:
    raw = state["raw_weights"]
    if sorted(raw) != sorted(names):
        raise CheckpointError(f"the checkpoint's trained weights ({len(raw)} tensors) do not fit "
                              f"the model's {len(names)} parameters; resume with the model "
                              "settings it was trained with")
    torch._foreach_copy_(params, [raw[n].to(p.device) for n, p in zip(names, params)])
