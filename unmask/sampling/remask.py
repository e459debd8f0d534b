"""Remasking sampler (seed 002, step 4.1): fill masks and send flagged tokens back to [MASK].

A model trained with self_correction.py outputs a remask id ([WRONG], or [MASK] in the
single-token variant) on visible tokens it believes wrong. Each step reads one forward pass
two ways: visible tokens whose argmax over (real tokens + remask id) is the remask id become
[MASK]; masked positions are filled most-confident-first with real tokens only. Starting from
a corrupted text without masks, the same loop is a proofreader (`repair`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from unmask.errors import UserError
from unmask.model.readout import flag_from_logits, flag_logit_bias, remask_id_for
from unmask.model.transformer import Transformer
from unmask.sampling.base import StepState, sample_tokens


@dataclass
class RemaskStepState(StepState):
    remasked: torch.Tensor  # (B, L) bool, visible positions flagged and re-masked at this step


@torch.no_grad()
def detect_wrong(model: Transformer, tokens: torch.Tensor, vocab_size: int, wrong_id: int,
                 remask_target: str = "wrong", *, mask_id: int | None = None,
                 mask_logit_bias: float = 0.0, flag_bias: float = 0.0) -> torch.Tensor:
    """Bool (B, L) positions the model flags as wrong in one forward pass.

    `mask_id` defaults to `vocab_size` (the tokenizer puts [MASK] right after the text
    vocabulary); `mask_logit_bias` is added to the [MASK] logit in the single-token variant
    only; `flag_bias` is added to the flag logit in both (> 0 flags more, < 0 fewer).
    """
    mask_id = vocab_size if mask_id is None else mask_id
    remask_id = remask_id_for(remask_target, mask_id, wrong_id)
    bias = flag_logit_bias(remask_id, mask_id, mask_logit_bias, flag_bias)
    return flag_from_logits(model(tokens), vocab_size, remask_id, bias)


def _most_confident(confidence: torch.Tensor, masked: torch.Tensor, k: torch.Tensor
                    ) -> torch.Tensor:
    """Bool (B, L): the k[b] most confident masked positions of each row."""
    score = confidence.masked_fill(~masked, float("-inf"))
    rank = score.argsort(-1, descending=True).argsort(-1)
    return (rank < k[:, None]) & masked


@torch.no_grad()
def remask_generate(model: Transformer, *, vocab_size: int, mask_id: int, wrong_id: int,
                    tokens: torch.Tensor, frozen: torch.Tensor | None = None,
                    max_steps: int = 64, temperature: float = 1.0, top_k: int = 0,
                    top_p: float = 1.0, generator: torch.Generator | None = None,
                    remask_target: str = "wrong", mask_logit_bias: float = 0.0,
                    unmask_per_step: int | None = None, max_remasks: int = 2,
                    change_margin: float = 1.0, flag_bias: float = 0.0
                    ) -> Iterator[RemaskStepState]:
    """Yield a RemaskStepState per step until a fixed point or `max_steps`.

    `tokens` (B, L) may hold [MASK] and wrong real tokens; any special id outside `frozen` is
    treated as [MASK]. `frozen` positions (e.g. a prompt) are never changed and must hold real
    tokens. Per step: flag (see module doc), then fill k masked positions per row, k =
    ceil(#masked / steps left) or `unmask_per_step`. A position re-masked `max_remasks` times
    is no longer eligible: without this cap a model that keeps doubting its own fill can
    flip-flop forever. A flagged token is only replaced by a fill at least `change_margin`
    times as probable as itself under the refill distribution (1 = plain argmax): a false
    alarm then keeps its (often correct) token unless the context clearly prefers another.
    `flag_bias` shifts the flag logit (see detect_wrong).
    The run stops once a step finds nothing masked and nothing flagged (the
    filled text has been checked once more), and the last step flags nothing and fills every
    mask, so the output never holds a special token.
    """
    if max_steps < 1:
        raise UserError(f"max_steps must be >= 1, got {max_steps}")
    remask_id = remask_id_for(remask_target, mask_id, wrong_id)
    bias = flag_logit_bias(remask_id, mask_id, mask_logit_bias, flag_bias)
    x = tokens.clone()
    frozen = torch.zeros_like(x, dtype=torch.bool) if frozen is None else frozen.to(x.device)
    if (frozen & (x >= vocab_size)).any():
        raise ValueError("frozen positions must hold real tokens, not [MASK] or other specials")
    x = torch.where(~frozen & (x >= vocab_size), mask_id, x)
    generator = generator or torch.Generator().manual_seed(0)
    remask_count = torch.zeros_like(x)
    doubted = torch.full_like(x, -1)  # the token a flag removed, per position (-1: none)
    model.eval()
    for step in range(max_steps):
        last = step == max_steps - 1
        logits = model(x)
        masked = x == mask_id
        flagged = (flag_from_logits(logits, vocab_size, remask_id, bias) & ~masked & ~frozen
                   & (remask_count < max_remasks))
        if last:
            flagged = torch.zeros_like(flagged)
        if not (masked | flagged).any():
            break
        fills, confidence = sample_tokens(logits[..., :vocab_size], temperature, top_k, top_p,
                                          generator)
        if change_margin != 1.0:
            p_doubted = logits[..., :vocab_size].float().softmax(-1).gather(
                -1, doubted.clamp_min(0)[..., None]).squeeze(-1)
            keep = (doubted >= 0) & (change_margin * p_doubted >= confidence)
            fills = torch.where(keep, doubted, fills)
        n_masked = masked.sum(-1)
        if last:
            k = n_masked
        elif unmask_per_step is not None:
            k = torch.full_like(n_masked, unmask_per_step)
        else:
            k = torch.ceil(n_masked / (max_steps - step)).long()
        reveal = _most_confident(confidence, masked, k)
        x = torch.where(reveal, fills, x)
        doubted = torch.where(flagged, x, doubted)
        x = torch.where(flagged, mask_id, x)
        remask_count += flagged
        yield RemaskStepState(step + 1, max_steps, x.clone(), reveal, int((x == mask_id).sum()),
                              flagged)


def repair(model: Transformer, *, vocab_size: int, mask_id: int, wrong_id: int,
           corrupted: torch.Tensor, frozen: torch.Tensor | None = None, max_steps: int = 16,
           temperature: float = 0.0, **kwargs) -> torch.Tensor:
    """Proofread a corrupted text (no masks): the first step flags, later steps refill.

    Greedy by default (temperature 0), since repair is scored against one true text.
    """
    final = corrupted.clone()
    for state in remask_generate(model, vocab_size=vocab_size, mask_id=mask_id,
                                 wrong_id=wrong_id, tokens=corrupted, frozen=frozen,
                                 max_steps=max_steps, temperature=temperature, **kwargs):
        final = state.tokens
    return final


def remask_sample(model: Transformer, *, vocab_size: int, mask_id: int, wrong_id: int,
                  length: int, prompt_ids: list[int] | None = None, num_samples: int = 1,
                  steps: int = 64, **kwargs) -> torch.Tensor:
    """Generate from all-[MASK] after a fixed prompt with the remasking sampler; (B, P + L)."""
    prompt = list(prompt_ids or [])
    if length <= 0:
        raise UserError("nothing to generate: --length must be positive")
    if len(prompt) + length > model.cfg.block_size:
        raise UserError(f"prompt ({len(prompt)}) + length ({length}) exceeds the model's "
                         f"context {model.cfg.block_size}; ask for a shorter --length")
    device = next(model.parameters()).device
    x = torch.full((num_samples, len(prompt) + length), mask_id, dtype=torch.long,
                   device=device)
    frozen = torch.zeros_like(x, dtype=torch.bool)
    if prompt:
        x[:, :len(prompt)] = torch.tensor(prompt, device=device)
        frozen[:, :len(prompt)] = True
    final = x
    for state in remask_generate(model, vocab_size=vocab_size, mask_id=mask_id,
                                 wrong_id=wrong_id, tokens=x, frozen=frozen, max_steps=steps,
                                 **kwargs):
        final = state.tokens
    return final
