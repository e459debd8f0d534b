"""Noise schedules for the absorbing process, and the learning-rate schedule.

Masked diffusion (MDLM, Sahoo et al. 2024, eq. 10): a token survives to time t with
probability alpha(t); the continuous-time ELBO weights the cross-entropy on masked tokens by
-alpha'(t) / (1 - alpha(t)). For the linear schedule alpha(t) = 1 - t that weight is 1/t.
"""

from __future__ import annotations

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
