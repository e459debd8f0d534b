"""Absorbing-state masking of MDLM: diffusion times and q(x_t | x_0)."""

from __future__ import annotations

import torch

from unmask.noise.schedules import LinearSchedule


def sample_times(batch_size: int, generator: torch.Generator, antithetic: bool = True,
                 t_min: float = 1e-3) -> torch.Tensor:
    """Diffusion times t in [t_min, 1), one per sequence.

    With `antithetic`, one uniform offset is shared and the batch is spread evenly over [0, 1)
    (MDLM's low-discrepancy sampler), which keeps every t marginally uniform while cutting the
    variance of the 1/t-weighted loss.
    """
    device = generator.device
    if antithetic:
        offset = torch.rand(1, generator=generator, device=device)
        u = (offset + torch.arange(batch_size, device=device) / batch_size) % 1.0
    else:
        u = torch.rand(batch_size, generator=generator, device=device)
    return t_min + (1.0 - t_min) * u


def mask_tokens(x0: torch.Tensor, t: torch.Tensor, mask_id: int, generator: torch.Generator,
                schedule=LinearSchedule) -> tuple[torch.Tensor, torch.Tensor]:
    """Absorbing forward process q(x_t | x_0): mask each token independently with prob(t).

    Returns (x_t, masked) where `masked` is a bool (B, L) tensor.
    """
    draws = torch.rand(x0.shape, generator=generator, device=generator.device).to(x0.device)
    masked = draws < schedule.mask_prob(t).to(x0.device)[:, None]
    return torch.where(masked, torch.full_like(x0, mask_id), x0), masked


def drop_input_tokens(inputs: torch.Tensor, p: float, mask_id: int,
                      generator: torch.Generator) -> torch.Tensor:
    """Token-level input dropout (Bowman et al. 2016's word dropout): each visible input token
    becomes [MASK] with probability p; targets are left alone, so the model learns to predict
    from a thinner context. A regulariser for many epochs over scarce data (`train.input_dropout`).
    """
    if p <= 0:
        return inputs
    draws = torch.rand(inputs.shape, generator=generator, device=generator.device)
    return torch.where(draws.to(inputs.device) < p, torch.full_like(inputs, mask_id), inputs)
