"""Evaluation: a deterministic ELBO, masked-token accuracy, and word validity of samples.

The ELBO is estimated with a fixed stratified quadrature over t: every validation window is
scored at `n_t` times t_k = (k + u) / n_t, k = 0..n_t-1, with one offset u per window and the
masks drawn from a seeded generator. Re-running gives the same number to the last digit, and
the estimate is unbiased for the MDLM bound (Sahoo et al. 2024, eq. 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from unmask.noise.masking import mask_tokens
from unmask.objectives.losses import masked_diffusion_loss
from unmask.runtime.device import autocast


@dataclass
class EvalSet:
    """Fixed (x0, t, x_t, masked) tuples, built once and scored many times."""

    x0: torch.Tensor  # (N, L)
    t: torch.Tensor  # (N,)
    xt: torch.Tensor  # (N, L)
    masked: torch.Tensor  # (N, L) bool


def build_eval_set(windows: torch.Tensor, mask_id: int, n_t: int, seed: int) -> EvalSet:
    """Repeat each window at n_t stratified times; draw its masks from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    n = windows.size(0)
    offsets = torch.rand(n, generator=gen)
    t = ((torch.arange(n_t)[None, :] + offsets[:, None]) / n_t).clamp_min(1e-4).flatten()
    x0 = windows.repeat_interleave(n_t, dim=0)
    xt, masked = mask_tokens(x0, t, mask_id, gen)
    return EvalSet(x0, t, xt, masked)


@torch.no_grad()
def score_eval_set(model, eval_set: EvalSet, vocab_size: int, batch_size: int = 64,
                   amp_dtype=None) -> dict[str, float]:
    """ELBO (nats/token), bits/token and argmax accuracy on masked positions."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum, tokens, correct, n_masked = 0.0, 0, 0, 0
    for i in range(0, eval_set.x0.size(0), batch_size):
        x0 = eval_set.x0[i:i + batch_size].to(device)
        xt = eval_set.xt[i:i + batch_size].to(device)
        masked = eval_set.masked[i:i + batch_size].to(device)
        t = eval_set.t[i:i + batch_size].to(device)
        with autocast(device, amp_dtype):
            logits = model(xt)
        s, n = masked_diffusion_loss(logits, x0, masked, t, vocab_size)
        loss_sum += float(s)
        tokens += n
        predictions = logits[..., :vocab_size].argmax(-1)
        correct += int(((predictions == x0) & masked).sum())
        n_masked += int(masked.sum())
    model.train(was_training)
    elbo = loss_sum / tokens
    return {"elbo_nats_per_char": elbo, "elbo_bits_per_char": elbo / math.log(2),
            "masked_accuracy": correct / max(1, n_masked)}
