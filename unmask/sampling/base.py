"""What every sampler shares: token draws with temperature / top-k / top-p, the step stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from unmask.errors import UserError


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


def final_state(stream: Iterator[StepState]) -> StepState:
    """Drain a step stream and return its last state."""
    final = None
    for final in stream:
        pass
    if final is None:  # nothing to generate (length 0)
        raise UserError("nothing to generate: --length must be positive")
    return final
