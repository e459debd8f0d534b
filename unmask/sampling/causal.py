"""Left-to-right sampling from a causal model, with a KV cache."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import torch
import torch.nn as nn

from unmask.errors import UserError
from unmask.model.transformer import KVCache
from unmask.sampling.base import (
    SampleRequest,
    StepEvent,
    check_request,
    eval_stream,
    model_device,
    step_event,
)
from unmask.sampling.draw import device_generator, sample_tokens


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


context_start = _context_start  # public: the judge (eval/judge.py) scores with the same rule


@dataclass(frozen=True)
class CausalSampler:
    """One token per step, left to right; positions not yet generated read [MASK].

    The context window slides (see `_context_start`), so the length is not bounded by the
    model's context; `steps` and `block_length` do not apply (the budget is `length`). A
    causal model predicts from what precedes, so it needs a prompt of at least one token.
    """

    use_cache: bool = True
    default_prompt: str = "\n"

    def max_length(self, block_size: int, prompt_len: int) -> None:
        return None

    def generate(self, model: nn.Module, request: SampleRequest,
                 generator: torch.Generator | None = None) -> Iterator[StepEvent]:
        if request.template_ids:  # only "prefix[MASK:n]" fits a left-to-right model
            prefix = request.template_ids[:request.n_fixed]
            if request.mask_id in prefix:
                raise UserError("a causal model only continues a prefix: put the [MASK:n] "
                                "span at the end, or use a diffusion checkpoint to infill")
            request = replace(request, prompt_ids=prefix, template_ids=())
        check_request(request, model.cfg.block_size, None, min_prompt=1)
        return eval_stream(model, self._steps(model, request, generator))

    def _steps(self, model, r: SampleRequest, generator) -> Iterator[StepEvent]:
        device = model_device(model)
        generator = device_generator(generator, device)
        P, block = len(r.prompt_ids), model.cfg.block_size
        x = torch.full((r.num_samples, r.total), r.mask_id, dtype=torch.long, device=device)
        x[:, :P] = torch.tensor(r.prompt_ids, device=device)
        cache, cache_start = None, -1
        for pos in range(P, r.total):  # predict token `pos` from tokens before it
            start = _context_start(pos - 1, block)
            if not self.use_cache:
                logits = model(x[:, start:pos])[:, -1]
            elif start != cache_start:  # (re)build the cache for this window
                cache, cache_start = KVCache(model.cfg, r.num_samples, device), start
                logits = model(x[:, start:pos], cache)[:, -1]
            else:
                logits = model(x[:, pos - 1:pos], cache)[:, -1]
            tokens, confidence = sample_tokens(logits[:, None, :r.vocab_size], r.temperature,
                                               r.top_k, r.top_p, generator, r.gumbel64)
            x[:, pos] = tokens[:, 0]
            revealed = torch.zeros_like(x, dtype=torch.bool)
            revealed[:, pos] = True
            conf = torch.zeros(x.shape, device=device)
            conf[:, pos] = confidence[:, 0]
            n = pos - P + 1
            yield step_event(n, r.length, n, x, r.mask_id, revealed, conf)


def generate_causal(model: nn.Module, *, vocab_size: int, mask_id: int, length: int,
                    prompt_ids: list[int], num_samples: int = 1, temperature: float = 1.0,
                    top_k: int = 0, top_p: float = 1.0, use_cache: bool = True,
                    gumbel64: bool = False, generator: torch.Generator | None = None
                    ) -> Iterator[StepEvent]:
    """`CausalSampler(use_cache).generate` with keyword arguments."""
    request = SampleRequest(length, mask_id, vocab_size, tuple(prompt_ids or ()), num_samples,
                            length, temperature, top_k, top_p, gumbel64=gumbel64)
    return CausalSampler(use_cache).generate(model, request, generator)
