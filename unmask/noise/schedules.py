"""Noise schedules for the absorbing process.

Masked diffusion (MDLM, Sahoo et al. 2024, eq. 10): a token survives to time t with
probability alpha(t); the continuous-time ELBO weights the cross-entropy on masked tokens by
-alpha'(t) / (1 - alpha(t)). Substituting m = 1 - alpha(t) turns that integral into the same
integral of CE(m) / m over the masking rate m for every schedule, so the bound does not depend
on the schedule; what a schedule changes is which masking rates training sees most often, i.e.
the variance of the training loss (the `train.noise_schedule` lever).
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


class CosineSchedule:
    """alpha(t) = cos(pi t / 2) (MaskGIT's order of masking rates): low rates are drawn more."""

    @staticmethod
    def mask_prob(t: torch.Tensor) -> torch.Tensor:
        return 1.0 - torch.cos(0.5 * math.pi * t)

    @staticmethod
    def elbo_weight(t: torch.Tensor) -> torch.Tensor:
        """(pi/2) sin(pi t / 2) / (1 - cos(pi t / 2))."""
        return 0.5 * math.pi * torch.sin(0.5 * math.pi * t) / (1.0 - torch.cos(0.5 * math.pi * t))


class LogLinearSchedule:
    """MDLM's log-linear schedule: total noise sigma(t) = -log(1 - (1 - eps) t), i.e.
    alpha(t) = 1 - (1 - eps) t; a token survives to t = 1 with probability eps."""

    eps = 1e-3

    @classmethod
    def mask_prob(cls, t: torch.Tensor) -> torch.Tensor:
        return (1.0 - cls.eps) * t

    @classmethod
    def elbo_weight(cls, t: torch.Tensor) -> torch.Tensor:
        """(1 - eps) / ((1 - eps) t) = 1 / t: the linear weight on a slightly shorter range."""
        return 1.0 / t


NOISE_SCHEDULES = {"linear": LinearSchedule, "cosine": CosineSchedule,
                   "loglinear": LogLinearSchedule}
