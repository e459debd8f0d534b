"""Iterative unmasking: start from all-[MASK], reveal positions step by step.

Which positions to reveal at each step is a policy chosen by name from `POLICIES`; token choice
(temperature, top-k, top-p) is shared by all. `UnmaskingSampler` is the Sampler; `generate`
and `sample` are the keyword-argument shortcuts older callers use.

Policies (each batched over rows: no per-row Python loop):
- `confidence`: the k most probable drawn tokens first (MaskGIT; LLaDA's low-confidence
  remasking), k = masks left / steps left;
- `margin`: the k largest top-1 minus top-2 probability gaps first (Dream's `topk_margin`);
- `entropy`: the k lowest-entropy predictive distributions first (Dream's `entropy`);
- `random`: MDLM's ancestral order: from t to s < t each mask is revealed w.p. (t - s) / t;
- `threshold`: every mask whose drawn token has probability >= `request.threshold`, and at
  least the k of `confidence` (Fast-dLLM's parallel decoding; with steps = length, k = 1).
  It usually finishes well before the step budget: the budget is a ceiling, not a target;
- `random-threshold`: MDLM's ancestral order plus every mask whose drawn token is at least
  `request.threshold` probable. Fast-dLLM's rule on top of the order that keeps the model's
  diversity (confidence order fills in frequent tokens first and repeats itself): a nearly
  sure token is the same whether drawn now or later, so revealing it early changes little
  but empties the row sooner, and the steps left with nothing to reveal cost no call (the
  cache below);
- `calibrated`: PC-Sampler's order (Huang et al. 2025): confidence times the drawn token's
  surprisal under a background distribution, times exp(-`position_decay` x position), so
  tokens predicted everywhere (a space, "the") are not placed first. The background here is
  the model's own mean prediction over the row's masked positions (no corpus counts needed).

MDLM's cache: a forward pass reads only the current tokens, so after a step that changed
nothing (frequent for `random` with many steps) the previous logits are reused instead of
calling the network again. The draws are the same either way, so the text is too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterator

import torch
import torch.nn as nn

from unmask.errors import UserError
from unmask.sampling.base import (
    SampleRequest,
    StepEvent,
    WholeSequenceSampler,
    final_state,
    model_device,
    step_event,
)
from unmask.sampling.draw import device_generator, filter_logits, sample_tokens


@dataclass
class StepView:
    """What a policy sees at one step (one forward pass over the whole batch)."""

    logits: torch.Tensor  # (B, L, V) real-token logits of this step
    confidence: torch.Tensor  # (B, L) probability of each drawn token
    masked: torch.Tensor  # (B, L) bool: masked and in the current block (revealable now)
    step: int  # 0-based step within the current block
    steps: int  # the block's step budget; at step == steps - 1 every mask must be revealed
    generator: torch.Generator
    request: SampleRequest
    tokens: torch.Tensor | None = None  # (B, L) drawn tokens (the `calibrated` order reads them)

    @cached_property
    def probs(self) -> torch.Tensor:
        """(B, L, V) the distribution tokens were drawn from (tempered, top-k/top-p filtered;
        at temperature 0 the plain softmax), as Dream scores its orders."""
        r = self.request
        if r.temperature == 0:
            return self.logits.float().softmax(-1)
        return filter_logits(self.logits.float() / r.temperature, r.top_k, r.top_p).softmax(-1)

    def budget(self) -> torch.Tensor:
        """(B,) reveals per row that finish the block on time: ceil(masks left / steps left)."""
        return torch.ceil(self.masked.sum(-1) / (self.steps - self.step)).long()


def top_k_per_row(score: torch.Tensor, masked: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Bool (B, L): the k[b] highest-scoring masked positions of each row (one sort, batched)."""
    score = score.masked_fill(~masked, float("-inf"))
    rank = score.argsort(-1, descending=True).argsort(-1)
    return (rank < k[:, None]) & masked


def reveal_most_confident(v: StepView) -> torch.Tensor:
    """MaskGIT / LLaDA: the most probable drawn tokens first."""
    return top_k_per_row(v.confidence, v.masked, v.budget())


