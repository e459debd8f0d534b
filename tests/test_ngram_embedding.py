"""Hashed n-gram embeddings (model/ngram_embedding.py): the ids against a plain loop, what each
n-gram may read, a fresh model equal to the one without them, and the config's guards."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unmask.config.io import ConfigError
from unmask.config.schema import ModelConfig
from unmask.model.ngram_embedding import (
    HASH_MODULUS,
    HASH_MULTIPLIER,
    NgramEmbedding,
    ngram_ids,
)
from unmask.model.transformer import Transformer

TINY = dict(n_layer=2, n_head=2, n_embd=16, block_size=12, vocab_size=11)


def reference_ids(row: list[int], sizes, buckets: int, pad: int) -> list[list[int]]:
    """The same ids by a plain loop over positions: Python integers, explicit n-gram tuples."""
    def at(i):
        return row[i] if 0 <= i < len(row) else pad

    out = []
    for i in range(len(row)):
        ids = []
        for n in sizes:
            for gram in ([at(i - j) for j in range(n)], [at(i + j) for j in range(n)]):
                h = 0
                for token in gram:  # nearest first, as the vectorised hash reads them
                    h = (h * HASH_MULTIPLIER + token + 1) % HASH_MODULUS
                ids.append(h % buckets + len(ids) * buckets)
        out.append(ids)
    return out


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 10), min_size=1, max_size=9), min_size=1, max_size=3)
       .filter(lambda rows: len({len(r) for r in rows}) == 1),
       st.integers(3, 6), st.integers(1, 97))
def test_ids_match_a_plain_loop(rows, max_n, buckets):
    sizes = tuple(range(3, max_n + 1))
    ids = ngram_ids(torch.tensor(rows), sizes, buckets, pad=11)
    assert ids.shape == (len(rows), len(rows[0]), 2 * len(sizes))
    assert ids.tolist() == [reference_ids(r, sizes, buckets, 11) for r in rows]


def test_each_ngram_reads_only_its_own_tokens():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 11, (1, 20), generator=g)
    base = ngram_ids(tokens, (3, 4), 1 << 20, pad=11)
    changed = tokens.clone()
    changed[0, 10] = (changed[0, 10] + 1) % 11
    moved = (ngram_ids(changed, (3, 4), 1 << 20, pad=11) != base)[0]  # (T, 4)
    # columns: 3 ending, 3 starting, 4 ending, 4 starting at each position
    for column, (n, side) in enumerate([(3, -1), (3, 1), (4, -1), (4, 1)]):
        reads_10 = [i for i in range(20) if (i - n < 10 <= i if side < 0 else i <= 10 < i + n)]
        assert torch.nonzero(moved[:, column]).flatten().tolist() == reads_10


def test_a_fresh_model_computes_what_the_model_without_them_does():
    plain = Transformer(ModelConfig(**TINY))
    with_ngrams = Transformer(ModelConfig(**TINY, ngram_max=4, ngram_buckets=32))
    missing, unexpected = with_ngrams.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["ngrams.table.weight"] and unexpected == []
    tokens = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(with_ngrams(tokens), plain(tokens), rtol=0, atol=0)
    with_ngrams(tokens).float().pow(2).sum().backward()  # and the tables do learn
    grad = with_ngrams.ngrams.table.weight.grad
    rows = ngram_ids(tokens, (3, 4), 32, pad=11).unique()
    assert grad[rows].abs().sum(-1).gt(0).all()
    untouched = torch.ones(len(grad), dtype=torch.bool)
    untouched[rows] = False
    assert grad[untouched].eq(0).all()


def test_embedding_is_the_sum_of_its_rows():
    module = NgramEmbedding(vocab_size=11, width=4, max_n=3, buckets=5)
    torch.nn.init.normal_(module.table.weight, generator=torch.Generator().manual_seed(2))
    tokens = torch.tensor([[1, 2, 3, 4]])
    ids = ngram_ids(tokens, (3,), 5, pad=11)
    expected = module.table.weight[ids[0]].sum(-2)
    torch.testing.assert_close(module(tokens)[0], expected)


def test_config_guards():
    with pytest.raises(ConfigError, match="ngram_max must be 0 \\(off\\) or >= 3"):
        ModelConfig(**TINY, ngram_max=2)
    with pytest.raises(ConfigError, match="ngram_max needs a bidirectional model"):
        ModelConfig(**TINY, ngram_max=3, mode="language_model")
