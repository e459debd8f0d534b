"""What every sampler shares: the request, the per-step event stream, the one prompt/length
check, and running a model in eval mode without leaving it there.

A sampler is anything with `generate(model, request, generator) -> Iterator[StepEvent]`; the
CLI, a terminal view and a web page all consume that one stream (see `registry.SAMPLERS`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch
import torch.nn as nn

from unmask.errors import UserError


@dataclass(frozen=True)
class SampleRequest:
    """What to generate; the same for every sampler (each ignores what it has no use for)."""

    length: int  # tokens to generate after the prompt
    mask_id: int  # the [MASK] id: positions still hidden read this
    vocab_size: int  # real (text) tokens are ids below this; only these are ever drawn
    prompt_ids: tuple[int, ...] = ()  # fixed prefix, never changed
    num_samples: int = 1  # rows of the batch
    steps: int = 64  # step budget (a causal sampler takes one step per token instead)
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = no top-k filter
    top_p: float = 1.0  # 1 = no nucleus filter
    block_length: int = 0  # > 0: fill left to right in blocks of this size (LLaDA)
    gumbel64: bool = False  # draw by float64 Gumbel-max instead of multinomial (ReMDM)
    threshold: float = 0.9  # `threshold`, `random-threshold`: reveal every mask this sure
    eta: float | None = None  # ReMDM remasking strength (None: the schedule's paper default)
    position_decay: float = 0.0  # `calibrated` policy: score x exp(-decay x position) (PC-Sampler)
    # Infill: the whole row, [MASK] (mask_id) where to generate, real tokens kept as they are.
    # Then prompt_ids is empty and length is the number of masks (see sampling/infill.py).
    template_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt_ids", tuple(int(i) for i in self.prompt_ids))
        if self.length <= 0:
            raise UserError("nothing to generate: --length must be positive")
        if self.num_samples <= 0 or self.steps <= 0:
            raise UserError("--num-samples and --steps must be positive")
        if self.temperature < 0 or self.top_k < 0 or not 0.0 < self.top_p <= 1.0:
            raise UserError("need --temperature >= 0, --top-k >= 0 and --top-p in (0, 1]")
        if self.block_length < 0:
            raise UserError("--block-length must be >= 0 (0: the whole span at once)")
        if any(not 0 <= i < self.vocab_size for i in self.prompt_ids):
            raise UserError("the prompt must hold real tokens only, not [MASK] or specials")
        if not 0.0 <= self.threshold <= 1.0 or (self.eta is not None and self.eta < 0):
            raise UserError("need --threshold in [0, 1] and --eta >= 0")
        if self.position_decay < 0:
            raise UserError("--position-decay must be >= 0 (0: no preference for the left)")
        object.__setattr__(self, "template_ids", tuple(int(i) for i in self.template_ids))
        if self.template_ids:
            if self.prompt_ids:
                raise UserError("give either a prompt or an infill template, not both")
            if any(not (0 <= i < self.vocab_size or i == self.mask_id)
                   for i in self.template_ids):
                raise UserError("an infill template holds real tokens and [MASK] only")
            if self.template_ids.count(self.mask_id) != self.length:
                raise ValueError("length must equal the number of [MASK] in template_ids")

    @property
    def total(self) -> int:
        """Tokens in a row: prompt (or template) and generated together."""
        return len(self.template_ids) or len(self.prompt_ids) + self.length

    @property
    def n_fixed(self) -> int:
        """Tokens given, not generated: the prompt, or the template's real tokens."""
        return self.total - self.length

    def initial_state(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The starting rows (B, total), [MASK] where to generate, and the bool mask of the
        fixed positions (prompt or template tokens) that no sampler may change."""
        if self.template_ids:
            row = torch.tensor(self.template_ids, dtype=torch.long, device=device)
        else:
            row = torch.full((self.total,), self.mask_id, dtype=torch.long, device=device)
            row[:len(self.prompt_ids)] = torch.tensor(self.prompt_ids, dtype=torch.long,
                                                      device=device)
        x = row.expand(self.num_samples, -1).clone()
        return x, x != self.mask_id


@dataclass(frozen=True, eq=False)  # tensors: compare fields, not events
class StepEvent:
    """The state after one step: enough for a terminal or web view to draw it.

    All tensors are on the model's device and never shared with the sampler's own state.
    """

    step: int  # 1-based index of this step
    steps: int  # step budget
    network_calls: int  # forward passes so far, this one included
    tokens: torch.Tensor  # (B, L) current ids, prompt included; [MASK] where hidden
    masked: torch.Tensor  # (B, L) bool, still hidden
    revealed: torch.Tensor  # (B, L) bool, revealed at this step
    remasked: torch.Tensor  # (B, L) bool, hidden again at this step (remask sampler only)
    confidence: torch.Tensor  # (B, L) probability of each token revealed now, 0 elsewhere
    done: torch.Tensor  # (B,) bool, this row will not change any more

    @property
    def remaining(self) -> int:
        """Masked positions left over the whole batch (a GPU sync: for logs, not loops)."""
        return int(self.masked.sum())


StepState = StepEvent  # the old name, for callers not yet moved


def step_event(step: int, steps: int, network_calls: int, tokens: torch.Tensor, mask_id: int,
               revealed: torch.Tensor, confidence: torch.Tensor,
               remasked: torch.Tensor | None = None, done: torch.Tensor | None = None
               ) -> StepEvent:
    """A StepEvent from a sampler's state; `done` defaults to "no [MASK] left in the row"."""
    masked = tokens == mask_id
    return StepEvent(
        step, steps, network_calls, tokens.clone(), masked, revealed,
        torch.zeros_like(revealed) if remasked is None else remasked,
        torch.where(revealed, confidence.float(), 0.0),
        ~masked.any(-1) if done is None else done)


class Sampler(Protocol):
    """One decoding strategy; `generate` yields a StepEvent after every step."""

    default_prompt: str  # what the CLI samples after when the user gives no prompt

    def generate(self, model: nn.Module, request: SampleRequest,
                 generator: torch.Generator | None) -> Iterator[StepEvent]: ...

    def max_length(self, block_size: int, prompt_len: int) -> int | None:
        """The longest `length` this sampler can produce after a prompt (None: no limit)."""
        ...


def context_max_length(block_size: int, prompt_len: int) -> int:
    """Samplers that see the whole sequence at once: prompt + generated must fit the context."""
    return block_size - prompt_len


def check_request(request: SampleRequest, block_size: int, max_length: int | None,
                  min_prompt: int = 0) -> None:
    """The one prompt/length check every sampler runs before its first forward pass.

    `max_length` is the sampler's `max_length(block_size, request.n_fixed)`."""
    P = request.n_fixed
    if P < min_prompt:
        raise UserError(f"this sampler needs a prompt of at least {min_prompt} token(s) "
                        "(e.g. --prompt '\\n')")
    if max_length is not None and request.length > max_length:
        raise UserError(f"prompt ({P}) + length ({request.length}) exceeds the model's "
                        f"context {block_size}; ask for a shorter --length")


class WholeSequenceSampler:
    """Base of the samplers that see the prompt and the generated span at once, so the
    context bounds both; a subclass yields its steps from `_steps(model, request, generator)`."""

    def max_length(self, block_size: int, prompt_len: int) -> int:
        return context_max_length(block_size, prompt_len)

    def generate(self, model, request: SampleRequest,
                 generator: torch.Generator | None = None) -> Iterator[StepEvent]:
        check_request(request, model.cfg.block_size,
                      self.max_length(model.cfg.block_size, request.n_fixed))
        return eval_stream(model, self._steps(model, request, generator))


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside; every module's own training flag restored after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in flags:
            m.training = training


def eval_stream(model: nn.Module, events: Iterator[StepEvent]) -> Iterator[StepEvent]:
    """Run a sampler's steps in eval mode without gradients, handing the model back as it was
    around every yield: a consumer that stops early, or keeps the generator and never closes
    it, still finds its model as it left it (a trainer sampling mid-run keeps training mode).
    """
    try:
        while True:
            with evaluating(model):
                event = next(events, None)
            if event is None:
                return
            yield event
    finally:
        events.close()


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def final_state(stream: Iterator[StepEvent]) -> StepEvent:
    """Drain a step stream and return its last event."""
    final = None
    for final in stream:
        pass
    if final is None:  # nothing to generate (length 0)
        raise UserError("nothing to generate: --length must be positive")
    return final
