"""Iterative unmasking: start from all-[MASK], reveal positions step by step.

`generate` is a generator that yields a `StepState` after every step, so a CLI, a terminal UI
or a web page can stream the same run. Which positions to reveal at each step is a policy
chosen by name from `POLICIES`; token choice (temperature, top-k, top-p) is shared by all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .model import KVCache, Transformer


@dataclass
class StepState:
    step: int  # 1-based step index
    steps: int  # step budget
    tokens: torch.Tensor  # (B, L) current sequence, [MASK] where still hidden
    revealed: torch.Tensor  # (B, L) bool, positions revealed at this step
    remaining: int  # masked positions left over the whole batch


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Keep the top-k logits and/or the smallest nucleus of mass >= top_p; others -> -inf."""
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - sorted_logits.softmax(-1) >= top_p  # mass before this token
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_tokens(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per position; return (tokens, probability of each drawn token)."""
    if temperature == 0:
        probs = logits.float().softmax(-1)
        conf, tokens = probs.max(-1)
        return tokens, conf
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = logits.softmax(-1)
    flat = probs.reshape(-1, probs.size(-1))
    tokens = torch.multinomial(flat.cpu(), 1, generator=generator).to(probs.device)
    tokens = tokens.view(probs.shape[:-1])
    return tokens, probs.gather(-1, tokens[..., None]).squeeze(-1)


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
        raise ValueError(f"unknown sampling policy '{policy}'; choose one of {', '.join(POLICIES)}")
    prompt = list(prompt_ids or [])
    total = len(prompt) + length
    if total > model.cfg.block_size:
        raise ValueError(
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


def final_state(stream: Iterator[StepState]) -> StepState:
    """Drain a step stream and return its last state."""
    final = None
    for final in stream:
        pass
    if final is None:  # nothing to generate (length 0)
        raise ValueError("nothing to generate: --length must be positive")
    return final


def sample(model: Transformer, **kwargs) -> torch.Tensor:
    """Run `generate` to the end and return the final (B, L) tokens."""
    return final_state(generate(model, **kwargs)).tokens


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
        raise ValueError("a causal model needs a prompt of at least one token (e.g. --prompt '\\n')")
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
