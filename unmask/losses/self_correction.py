"""Seeds 002/003's task-weighted cross-entropy for [MASK] / [WRONG] self-correction."""

from __future__ import annotations

import torch

from unmask.config.schema import SelfCorrectionConfig
from unmask.noise.corruption import Corruption, remask_id_for


def task_weighted_loss(logits: torch.Tensor, c: Corruption, mask_id: int, wrong_id: int,
                       current_penalty: float, cfg: SelfCorrectionConfig,
                       mask_logit_bias: float = 0.0, *, vocab_size: int | None = None
                       ) -> tuple[torch.Tensor, int, dict[str, torch.Tensor]]:
    """Seed 002/003's task-weighted cross-entropy; returns (weighted sum, #positions, diag).

    The softmax runs over the real tokens (ids < `vocab_size`, default `mask_id`: the tokenizer
    appends specials after the text vocabulary) plus the remask id; other specials get no
    mass. It is assembled from two logsumexps, so the (B, L, V) logits are never copied
    (beyond a float upcast of low-precision logits). `mask_logit_bias` is added to the [MASK]
    logit, which only matters in the single-token variant ([MASK] is no output otherwise).

    Weights: unmask positions (input [MASK]) weight_unmask_task; remask positions (swapped
    input, target remask id) weight_remask_task; a correct visible token whose argmax is the
    remask id (a destructive edit) current_penalty * (1 - corruption_rate of its row), so a
    row with many swaps forgives over-flagging less harshly; everything else 1.

    `weight_swap_fill` > 0 adds, at swapped positions, that weight times the cross-entropy of
    the original token over the real tokens alone (the remask output excluded): besides
    flagging a swapped token the model learns what belongs there, which doubles the
    fill-in-the-blank signal per row, and the flag is unaffected (that term ignores it).

    diag: avg_mask_prob = mean probability of the remask output over unmask positions (the
    controller's signal in the single-token variant), and the task counts.
    """
    V = mask_id if vocab_size is None else vocab_size
    remask_id = remask_id_for(cfg.remask_target, mask_id, wrong_id)
    bias = mask_logit_bias if remask_id == mask_id else 0.0
    targets = c.targets
    real = logits[..., :V].float()  # a view for fp32 logits
    flag = logits[..., remask_id].float() + bias  # (B, L)
    lse = torch.logaddexp(real.logsumexp(-1), flag)
    is_flag_target = targets == remask_id
    target_real = real.gather(-1, targets.clamp(0, V - 1)[..., None]).squeeze(-1)
    nll = lse - torch.where(is_flag_target, flag, target_real)

    weights, diag = _task_weights(c, mask_id, is_flag_target, real, flag, lse, cfg,
                                  current_penalty)
    total = (nll * weights).sum()
    if cfg.weight_swap_fill > 0 and c.originals is not None:
        original = real.gather(-1, c.originals[..., None]).squeeze(-1)
        swap_nll = real.logsumexp(-1) - original
        total = total + cfg.weight_swap_fill * (swap_nll * c.replaced_positions).sum()
    return total, targets.numel(), diag


@torch.no_grad()
def _task_weights(c: Corruption, mask_id: int, is_flag_target: torch.Tensor,
                  real: torch.Tensor, flag: torch.Tensor, lse: torch.Tensor,
                  cfg: SelfCorrectionConfig, current_penalty: float
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """task_weighted_loss's (B, L) weight of each position's NLL, and its diagnostics."""
    inputs, targets = c.inputs, c.targets
    visible = inputs != mask_id
    unmask = ~visible & ~is_flag_target
    remask = visible & is_flag_target
    predicted_flag = flag > real.max(-1).values  # argmax over allowed ids; ties -> real
    destructive = visible & (inputs == targets) & predicted_flag
    penalty = current_penalty * (1.0 - c.corruption_rate.to(flag.device))[:, None]
    weights = torch.ones_like(flag)
    weights = torch.where(unmask, cfg.weight_unmask_task, weights)
    weights = torch.where(remask, cfg.weight_remask_task, weights)
    weights = torch.where(destructive, penalty.expand_as(weights), weights)
    n_unmask = unmask.sum()
    flag_prob = (flag - lse).exp()
    diag = {
        "avg_mask_prob": (flag_prob * unmask).sum() / n_unmask.clamp_min(1),
        "n_unmask": n_unmask,
        "n_remask": remask.sum(),
        "n_destructive": destructive.sum(),
        "n_flagged": (visible & predicted_flag).sum(),
    }
    return weights, diag
