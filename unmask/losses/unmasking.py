"""The staged curriculum's unmasking loss (seeds 000/001): cross-entropy on masked positions
with optional mask-ratio weighting, label smoothing and an entropy penalty."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from unmask.errors import UserError


def masked_token_loss(logits: torch.Tensor, targets: torch.Tensor, masked: torch.Tensor,
                      vocab_size: int, *, weight_loss_by_mask_ratio: bool = False,
                      uncertainty_factor: float = 0.0, entropy_penalty: float = 0.0
                      ) -> tuple[torch.Tensor, int]:
    """Unmasking loss for the stage curriculum: cross-entropy on masked positions only.

    With M the masked positions, n_b of them in row b of length L, and V = vocab_size:

        sum = sum_{i in M} w_b(i) * CE_eps(i) + entropy_penalty * sum_{i in M} (log V - H_i)

    - CE_eps is cross-entropy over the V real logits with label smoothing
      eps = uncertainty_factor: (1 - eps) * (-log p_y) + eps * mean_v(-log p_v).
      It stops the model from becoming certain about tokens that are genuinely ambiguous.
    - w_b = sqrt(1 / (n_b / L)) = sqrt(L / n_b) with weight_loss_by_mask_ratio, else 1: rows
      with few masked tokens would otherwise contribute few terms; the square root only partly
      evens this out. Rows with n_b = 0 contribute nothing.
    - H_i = -sum_v p_v log p_v is the predictive entropy; log V - H_i >= 0 is zero for a uniform
      prediction and grows as it sharpens, so entropy_penalty > 0 penalises over-confidence.
      The penalty is not multiplied by w_b.

    Returns (sum, count) with count = |M|, so sum / count is the mean per masked token.
    """
    if not 0.0 <= uncertainty_factor <= 1.0:
        raise UserError(f"uncertainty_factor must be in [0, 1], got {uncertainty_factor}")
    if entropy_penalty < 0:
        raise UserError(f"entropy_penalty must be >= 0, got {entropy_penalty}")
    real = logits[..., :vocab_size].float()  # (B, L, V)
    ce = F.cross_entropy(real.flatten(0, 1), targets.flatten(), reduction="none",
                         label_smoothing=uncertainty_factor).view_as(targets)  # (B, L)
    weight = masked.float()
    if weight_loss_by_mask_ratio:
        n_masked = masked.sum(dim=1, keepdim=True).clamp(min=1).float()  # (B, 1)
        weight = weight * torch.sqrt(masked.size(1) / n_masked)
    total = (ce * weight).sum()
    if entropy_penalty > 0:
        logp = F.log_softmax(real, dim=-1)
        entropy = -(logp.exp() * logp).sum(dim=-1)  # (B, L)
        total = total + entropy_penalty * ((math.log(vocab_size) - entropy) * masked).sum()
    return total, masked.sum()  # a tensor: no host sync on the training path


def entropy_penalty_at(it: int, start_iter: int, max_penalty: float, max_iters: int) -> float:
    """Entropy-penalty multiplier at iteration `it`: 0 before `start_iter`, then a linear ramp
    from 0 at `start_iter` to `max_penalty` at `max_iters` (held there after). Starting late
    lets the model first learn to predict at all before being pushed away from over-confidence.
    """
    if it < start_iter:
        return 0.0
    progress = (it - start_iter) / max(1, max_iters - start_iter)
    return max_penalty * min(1.0, progress)
