"""Likelihood terms: per-token NLL over the real vocabulary and the MDLM ELBO.

Each loss returns (sum, count) so accumulation normalises over the whole window."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unmask.noise.schedules import LinearSchedule


def token_nll(logits: torch.Tensor, targets: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Per-position negative log-likelihood over the first `vocab_size` (real) tokens.

    Restricting the softmax to real tokens is MDLM's SUBS parameterisation: the denoiser puts
    zero mass on [MASK] and the other special tokens. Shape (B, L).
    """
    real = logits[..., :vocab_size].float()
    return F.cross_entropy(real.flatten(0, 1), targets.flatten(), reduction="none").view_as(targets)


def elbo_weighting(schedule, t: torch.Tensor) -> torch.Tensor:
    """The ELBO's per-row weight -alpha'(t) / (1 - alpha(t)) (1/t for the linear schedule)."""
    return schedule.elbo_weight(t)


def unit_weighting(schedule, t: torch.Tensor) -> torch.Tensor:
    """Plain masked cross-entropy (BERT-style): every masked token counts once, whatever t.
    Not a bound: the lower-variance surrogate that `train.loss_weighting=masked_ce` trains on."""
    return torch.ones_like(t)


LOSS_WEIGHTINGS = {"elbo": elbo_weighting, "masked_ce": unit_weighting}


def masked_diffusion_loss(logits: torch.Tensor, x0: torch.Tensor, masked: torch.Tensor,
                          t: torch.Tensor, vocab_size: int, schedule=LinearSchedule,
                          weighting=elbo_weighting) -> tuple[torch.Tensor, int]:
    """Continuous-time MDLM ELBO (Sahoo et al. 2024, eq. 10), as a sum over tokens.

    Each sequence contributes sum over its masked positions of CE * w(t), with w(t) = 1/t for
    the linear schedule. Dividing the sum by the token count gives an upper bound on the NLL
    per token in nats, directly comparable to an autoregressive model's loss (with the default
    `weighting`; `unit_weighting` gives the plain masked cross-entropy instead).
    """
    nll = token_nll(logits, x0, vocab_size)
    weight = weighting(schedule, t).to(nll.device)[:, None]
    return (nll * masked * weight).sum(), x0.numel()
