"""AdamW with decoupled weight decay on matrices, and nanoGPT's warmup + cosine schedule."""

from __future__ import annotations

import math

import torch


def cosine_lr(step: int, lr: float, min_lr: float, warmup: int, decay_iters: int) -> float:
    """Linear warmup to `lr`, cosine decay to `min_lr` at `decay_iters`, then flat (nanoGPT)."""
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if step >= decay_iters:
        return min_lr
    progress = (step - warmup) / max(1, decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def make_optimizer(model: torch.nn.Module, cfg, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (nanoGPT), fused kernel on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                             fused=device.type == "cuda")
