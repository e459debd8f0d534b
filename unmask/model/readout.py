"""Reading a self-correcting model's outputs: which tokens it flags, and with what bias."""

from __future__ import annotations

import torch


def flag_from_logits(logits: torch.Tensor, vocab_size: int, remask_id: int,
                     bias: float = 0.0) -> torch.Tensor:
    """Bool (B, L): the argmax over real tokens + remask id is the remask id (ties -> real)."""
    flag = logits[..., remask_id].float() + bias
    return flag > logits[..., :vocab_size].float().max(-1).values


def flag_logit_bias(remask_id: int, mask_id: int, mask_logit_bias: float,
                    flag_bias: float) -> float:
    """What is added to the flag logit: the controller's [MASK] bias (single-token variant
    only, where the flag *is* [MASK]) plus the user's `flag_bias`."""
    return (mask_logit_bias if remask_id == mask_id else 0.0) + flag_bias
