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
import torch.nn as nn

from unmask.errors import UserError
from unmask.model.readout import flag_from_logits, flag_logit_bias
from unmask.noise.corruption import remask_id_for
from unmask.sampling.base import (
    SampleRequest,
    StepEvent,
    check_request,
    context_max_length,
    eval_stream,
    evaluating,
    model_device,
    step_event,
)
from unmask.sampling.draw import device_generator, sample_tokens
from unmask.sampling.unmasking import block_index, block_plan


def detect_wrong(model: nn.Module, tokens: torch.Tensor, vocab_size: int, wrong_id: int,
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
    with evaluating(model):
        logits = model(tokens)
    return flag_from_logits(logits, vocab_size, remask_id, bias)


def _most_confident(confidence: torch.Tensor, masked: torch.Tensor, k: torch.Tensor
                    ) -> torch.Tensor:
    """Bool (B, L): the k[b] most confident masked positions of each row."""
    score = confidence.masked_fill(~masked, float("-inf"))
    rank = score.argsort(-1, descending=True).argsort(-1)
    return (rank < k[:, None]) & masked


@dataclass(frozen=True)
class RemaskSampler:
    """Fill masks and re-mask flagged tokens (see the module doc); for self_correction models.

    `wrong_id` and `remask_target` say which id flags a token; `mask_logit_bias` is the
    single-token variant's [MASK] bias the checkpoint ended with; `flag_bias` shifts the flag
    logit (see detect_wrong). A position re-masked `max_remasks` times is no longer eligible:
    without this cap a model that keeps doubting its own fill can flip-flop forever. A flagged
    token is only replaced by a fill more than `change_margin` times as probable as itself under
    the refill distribution (1 = plain argmax): a false alarm then keeps its (often correct)
    token unless the context clearly prefers another. `unmask_per_step` fixes how many masks
    a row fills per step (default: ceil(#masked / steps left)).
    """

    wrong_id: int
    remask_target: str = "wrong"
    mask_logit_bias: float = 0.0
    flag_bias: float = 0.0
    max_remasks: int = 2
    change_margin: float = 1.0
    unmask_per_step: int | None = None
    default_prompt: str = ""

    def max_length(self, block_size: int, prompt_len: int) -> int:
        return context_max_length(block_size, prompt_len)

    def generate(self, model: nn.Module, request: SampleRequest,
                 generator: torch.Generator | None = None) -> Iterator[StepEvent]:
        """From all-[MASK] after the frozen prompt (or an infill template's fixed tokens);
        with `block_length`, block by block, left to right (flags only in the current block)."""
        check_request(request, model.cfg.block_size,
                      self.max_length(model.cfg.block_size, request.n_fixed))
        x, frozen = request.initial_state(model_device(model))
        return self.edit(model, request, x, frozen, generator)

    def edit(self, model: nn.Module, request: SampleRequest, tokens: torch.Tensor,
             frozen: torch.Tensor | None, generator: torch.Generator | None
             ) -> Iterator[StepEvent]:
        """Stream the edits of `tokens` (B, L) until a fixed point or `request.steps`.

        `tokens` may hold [MASK] and wrong real tokens; any special id outside `frozen` is
        treated as [MASK]. `frozen` positions (e.g. a prompt) are never changed and must hold
        real tokens. Only request.{mask_id, vocab_size, steps, temperature, top_k, top_p,
        gumbel64, block_length} are read.
        """
        frozen = (torch.zeros_like(tokens, dtype=torch.bool) if frozen is None
                  else frozen.to(tokens.device))
        if (frozen & (tokens >= request.vocab_size)).any():
            raise ValueError("frozen positions must hold real tokens, not [MASK] or other specials")
        remask_id_for(self.remask_target, request.mask_id, self.wrong_id)  # fails early
        return eval_stream(model, self._steps(model, request, tokens, frozen, generator))

    def _margin(self, logits, fills, confidence, doubted) -> tuple[torch.Tensor, torch.Tensor]:
        """(fills, probability of each placed token): where a flag removed a token, it comes
        back unless the fill is `change_margin` times as probable as it."""
        if self.change_margin == 1.0:
            return fills, confidence
        p_doubted = logits.float().softmax(-1).gather(
            -1, doubted.clamp_min(0)[..., None]).squeeze(-1)
        keep = (doubted >= 0) & (self.change_margin * p_doubted >= confidence)
        return torch.where(keep, doubted, fills), torch.where(keep, p_doubted, confidence)

    def _reveal_count(self, n_masked: torch.Tensor, steps_left: int) -> torch.Tensor:
        """Masks to fill per row this step: all of them on a block's last step, else
        `unmask_per_step` or an even share of the steps left."""
        if steps_left == 1:
            return n_masked
        if self.unmask_per_step is not None:
            return torch.full_like(n_masked, self.unmask_per_step)
        return torch.ceil(n_masked / steps_left).long()

    def _steps(self, model, r: SampleRequest, tokens, frozen, generator
               ) -> Iterator[StepEvent]:
        """Per step: flag (see module doc), then fill k masked positions per row. The run stops
        once a step finds nothing masked and nothing flagged (it yields that check as a last
        event with no change), and the last step of the budget flags nothing and fills every
        mask, so the output never holds a special token. With blocks, each block gets its
        share of the budget and ends the same way; its check's forward pass is reused by the
        next block (the tokens did not change), and only the last block yields it."""
        V, mask_id = r.vocab_size, r.mask_id
        remask_id = remask_id_for(self.remask_target, mask_id, self.wrong_id)
        bias = flag_logit_bias(remask_id, mask_id, self.mask_logit_bias, self.flag_bias)
        generator = device_generator(generator, tokens.device)
        x = torch.where(~frozen & (tokens >= V), mask_id, tokens)
        editable = ~frozen
        n_edit = int(editable.sum(-1).max()) if x.numel() else 0
        use_blocks = 0 < r.block_length < n_edit
        blocks = block_index(editable, r.block_length if use_blocks else 0)
        plan = (block_plan(n_edit, r.block_length, r.steps, cap_at_length=False) if use_blocks
                else [r.steps])
        max_steps = sum(plan)
        remask_count = torch.zeros_like(x)
        doubted = torch.full_like(x, -1)  # the token a flag removed, per position (-1: none)
        step, calls, logits = 0, 0, None
        for b, block_steps in enumerate(plan):
            active, last_block = blocks == b, b == len(plan) - 1
            for i in range(block_steps):
                last = i == block_steps - 1
                if logits is None:
                    logits, calls = model(x), calls + 1
                masked = (x == mask_id) & active
                flagged = (flag_from_logits(logits, V, remask_id, bias) & ~masked & active
                           & (remask_count < self.max_remasks))
                if last:
                    flagged = torch.zeros_like(flagged)
                if not (masked | flagged).any():  # checked: a fixed point for every row
                    if not last_block:
                        break  # keep `logits`: the next block starts from the same tokens
                    nothing = torch.zeros_like(masked)
                    yield step_event(step + 1, max_steps, calls, x, mask_id, nothing,
                                     torch.zeros(x.shape, device=x.device), nothing)
                    return
                fills, confidence = sample_tokens(logits[..., :V], r.temperature, r.top_k,
                                                  r.top_p, generator, r.gumbel64)
                fills, placed = self._margin(logits[..., :V], fills, confidence, doubted)
                reveal = _most_confident(confidence, masked,
                                         self._reveal_count(masked.sum(-1), block_steps - i))
                x = torch.where(reveal, fills, x)
                doubted = torch.where(flagged, x, doubted)
                x = torch.where(flagged, mask_id, x)
                remask_count += flagged
                logits, step = None, step + 1
                # A row is settled once a step finds nothing in it to fill or flag: its text
                # is unchanged, so the next pass reads it the same way.
                idle = ~(masked | flagged).any(-1)
                settled = (idle | last) if last_block else torch.zeros_like(idle)
                yield step_event(step, max_steps, calls, x, mask_id, reveal, placed,
                                 flagged, settled)


def remask_generate(model: nn.Module, *, vocab_size: int, mask_id: int, wrong_id: int,
                    tokens: torch.Tensor, frozen: torch.Tensor | None = None,
                    max_steps: int = 64, temperature: float = 1.0, top_k: int = 0,
                    top_p: float = 1.0, generator: torch.Generator | None = None,
                    remask_target: str = "wrong", mask_logit_bias: float = 0.0,
                    unmask_per_step: int | None = None, max_remasks: int = 2,
                    change_margin: float = 1.0, flag_bias: float = 0.0,
                    gumbel64: bool = False) -> Iterator[StepEvent]:
    """`RemaskSampler(...).edit(tokens)` with keyword arguments (see RemaskSampler)."""
    if max_steps < 1:
        raise UserError(f"max_steps must be >= 1, got {max_steps}")
    sampler = RemaskSampler(wrong_id, remask_target, mask_logit_bias, flag_bias, max_remasks,
                            change_margin, unmask_per_step)
    request = SampleRequest(tokens.size(1), mask_id, vocab_size, (), tokens.size(0), max_steps,
                            temperature, top_k, top_p, gumbel64=gumbel64)
    return sampler.edit(model, request, tokens, frozen, generator)


def repair(model: nn.Module, *, vocab_size: int, mask_id: int, wrong_id: int,
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


def remask_sample(model: nn.Module, *, vocab_size: int, mask_id: int, wrong_id: int,
                  length: int, prompt_ids: list[int] | None = None, num_samples: int = 1,
                  steps: int = 64, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0, gumbel64: bool = False,
                  generator: torch.Generator | None = None, **options) -> torch.Tensor:
    """Generate from all-[MASK] after a fixed prompt with the remasking sampler; (B, P + L).

    `options` are RemaskSampler fields (remask_target, mask_logit_bias, ...)."""
    request = SampleRequest(length, mask_id, vocab_size, tuple(prompt_ids or ()), num_samples,
                            steps, temperature, top_k, top_p, gumbel64=gumbel64)
    final = None
    for final in RemaskSampler(wrong_id, **options).generate(model, request, generator):
        pass
    return final.tokens