def reveal_margin(v: StepView) -> torch.Tensor:
    """Dream's top-k margin: the largest gap between the two most probable tokens first."""
    top2 = v.probs.topk(2, dim=-1).values
    return top_k_per_row(top2[..., 0] - top2[..., 1], v.masked, v.budget())


def reveal_entropy(v: StepView) -> torch.Tensor:
    """Dream's entropy order: the most peaked predictive distributions (lowest entropy) first."""
    negative_entropy = torch.special.xlogy(v.probs, v.probs).sum(-1)
    return top_k_per_row(negative_entropy, v.masked, v.budget())


def reveal_random(v: StepView) -> torch.Tensor:
    """MDLM ancestral sampling: from t to s < t each masked token is revealed w.p. (t - s) / t."""
    t, s = 1.0 - v.step / v.steps, 1.0 - (v.step + 1) / v.steps
    draws = torch.rand(v.masked.shape, generator=v.generator, device=v.generator.device)
    return (draws.to(v.masked.device) < (t - s) / t) & v.masked


def sure_masks(v: StepView) -> torch.Tensor:
    """The masks whose drawn token is at least `request.threshold` probable (Fast-dLLM)."""
    return v.masked & (v.confidence >= v.request.threshold)


def reveal_above_threshold(v: StepView) -> torch.Tensor:
    """Fast-dLLM: every sure mask, and never fewer than `confidence` would reveal (at least
    one; all at the block's last step)."""
    return sure_masks(v) | reveal_most_confident(v)


def reveal_random_above_threshold(v: StepView) -> torch.Tensor:
    """MDLM's ancestral reveals plus every sure mask."""
    return reveal_random(v) | sure_masks(v)


SURPRISAL_FLOOR = 1e-4  # background probabilities are clipped here (PC-Sampler's epsilon)


def calibrated_score(v: StepView) -> torch.Tensor:
    """(B, L) PC-Sampler's score of the drawn `v.tokens`: p(token here) x -log
    p_background(token) x exp(-position_decay x generated position). The background is the
    mean of `v.probs` over the row's revealable positions: a token the model expects
    everywhere is uninformative."""
    probs, masked = v.probs, v.masked
    weights = masked.float() / masked.sum(-1, keepdim=True).clamp(min=1)
    background = torch.einsum("bl,blv->bv", weights, probs)  # (B, V)
    drawn = background.gather(-1, v.tokens)  # (B, L) background probability of each token
    surprisal = -drawn.clamp(min=SURPRISAL_FLOOR).log()
    position = masked.long().cumsum(-1) - 1  # 0 for the leftmost revealable position
    return v.confidence * surprisal * torch.exp(-v.request.position_decay * position.float())


def reveal_calibrated(v: StepView) -> torch.Tensor:
    """PC-Sampler: the highest calibrated, position-weighted confidences first."""
    return top_k_per_row(calibrated_score(v), v.masked, v.budget())


Policy = Callable[[StepView], torch.Tensor]

POLICIES: dict[str, Policy] = {
    "confidence": reveal_most_confident,
    "random": reveal_random,
    "margin": reveal_margin,
    "entropy": reveal_entropy,
    "threshold": reveal_above_threshold,
    "random-threshold": reveal_random_above_threshold,
    "calibrated": reveal_calibrated,
}


# ---------------------------------------------------------------- blocks and the step budget


def block_index(generated: torch.Tensor, block_length: int) -> torch.Tensor:
    """(B, L) long: the semi-autoregressive block of each generated position, -1 elsewhere.

    Blocks count generated positions only, left to right, so a prompt, an infill template's
    fixed words or a suffix never take a block's place. block_length 0: one block."""
    order = generated.long().cumsum(-1) - 1
    if block_length > 0:
        order = order // block_length
    else:
        order = torch.zeros_like(order)
    return torch.where(generated, order, -1)


