"""StepEvents -> what a view draws: per-position cells (text + kind) and JSON-able frames.

A cell is one token position of one row. Its kind is one of
  fixed     given by the user (the prompt), never changes;
  masked    still [MASK]: drawn as a block;
  new       revealed at this step: highlighted;
  remasked  hidden again at this step (a remasking sampler): marked;
  settled   revealed at an earlier step: plain text.
The web page receives the changes of each step as a frame; the terminal view draws the cells.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from unmask.sampling.base import SampleRequest, StepEvent

FIXED, MASKED, NEW, REMASKED, SETTLED = "fixed", "masked", "new", "remasked", "settled"


class TokenText:
    """id -> its text, cached (one decode per distinct id)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        text = self.cache.get(token_id)
        if text is None:
            text = self.cache[token_id] = self.tokenizer.decode([token_id])
        return text


def initial_tokens(request: SampleRequest) -> torch.Tensor:
    """(L,) the row a generation starts from: fixed tokens, [MASK] where to generate. The one
    place that says which positions are fixed: a request that builds its own starting row
    (`initial_state`, an infill template) is drawn from it, holes anywhere."""
    if hasattr(request, "initial_state"):
        return request.initial_state("cpu")[0][0]
    row = torch.full((request.total,), request.mask_id, dtype=torch.long)
    row[:len(request.prompt_ids)] = torch.tensor(request.prompt_ids, dtype=torch.long)
    return row


class RowView:
    """One row of the batch as cells, updated from each StepEvent by its changes."""

    def __init__(self, text: TokenText, request: SampleRequest, row: int = 0):
        self.text, self.mask_id, self.row = text, request.mask_id, row
        self.tokens = initial_tokens(request)
        fixed = self.tokens != self.mask_id
        self.kinds = [FIXED if f else MASKED for f in fixed.tolist()]
        self.texts = [text(t) if f else "" for t, f in zip(self.tokens.tolist(), fixed.tolist())]
        self.generated = int((~fixed).sum())  # positions to fill
        self.masked = self.generated
        self.recent: list[int] = []  # positions changed at the last step

    def update(self, event: StepEvent) -> dict:
        """Apply one step; returns its changes: revealed [[pos, text, confidence]], remasked
        [pos] (only positions whose token changed: a view needs nothing else)."""
        tokens = event.tokens[self.row].cpu()
        changed = (tokens != self.tokens).nonzero().flatten().tolist()
        confidence = event.confidence[self.row].cpu()
        self.settle()  # last step's highlights fade
        self.recent = changed
        revealed, remasked = [], []
        for i in changed:
            token = int(tokens[i])
            if token == self.mask_id:
                self.kinds[i], self.texts[i] = REMASKED, ""
                remasked.append(i)
            else:
                self.kinds[i], self.texts[i] = NEW, self.text(token)
                revealed.append([i, self.texts[i], round(float(confidence[i]), 4)])
        self.tokens = tokens
        self.masked = int((tokens == self.mask_id).sum())
        return {"revealed": revealed, "remasked": remasked, "masked": self.masked}

    def settle(self) -> None:
        """The generation is over: last step's highlights become plain text."""
        for i in self.recent:
            self.kinds[i] = SETTLED if self.kinds[i] == NEW else MASKED
        self.recent = []


@dataclass
class Clock:
    """Compute time (inside the sampler) apart from wall time (animation pacing included)."""

    started: float = field(default_factory=time.perf_counter)
    compute: float = 0.0
    tokens: int = 0  # positions filled so far, over all rows

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.compute if self.compute > 0 else 0.0

    def stats(self, event: StepEvent | None) -> dict:
        out = {"seconds": round(self.compute, 4), "elapsed": round(self.elapsed, 3),
               "tokens": self.tokens, "tokens_per_second": round(self.tokens_per_second, 1)}
        if event is not None:
            out.update(step=event.step, steps=event.steps, network_calls=event.network_calls)
        return out


def timed(events: Iterator[StepEvent], clock: Clock, generated: int) -> Iterator[StepEvent]:
    """The stream, with the time spent producing each event added to `clock.compute` and the
    filled positions (`generated` per row minus what is still masked) kept in `clock.tokens`."""
    while True:
        t = time.perf_counter()
        event = next(events, None)
        clock.compute += time.perf_counter() - t
        if event is None:
            return
        clock.tokens = generated * event.tokens.shape[0] - int(event.masked.sum())
        yield event


def final_texts(tokenizer, prompt: str, request: SampleRequest, tokens: torch.Tensor
                ) -> list[str]:
    """The texts `unmask sample` prints: the prompt, then the decoded generated span."""
    P = len(request.prompt_ids)
    return [prompt + tokenizer.decode(row[P:].tolist()) for row in tokens]


def start_frame(view: RowView, policy: str, request: SampleRequest, seed: int) -> dict:
    return {"type": "start", "policy": policy, "seed": seed, "length": request.length,
            "steps": request.steps, "generated": view.generated,
            "cells": [[text, kind] for text, kind in zip(view.texts, view.kinds)]}


def step_frame(view: RowView, event: StepEvent, clock: Clock) -> dict:
    return {"type": "step", **view.update(event), **clock.stats(event)}
