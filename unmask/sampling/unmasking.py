"""Iterative unmasking: start from all-[MASK], reveal positions step by step.

`generate` is a generator that yields a `StepState` after every step, so a CLI, a terminal UI
or a web page can stream the same run. Which positions to reveal at each step is a policy
chosen by name from `POLICIES`; token choice (temperature, top-k, top-p) is shared by all.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from unmask.errors import UserError
from unmask.model.transformer import Transformer
from unmask.sampling.base import StepState, final_state, sample_tokens

# ---------------------------------------------------------------- unmasking policies
# A policy gets the confidence of each drawn token, the current mask, the step (0-based) and
# the budget, and returns the bool (B, L) set of positions to reveal now. Every policy must
# reveal all remaining masks at the last step.


def reveal_most_confident(confidence: torch.Tensor, masked: torch.Tensor, step: int,
                          steps: int, generator: torch.Generator) -> torch.Tensor:
    """MaskGIT / LLaDA: reveal the k most confident masked positions, k = remaining / steps left."""
    remaining = masked.sum(-1)
    k = torch.ceil(remaining / (steps - step)).long()  # (B,)
    score = confidence.masked_fill(~masked, float("-inf"))
    rank = score.argsort(-1, descending=True).argsort(-1)
    return (rank < k[:, None]) & masked


def reveal_random(confidence: torch.Tensor, masked: torch.Tensor, step: int, steps: int,
                  generator: torch.Generator) -> torch.Tensor:
    """MDLM ancestral sampling: from t to s < t each masked token is revealed w.p. (t - s) / t."""
    t, s = 1.0 - step / steps, 1.0 - (step + 1) / steps
    draws = torch.rand(masked.shape, generator=generator, device=generator.device)
    return (draws.to(masked.device) < (t - s) / t) & masked


POLICIES: dict[str, Callable[..., torch.Tensor]] = {
    "confidence": reveal_most_confident,
    "random": reveal_random,
}


@torch.no_grad()
def generate(model: Transformer, *, vocab_size: int, mask_id: int, length: int,
             prompt_ids: list[int] | None = None, num_samples: int = 1, steps: int = 64,
             policy: str = "confidence", temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, block_length: int = 0,
             generator: torch.Generator | None = None) -> Iterator[StepState]:
    """Yield the state after each unmasking step; the last state has no [MASK] left.

    `prompt_ids` is a fixed prefix; `length` counts generated tokens after it. Only the first
    `vocab_size` logits (real tokens) are ever sampled, so no special token is emitted.
    With `block_length` > 0 the generated span is filled block by block, left to right, the
    step budget split evenly between blocks (LLaDA's semi-autoregressive decoding); within a
    block the policy chooses the order.
    """
    if policy not in POLICIES:
        raise UserError(f"unknown sampling policy '{policy}'; choose one of {', '.join(POLICIES)}")
    prompt = list(prompt_ids or [])
    total = len(prompt) + length
    if total > model.cfg.block_size:
        raise UserError(
            f"prompt ({len(prompt)}) + length ({length}) exceeds the model's context "
            f"{model.cfg.block_size}; ask for a shorter --length"
        )
    device = next(model.parameters()).device
    generator = generator or torch.Generator().manual_seed(0)
    model.eval()
    x = torch.full((num_samples, total), mask_id, dtype=torch.long, device=device)
    if prompt:
        x[:, : len(prompt)] = torch.tensor(prompt, device=device)
    choose = POLICIES[policy]
    block_length = block_length if 0 < block_length < length else length
    n_blocks = -(-length // block_length) if length else 0
    steps = max(n_blocks, min(steps, length))
    done = 0
    for b in range(n_blocks):
        start = len(prompt) + b * block_length
        in_block = torch.zeros(total, dtype=torch.bool, device=device)
        in_block[start:start + block_length] = True
        block_steps = steps * (b + 1) // n_blocks - steps * b // n_blocks
        for step in range(block_steps):
            masked = (x == mask_id) & in_block
            if not masked.any():
                break
            logits = model(x)[..., :vocab_size]
            tokens, confidence = sample_tokens(logits, temperature, top_k, top_p, generator)
            reveal = choose(confidence, masked, step, block_steps, generator)
            x = torch.where(reveal, tokens, x)
            done += 1
            yield StepState(done, steps, x.clone(), reveal, int((x == mask_id).sum()))


def sample(model: Transformer, **kwargs) -> torch.Tensor:
    """Run `generate` to the end and return the final (B, L) tokens."""
    return final_state(generate(model, **kwargs)).tokens
