"""Loaders of clean training windows and passages, each with its own explicit generator."""

from __future__ import annotations

import torch


def random_windows(tokens: torch.Tensor, batch_size: int, block_size: int,
                   generator: torch.Generator) -> torch.Tensor:
    """(B, L) windows at uniformly random offsets, gathered in one indexing op."""
    starts = torch.randint(0, len(tokens) - block_size, (batch_size,), generator=generator)
    return tokens[starts[:, None] + torch.arange(block_size)]


def contiguous_windows(tokens: torch.Tensor, block_size: int, max_windows: int | None = None
                       ) -> torch.Tensor:
    """Non-overlapping (N, L) windows from the start of a split: a fixed evaluation set."""
    n = len(tokens) // block_size
    if max_windows is not None:
        n = min(n, max_windows)
    return tokens[: n * block_size].view(n, block_size)


class WindowLoader:
    """Random training windows with an explicit generator, so resume continues the stream."""

    def __init__(self, tokens: torch.Tensor, batch_size: int, block_size: int, seed: int):
        self.tokens, self.batch_size, self.block_size = tokens, batch_size, block_size
        self.generator = torch.Generator().manual_seed(seed)

    def next_batch(self) -> torch.Tensor:
        return random_windows(self.tokens, self.batch_size, self.block_size, self.generator)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class PassageLoader:
    """Random (passage, label) batches with an explicit generator, for classification."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randint(0, len(self.y), (self.batch_size,), generator=self.generator)
        return self.x[rows], self.y[rows]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
