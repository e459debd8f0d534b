"""Optimizers (AdamW, or Muon on hidden matrices + AdamW on the rest) and nanoGPT's warmup +
cosine learning-rate schedule. `optim.name` picks one from OPTIMIZERS."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.distributed.tensor import DTensor

from unmask.errors import UserError


def cosine_lr(step: int, lr: float, min_lr: float, warmup: int, decay_iters: int) -> float:
    """Linear warmup to `lr`, cosine decay to `min_lr` at `decay_iters`, then flat (nanoGPT)."""
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if step >= decay_iters:
        return min_lr
    progress = (step - warmup) / max(1, decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


class ChainedOptimizer:
    """Several optimizers stepped as one. `param_groups` lists every group (the trainer sets each
    group's lr), and the state dict is keyed by the part's name, so checkpoints resume exactly."""

    def __init__(self, **parts: torch.optim.Optimizer):
        self.parts = parts

    @property
    def param_groups(self) -> list[dict]:
        return [group for part in self.parts.values() for group in part.param_groups]

    @property
    def state(self) -> dict:
        """Per-parameter state of every part, as `torch.optim.Optimizer.state` (the parts hold
        disjoint parameters), for code that inspects it (memory accounting)."""
        return {p: st for part in self.parts.values() for p, st in part.state.items()}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts.values():
            part.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for part in self.parts.values():
            part.step()

    def state_dict(self) -> dict:
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != set(self.parts):
            raise UserError(f"the checkpoint's optimizer has parts {sorted(state)}, this run's "
                            f"{sorted(self.parts)}; resume with the optim.name it was trained with")
        for name, part in self.parts.items():
            part.load_state_dict(state[name])


# torch's fused AdamW: one kernel over all parameters instead of a dozen foreach passes
# (CPU, nanoGPT's 4x128 model: 0.8 ms a step instead of 2.1 ms, with clipping; BENCHMARKS.md).
FUSED_ADAMW_DEVICES = ("cuda", "cpu")


def _decay_groups(params: list[torch.nn.Parameter], weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (nanoGPT): never on norms or biases."""
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def _adamw(params: list[torch.nn.Parameter], cfg, device: torch.device) -> torch.optim.AdamW:
    return torch.optim.AdamW(_decay_groups(params, cfg.weight_decay), lr=cfg.lr,
                             betas=(cfg.beta1, cfg.beta2),
                             fused=device.type in FUSED_ADAMW_DEVICES)


def make_adamw(model: torch.nn.Module, cfg, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (nanoGPT), one fused kernel on CUDA and CPU."""
    return _adamw([p for p in model.parameters() if p.requires_grad], cfg, device)


def is_hidden_matrix(name: str, p: torch.nn.Parameter) -> bool:
    """The transformer blocks' weight matrices: what Muon orthogonalises. The embedding (tied
    to the vocabulary head), norms and classifier heads stay with AdamW (Jordan et al. 2024)."""
    return p.dim() == 2 and name.startswith("blocks.")


def make_muon(model: torch.nn.Module, cfg, device: torch.device) -> ChainedOptimizer:
    """torch.optim.Muon on the hidden matrices, AdamW on the rest, one lr schedule for both:
    Muon's update is rescaled to AdamW's RMS ("match_rms_adamw", Liu et al. 2025)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if any(isinstance(p, DTensor) for _, p in named):
        raise UserError("optim.name=muon orthogonalises whole matrices, and FSDP shards them; "
                        "use train.parallel=ddp or optim.name=adamw")
    hidden = [p for n, p in named if is_hidden_matrix(n, p)]
    rest = [p for n, p in named if not is_hidden_matrix(n, p)]
    parts = {"adamw": _adamw(rest, cfg, device)}
    if hidden:  # none when the backbone is frozen (transfer_learning_mode=feature_extraction)
        parts["muon"] = torch.optim.Muon(hidden, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                         momentum=cfg.muon_momentum,
                                         adjust_lr_fn="match_rms_adamw")
    return ChainedOptimizer(**parts)


OPTIMIZERS: dict[str, Callable] = {"adamw": make_adamw, "muon": make_muon}


def make_optimizer(model: torch.nn.Module, cfg, device: torch.device):
    """The optimizer `cfg.name` names (OptimConfig validates the name)."""
    return OPTIMIZERS[cfg.name](model, cfg, device)
