"""Noisy-channel proofreading: each character's posterior given its context and what was read.

The repair benchmark's corruption (and seed 002's training corruption) swaps a character for a
uniformly drawn *other* one. With a prior error rate rho the channel is

    P(o | c) = 1 - rho          if the observed o is the true c,
             = rho / (V - 1)    otherwise,

so the posterior of the true character at position i is P(c | o_i, x_-i) ∝ P(c | x_-i) P(o_i | c),
where P(c | x_-i) is the model's fill distribution with position i masked. One rule makes both
decisions the remasking sampler takes apart (is it wrong? what goes there?): the observed
character is replaced iff some c is more than (1 - rho)(V - 1) / rho times as probable as it
in the fill distribution (the `change_margin` the sampler's knob approximates).

The context holds errors too, so the positions are read by iterated conditional modes: in k
interleaved classes (position mod k), each class masked and read in one forward pass with the
current best text around it, set to its posterior mode, the next class reading the improved
text; sweeps repeat until a sweep changes nothing or `max_sweeps`, each row (window) on its
own: a row a sweep left unchanged is done, and later sweeps read only the others. The evidence
is always the text as observed; only the context improves. Deterministic: no random draws.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from unmask.errors import UserError
from unmask.sampling.base import evaluating


def channel_log_likelihood(observed: torch.Tensor, vocab_size: int, error_rate: float
                           ) -> torch.Tensor:
    """(B, L, V) log P(o | c) for every candidate c; an observed id >= V (a [MASK] or other
    special) carries no evidence (all zeros)."""
    if not 0.0 < error_rate < 1.0:
        raise UserError(f"the channel's error rate must be in (0, 1), got {error_rate}")
    log_other = math.log(error_rate / (vocab_size - 1))
    out = torch.full((*observed.shape, vocab_size), log_other, device=observed.device)
    real = observed < vocab_size
    out.scatter_(-1, observed.clamp(max=vocab_size - 1)[..., None],
                 torch.full_like(out[..., :1], math.log(1.0 - error_rate)))
    return torch.where(real[..., None], out, torch.zeros_like(out))


@torch.no_grad()
def channel_repair(model: nn.Module, corrupted: torch.Tensor, *, vocab_size: int, mask_id: int,
                   error_rate: float = 0.1, stride: int = 16, max_sweeps: int = 4,
                   frozen: torch.Tensor | None = None) -> torch.Tensor:
    """The posterior-mode text of `corrupted` (B, L) by iterated conditional modes (module doc).

    `stride` is k, the number of interleaved classes (k forward passes per sweep; each pass
    masks 1/k of the text); `frozen` positions are never changed. Any special id in the input
    is filled from the context alone.
    """
    if stride < 1 or max_sweeps < 1:
        raise UserError(f"stride and max_sweeps must be >= 1, got {stride} and {max_sweeps}")
    B, L = corrupted.shape
    evidence = channel_log_likelihood(corrupted, vocab_size, error_rate)
    editable = (torch.ones_like(corrupted, dtype=torch.bool) if frozen is None
                else ~frozen.to(corrupted.device))
    position_class = torch.arange(L, device=corrupted.device) % stride
    x = corrupted.clone()
    # Rows are independent: a row that a whole sweep left unchanged is at its fixed point,
    # so later sweeps read only the rows still changing.
    rows = torch.arange(B, device=corrupted.device)
    with evaluating(model):
        for _ in range(max_sweeps):
            before = current = x[rows]
            row_evidence, row_editable = evidence[rows], editable[rows]
            for k in range(min(stride, L)):
                read = (position_class == k) & row_editable
                if not read.any():
                    continue
                logits = model(torch.where(read, mask_id, current))[..., :vocab_size].float()
                posterior = logits.log_softmax(-1) + row_evidence
                current = torch.where(read, posterior.argmax(-1), current)
            x[rows] = current
            rows = rows[(current != before).any(-1)]
            if len(rows) == 0:
                break
    return x