def block_plan(length: int, block_length: int, steps: int, cap_at_length: bool = True
               ) -> list[int]:
    """Steps of each block: the budget max(#blocks, min(steps, length)) split evenly
    (LLaDA's semi-AR decoding); without `cap_at_length`, max(#blocks, steps)."""
    block_length = block_length if 0 < block_length < length else length
    n_blocks = -(-length // block_length)
    total = max(n_blocks, min(steps, length) if cap_at_length else steps)
    return [total * (b + 1) // n_blocks - total * b // n_blocks for b in range(n_blocks)]


class CachedForward:
    """The model's real-token logits, recomputed only after the tokens changed (MDLM's cache)."""

    def __init__(self, model: nn.Module, vocab_size: int, enabled: bool = True):
        self.model, self.vocab_size, self.enabled = model, vocab_size, enabled
        self.logits, self.calls = None, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.logits is None or not self.enabled:
            self.logits = self.model(x)[..., :self.vocab_size]
            self.calls += 1
        return self.logits

    def changed(self, change: torch.Tensor) -> None:
        """Tell the cache what moved this step; nothing moved: the next call reuses logits."""
        if not self.enabled or bool(change.any()):
            self.logits = None


@dataclass(frozen=True)
class UnmaskingSampler(WholeSequenceSampler):
    """Fill the masks of a row (after a prompt, or an infill template's), revealing the
    positions `policy` picks; fixed positions are never changed.

    Only the first `vocab_size` logits (real tokens) are ever sampled, so no special token is
    emitted. With `block_length` > 0 the generated positions are filled block by block, left
    to right, the step budget split evenly between blocks (LLaDA's semi-autoregressive
    decoding); within a block the policy chooses the order. Budget: max(#blocks,
    min(steps, length)) steps. `cache` skips the forward pass after a step that changed
    nothing (see the module doc); it never changes the text.
    """

    policy: Policy = reveal_most_confident
    default_prompt: str = ""
    cache: bool = True

    def _steps(self, model, r: SampleRequest, generator) -> Iterator[StepEvent]:
        device = model_device(model)
        generator = device_generator(generator, device)
        x, fixed = r.initial_state(device)
        plan = block_plan(r.length, r.block_length, r.steps)
        blocks = block_index(~fixed, r.block_length if 0 < r.block_length < r.length else 0)
        forward = CachedForward(model, r.vocab_size, self.cache)
        done, total = 0, sum(plan)
        for b, block_steps in enumerate(plan):
            in_block = blocks == b
            for step in range(block_steps):
                masked = (x == r.mask_id) & in_block
                if not masked.any():  # the block filled early (shorter than its steps)
                    break
                logits = forward(x)
                tokens, confidence = sample_tokens(logits, r.temperature, r.top_k, r.top_p,
                                                   generator, r.gumbel64)
                reveal = self.policy(StepView(logits, confidence, masked, step, block_steps,
                                              generator, r, tokens))
                x = torch.where(reveal, tokens, x)
                forward.changed(reveal)
                done += 1
                yield step_event(done, total, forward.calls, x, r.mask_id, reveal, confidence)


def generate(model: nn.Module, *, vocab_size: int, mask_id: int, length: int,
             prompt_ids: list[int] | None = None, num_samples: int = 1, steps: int = 64,
             policy: str = "confidence", temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, block_length: int = 0, gumbel64: bool = False,
             threshold: float = 0.9, generator: torch.Generator | None = None
             ) -> Iterator[StepEvent]:
    """`UnmaskingSampler(POLICIES[policy]).generate` with keyword arguments."""
    if policy not in POLICIES:
        raise UserError(f"unknown sampling policy '{policy}'; choose one of {', '.join(POLICIES)}")
    request = SampleRequest(length, mask_id, vocab_size, tuple(prompt_ids or ()), num_samples,
                            steps, temperature, top_k, top_p, block_length, gumbel64,
                            threshold=threshold)
    return UnmaskingSampler(POLICIES[policy]).generate(model, request, generator)


def sample(model: nn.Module, **kwargs) -> torch.Tensor:
    """Run `generate` to the end and return the final (B, P + L) tokens."""
    return final_state(generate(model, **kwargs)).tokens
