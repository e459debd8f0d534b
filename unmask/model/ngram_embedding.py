"""Hashed n-gram embeddings (the Byte Latent Transformer's, Pagnoni et al. 2024, section 3.2.1,
made two-sided for a bidirectional model).

Each position also receives the embeddings of the n-grams (n = 3 .. `max_n`) that end at it
and that start at it, each hashed into `buckets` rows of its own (n, side) table; the sum is
added to the token embedding. A character model otherwise spends its first layers assembling
such n-grams from single characters. The lookups cost no matmul FLOPs; the tables start at
zero, so a fresh model starts as the one without them. Bidirectional models only: an n-gram
that starts at a position reads the tokens after it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

HASH_MULTIPLIER = 1_000_003
HASH_MODULUS = 2_147_483_647  # 2^31 - 1: every intermediate stays far inside int64


def ngram_sizes(max_n: int) -> tuple[int, ...]:
    return tuple(range(3, max_n + 1))


def ngram_ids(tokens: torch.Tensor, sizes: tuple[int, ...], buckets: int, pad: int
              ) -> torch.Tensor:
    """(B, T, 2 * len(sizes)) row ids: for each n in `sizes`, the hash of the n-gram ending at
    each position, then of the one starting at it (positions past the ends read `pad`), each
    offset into its own block of `buckets` rows. A polynomial rolling hash of the ids + 1."""
    T, reach = tokens.size(1), max(sizes) - 1
    padded = F.pad(tokens.long(), (reach, reach), value=pad)  # (B, T + 2 * reach)
    hashes = {}  # (n, side) -> (B, T): one rolling hash per side, read off at each n
    for side in (-1, 1):  # ending at the position (reading left), starting at it (right)
        h = torch.zeros_like(tokens, dtype=torch.long)
        for j in range(max(sizes)):
            start = reach + side * j
            h = (h * HASH_MULTIPLIER + padded[:, start:start + T] + 1) % HASH_MODULUS
            hashes[j + 1, side] = h
    ids = [hashes[n, side] % buckets + k * buckets
           for k, (n, side) in enumerate((n, side) for n in sizes for side in (-1, 1))]
    return torch.stack(ids, dim=-1)


class NgramEmbedding(nn.Module):
    """(B, T) token ids -> (B, T, C): the sum of their hashed n-gram embeddings."""

    def __init__(self, vocab_size: int, width: int, max_n: int, buckets: int):
        super().__init__()
        self.sizes, self.buckets, self.pad = ngram_sizes(max_n), buckets, vocab_size
        self.table = nn.EmbeddingBag(2 * len(self.sizes) * buckets, width, mode="sum")
        nn.init.zeros_(self.table.weight)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, T = tokens.shape
        ids = ngram_ids(tokens, self.sizes, self.buckets, self.pad)
        return self.table(ids.view(B * T, -1)).view(B, T, -1)
