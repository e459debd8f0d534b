"""Left-to-right sampling from a causal model, with a KV cache."""

from __future__ import annotations

from typing import Iterator

import torch

from unmask.errors import UserError
from unmask.model.transformer import KVCache, Transformer
from unmask.sampling.base import StepState, sample_tokens


def _context_start(position: int, block_size: int) -> int:
    """First position a causal model sees when predicting `position`.

    Within the context nothing is dropped; past it the window jumps forward by half a block,
    so a KV cache can be rebuilt from a half-full window instead of at every token. Both the
    cached and the uncached paths use this rule, so they generate identical text.
    """
    if position < block_size:
        return 0
    half = block_size // 2
    return ((position - block_size) // half + 1) * half


@torch.no_grad()
def generate_causal(model: Transformer, *, vocab_size: int, mask_id: int, length: int,
                    prompt_ids: list[int], num_samples: int = 1, temperature: float = 1.0,
                    top_k: int = 0, top_p: float = 1.0, use_cache: bool = True,
                    generator: torch.Generator | None = None) -> Iterator[StepState]:
    """Left-to-right sampling from a causal model, one token per step, streamed like
    `generate` (positions not yet generated read [MASK])."""
    if not prompt_ids:
        raise UserError("a causal model needs a prompt of at least one token (e.g. --prompt '\\n')")
    device = next(model.parameters()).device
    generator = generator or torch.Generator().manual_seed(0)
    model.eval()
    P, block = len(prompt_ids), model.cfg.block_size
    x = torch.full((num_samples, P + length), mask_id, dtype=torch.long, device=device)
    x[:, :P] = torch.tensor(prompt_ids, device=device)
    cache, cache_start = None, -1
    for pos in range(P, P + length):  # predict token `pos` from tokens before it
        start = _context_start(pos - 1, block)
        if not use_cache:
            logits = model(x[:, start:pos])[:, -1]
        else:
            if start != cache_start:  # (re)build the cache for this window
                cache, cache_start = KVCache(model.cfg, num_samples, device), start
                logits = model(x[:, start:pos], cache)[:, -1]
            else:
                logits = model(x[:, pos - 1:pos], cache)[:, -1]
        tokens, _ = sample_tokens(logits[:, None, :vocab_size], temperature, top_k, top_p,
                                  generator)
        x[:, pos] = tokens[:, 0]
        revealed = torch.zeros_like(x, dtype=torch.bool)
        revealed[:, pos] = True
        yield StepState(pos - P + 1, length, x.clone(), revealed, (P + length - pos - 1) * num_samples)
