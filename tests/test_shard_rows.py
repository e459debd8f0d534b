"""`shard_rows`: rank r of N keeps rows [r B, (r + 1) B) of every global-batch tensor, in nested
dataclasses too; other values pass through; one process gets the batch itself."""

from dataclasses import dataclass

import pytest
import torch

from unmask.objectives.base import Batch, shard_rows


@dataclass
class Inner:
    masked: torch.Tensor  # (8, 5): rows
    rate: torch.Tensor  # (8,): rows
    table: torch.Tensor  # (3, 8): not rows
    scale: float


@dataclass
class Outer(Batch):
    t: torch.Tensor  # (8,)
    step_weight: torch.Tensor  # 0-dim
    inner: Inner
    kind: type = int  # a class is not a dataclass instance: passes through


def _batch() -> Outer:
    g = torch.Generator().manual_seed(0)
    return Outer(torch.arange(40).view(8, 5), torch.randn(8, 5, generator=g), torch.rand(8),
                 torch.tensor(0.5), Inner(torch.rand(8, 5, generator=g) < 0.5,
                                          torch.rand(8, generator=g), torch.rand(3, 8), 2.0))


def test_one_process_gets_the_batch_itself():
    batch = _batch()
    assert shard_rows(batch, 0, 1) is batch


@pytest.mark.parametrize("world", [2, 4, 8])
def test_each_rank_keeps_its_rows_and_the_shards_make_the_batch(world):
    batch, per = _batch(), 8 // world
    shards = [shard_rows(batch, r, world) for r in range(world)]
    for r, s in enumerate(shards):
        rows = slice(r * per, (r + 1) * per)
        assert torch.equal(s.inputs, batch.inputs[rows]) and s.inputs.size(0) == per
        assert torch.equal(s.targets, batch.targets[rows]) and torch.equal(s.t, batch.t[rows])
        assert torch.equal(s.inner.masked, batch.inner.masked[rows])
        assert torch.equal(s.inner.rate, batch.inner.rate[rows])
        assert s.inner.table is batch.inner.table and s.inner.scale == 2.0
        assert s.step_weight is batch.step_weight and s.kind is int
        assert isinstance(s, Outer) and isinstance(s.inner, Inner)
    assert torch.equal(torch.cat([s.inputs for s in shards]), batch.inputs)


def test_a_batch_that_does_not_divide_is_refused():
    with pytest.raises(ValueError) as err:
        shard_rows(_batch(), 0, 3)
    assert str(err.value) == "global batch 8 is not divisible by 3 ranks"
