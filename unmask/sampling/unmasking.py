"""Iterative unmasking: start from all-[MASK], reveal positions step by step.

Which positions to reveal at each step is a policy chosen by name from `POLICIES`; token choice
(temperature, top-k, top-p) is shared by all. `UnmaskingSampler` is the Sampler; `generate`
and `sample` are the keyword-argument shortcuts older callers use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn as nn

from unmask.errors import UserError
from unmask.sampling.base import (
    SampleRequest,
    StepEvent,
    check_request,
    context_max_length,
    eval_stream,
    final_state,
    model_device,
    step_event,
)
from unmask.sampling.draw import device_generator, sample_tokens

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


@dataclass(frozen=True)
class UnmaskingSampler:
    """Fill an all-[MASK] span after the prompt, revealing the positions `policy` picks.

    Only the first `vocab_size` logits (real tokens) are ever sampled, so no special token is
    emitted. With `block_length` > 0 the span is filled block by block, left to right, the step
    budget split evenly between blocks (LLaDA's semi-autoregressive decoding); within a block
    the policy chooses the order. Budget: max(#blocks, min(steps, length)) steps.
    """

    policy: Callable[..., torch.Tensor] = reveal_most_confident
    default_prompt: str = ""

    def max_length(self, block_size: int, prompt_len: int) -> int:
        return context_max_length(block_size, prompt_len)

    def generate(self, model: nn.Module, request: SampleRequest,
                 generator: torch.Generator | None = None) -> Iterator[StepEvent]:
        check_request(request, model.cfg.block_size,
                      self.max_length(model.cfg.block_size, len(request.prompt_ids)))
        return eval_stream(model, self._steps(model, request, generator))

    def _steps(self, model, r: SampleRequest, generator) -> Iterator[StepEvent]:
        device = model_device(model)
        generator = device_generator(generator, device)
        P, length = len(r.prompt_ids), r.length
        x = torch.full((r.num_samples, r.total), r.mask_id, dtype=torch.long, device=device)
        if P:
            x[:, :P] = torch.tensor(r.prompt_ids, device=device)
        block_length = r.block_length if 0 < r.block_length < length else length
        n_blocks = -(-length // block_length)
        steps = max(n_blocks, min(r.steps, length))
        done = 0
        for b in range(n_blocks):
            start = P + b * block_length
            in_block = torch.zeros(r.total, dtype=torch.bool, device=device)
            in_block[start:start + block_length] = True
            block_steps = steps * (b + 1) // n_blocks - steps * b // n_blocks
            for step in range(block_steps):
                masked = (x == r.mask_id) & in_block
                if not masked.any():  # the block filled early (it is shorter than its steps)
                    break
                logits = model(x)[..., :r.vocab_size]
                tokens, confidence = sample_tokens(logits, r.temperature, r.top_k, r.top_p,
                                                   generator, r.gumbel64)
                reveal = self.policy(confidence, masked, step, block_steps, generator)
                x = torch.where(reveal, tokens, x)
                done += 1
                yield step_event(done, steps, done, x, r.mask_id, reveal, confidence)


def generate(model: nn.Module, *, vocab_size: int, mask_id: int, length: int,
             prompt_ids: list[int] | None = None, num_samples: int = 1, steps: int = 64,
             policy: str = "confidence", temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, block_length: int = 0, gumbel64: bool = False,
             generator: torch.Generator | None = None) -> Iterator[StepEvent]:
    """`UnmaskingSampler(POLICIES[policy]).generate` with keyword arguments."""
    if policy not in POLICIES:
        raise UserError(f"unknown sampling policy '{policy}'; choose one of {', '.join(POLICIES)}")
    request = SampleRequest(length, mask_id, vocab_size, tuple(prompt_ids or ()), num_samples,
                            steps, temperature, top_k, top_p, block_length, gumbel64)
    return UnmaskingSampler(POLICIES[policy]).generate(model, request, generator)


def sample(model: nn.Module, **kwargs) -> torch.Tensor:
    """Run `generate` to the end and return the final (B, P + L) tokens."""
    return final_state(generate(model, **kwargs)).tokens
