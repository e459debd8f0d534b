"""Noise schedules for the absorbing process, and the learning-rate schedule.

Masked diffusion (MDLM, Sahoo et al. 2024, eq. 10): a token survives to time t with
probability alpha(t); the continuous-time ELBO weights the cross-entropy on masked tokens by
-alpha'(t) / (1 - alpha(t)). For the linear schedule alpha(t) = 1 - t that weight is 1/t.
"""

from __future__ import annotations

import math

import torch


class LinearSchedule:
    """alpha(t) = 1 - t: each token is masked with probability t."""

    @staticmethod
    def mask_prob(t: torch.Tensor) -> torch.Tensor:
        return t

    @staticmethod
    def elbo_weight(t: torch.Tensor) -> torch.Tensor:
        """-alpha'(t) / (1 - alpha(t)) = 1 / t."""
        return 1.0 / t


def cosine_lr(step: int, lr: float, min_lr: float, warmup: int, decay_iters: int) -> float:
    """Linear warmup to `lr`, cosine decay to `min_lr` at `decay_iters`, then flat (nanoGPT)."""
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if step >= decay_iters:
        return min_lr
    progress = (step - warmup) / max(1, decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)
