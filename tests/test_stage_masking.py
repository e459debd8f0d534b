import math
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unmask.noise.stages import (
    MASKING_STRATEGIES,
    apply_stage_masking,
    bert_corruption,
    mixed_stage_masking,
    random_ratio_mask,
    sticky_mask,
)

MASK = 99
FAST = settings(max_examples=8, deadline=None)
seeds = st.integers(0, 2**31 - 1)



def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _runs_per_row(masked: torch.Tensor) -> torch.Tensor:
    """Number of maximal masked runs in each row."""
    starts = masked.clone()
    starts[:, 1:] &= ~masked[:, :-1]
    return starts.sum(dim=1).float()


def _mean_run_length(masked: torch.Tensor) -> float:
    return masked.sum().item() / max(1.0, _runs_per_row(masked).sum().item())


def _naive_sticky(batch, length, target_ratio, p1, p2, rng: random.Random, max_rounds=1000):
    """Reference: the same process written position by position with Python's RNG."""
    target = min(length, math.ceil(target_ratio * length - 1e-9))
    rows = []
    for _ in range(batch):
        row = [False] * length
        for _ in range(max_rounds):
            need = target - sum(row)
            if need <= 0:
                break
            new = []
            for j in range(length):
                if row[j]:
                    continue
                near = (j > 0 and row[j - 1]) or (j + 1 < length and row[j + 1])
                if rng.random() < (p2 if near else p1):
                    new.append(j)
            if len(new) > need:  # the round would overshoot: keep a random subset
                new = rng.sample(new, need)
            for j in new:
                row[j] = True
        need = target - sum(row)
        if need > 0:
            for j in rng.sample([j for j in range(length) if not row[j]], need):
                row[j] = True
        rows.append(row)
    return torch.tensor(rows)


# --- sticky ------------------------------------------------------------------------------------

@given(seed=seeds, batch=st.integers(1, 32), length=st.integers(1, 96),
       target=st.floats(0.05, 1.0), p1=st.floats(0.05, 1.0), p2=st.floats(0.0, 1.0))
@FAST
def test_sticky_hits_target_count_exactly(seed, batch, length, target, p1, p2):
    masked = sticky_mask((batch, length), target, p1, p2, _gen(seed))
    assert masked.dtype == torch.bool and masked.shape == (batch, length)
    want = min(length, math.ceil(target * length - 1e-9))
    # Every row reaches the target and none overshoots: the last round is trimmed.
    assert torch.equal(masked.sum(dim=1), torch.full((batch,), want))
    assert (masked.float().mean(dim=1) >= target - 1e-9).all()


def test_sticky_target_zero_masks_nothing_and_p1_zero_is_rejected():
    assert not sticky_mask((4, 32), 0.0, 0.0, 0.5, _gen(0)).any()
    with pytest.raises(ValueError, match="p1_probability"):
        sticky_mask((4, 32), 0.3, 0.0, 0.5, _gen(0))
    with pytest.raises(ValueError, match="target_masked_ratio"):
        sticky_mask((4, 32), 1.5, 0.1, 0.5, _gen(0))


def test_sticky_fills_the_deficit_when_rounds_run_out():
    masked = sticky_mask((16, 64), 0.5, 0.01, 0.0, _gen(3), max_rounds=1)
    assert torch.equal(masked.sum(dim=1), torch.full((16,), 32))


@given(seed=seeds, target=st.floats(0.2, 0.6), p1=st.floats(0.05, 0.1),
       p2_low=st.floats(0.0, 0.5), gap=st.floats(0.3, 0.5))
@FAST
def test_sticky_runs_grow_with_p2(seed, target, p1, p2_low, gap):
    gen = _gen(seed)
    low = sticky_mask((256, 64), target, p1, p2_low, gen)
    high = sticky_mask((256, 64), target, p1, p2_low + gap, gen)
    assert _mean_run_length(high) > _mean_run_length(low)


@pytest.mark.parametrize("target,p1,p2", [(0.4, 0.15, 0.3), (0.6, 0.1, 0.8), (0.25, 0.05, 0.0),
                                          (0.3, 0.5, 0.9)])
def test_sticky_matches_naive_reference_in_distribution(target, p1, p2):
    batch, length = 2000, 40
    fast = sticky_mask((batch, length), target, p1, p2, _gen(11))
    slow = _naive_sticky(batch, length, target, p1, p2, random.Random(12))
    assert torch.equal(fast.sum(1), slow.sum(1))  # same exact per-row count
    # Count is fixed, so the runs per row determine the mean run length; compare their means
    # within five standard errors of the difference of two independent sample means.
    a, b = _runs_per_row(fast), _runs_per_row(slow)
    stderr = math.sqrt(a.var().item() / batch + b.var().item() / batch)
    assert abs(a.mean().item() - b.mean().item()) <= 5 * stderr + 1e-6, (a.mean(), b.mean())
    # The masked-position profile along the sequence agrees too (edges have one neighbour).
    edge_fast, edge_slow = fast[:, [0, -1]].float().mean(), slow[:, [0, -1]].float().mean()
    assert abs(edge_fast - edge_slow) <= 5 * math.sqrt(2 * 0.25 / (2 * batch))


# --- random ------------------------------------------------------------------------------------

@given(seed=seeds, max_ratio=st.floats(0.05, 1.0))
@FAST
def test_random_ratio_is_uniform_up_to_max(seed, max_ratio):
    batch, length = 1000, 2048
    masked = random_ratio_mask((batch, length), max_ratio, _gen(seed))
    ratios = masked.float().mean(dim=1)
    noise = math.sqrt(max_ratio * (1 - max_ratio) / length + 1e-12)  # binomial sd at worst
    assert ratios.max().item() <= max_ratio + 5 * noise
    # E[ratio] = max/2; Var = max^2/12 plus at most the binomial part.
    sd = math.sqrt(max_ratio**2 / 12 + noise**2)
    assert abs(ratios.mean().item() - max_ratio / 2) <= 5 * sd / math.sqrt(batch)
    # Kolmogorov-Smirnov distance to U(0, max): 1.95/sqrt(n) is the 0.1% critical value; the
    # binomial noise blurs the CDF by at most about noise/max more.
    sorted_r = ratios.sort().values / max_ratio
    ecdf_hi = torch.arange(1, batch + 1) / batch
    ks = torch.maximum(ecdf_hi - sorted_r.clamp(0, 1), sorted_r.clamp(0, 1) - (ecdf_hi - 1 / batch))
    assert ks.max().item() <= 1.95 / math.sqrt(batch) + 2 * noise / max_ratio


# --- BERT corruption ---------------------------------------------------------------------------

@given(seed=seeds)
@FAST
def test_bert_corruption_is_80_10_10_on_masked_only(seed):
    vocab = 50
    gen = _gen(seed)
    x = torch.randint(0, vocab, (64, 512), generator=gen)
    masked = random_ratio_mask(x.shape, 0.6, gen)
    out = bert_corruption(x, masked, MASK, vocab, gen)
    assert torch.equal(out[~masked], x[~masked])
    n = masked.sum().item()
    got_mask = (out[masked] == MASK).float().mean().item()
    got_changed = ((out[masked] != MASK) & (out[masked] != x[masked])).float().mean().item()
    assert (out[masked & (out != MASK)] < vocab).all()
    # A random token equals the original with probability 1/V, so "changed" is 0.1 * (1 - 1/V).
    for got, p in ((got_mask, 0.8), (got_changed, 0.1 * (1 - 1 / vocab))):
        assert abs(got - p) <= 5 * math.sqrt(p * (1 - p) / n)


# --- stage dispatch and mixing -----------------------------------------------------------------

STICKY = {"type": "sticky", "target_masked_ratio": 0.25, "p1_probability": 0.15,
          "p2_probability": 0.3, "val_loss_stale_count": 6}
RANDOM = {"type": "random", "max_masked_ratio": 0.5, "val_loss_stale_count": 5}


def test_apply_stage_masking_dispatches_and_rejects_unknown_types():
    x0 = torch.randint(0, 50, (8, 32), generator=_gen(0))
    assert set(MASKING_STRATEGIES) == {"sticky", "random"}
    xt, masked = apply_stage_masking(x0, STICKY, MASK, _gen(1))
    assert torch.equal(masked, sticky_mask((8, 32), 0.25, 0.15, 0.3, _gen(1)))
    assert torch.equal(xt, torch.where(masked, MASK, x0))
    xt, masked = apply_stage_masking(x0, RANDOM, MASK, _gen(2))
    assert torch.equal(masked, random_ratio_mask((8, 32), 0.5, _gen(2)))
    with pytest.raises(ValueError, match="sticky"):
        apply_stage_masking(x0, {"type": "span"}, MASK, _gen(0))


@given(seed=seeds)
@settings(max_examples=5, deadline=None)
def test_mixed_stage_masking_picks_stages_uniformly_and_uses_their_masks(seed):
    stages = [STICKY, dict(STICKY, target_masked_ratio=0.5, p2_probability=0.8), RANDOM]
    batch, length = 1500, 32
    x0 = torch.randint(0, 50, (batch, length), generator=_gen(seed + 1))
    xt, masked, index = mixed_stage_masking(x0, stages, MASK, _gen(seed))
    counts = torch.bincount(index, minlength=3).float()
    assert abs(counts - batch / 3).max() <= 5 * math.sqrt(batch * (1 / 3) * (2 / 3))
    # Replay the documented draw order: indices, then each stage's mask for the whole batch.
    gen = _gen(seed)
    assert torch.equal(torch.randint(3, (batch,), generator=gen), index)
    expected = [apply_stage_masking(x0, s, MASK, gen)[1] for s in stages]
    for k in range(3):
        rows = index == k
        assert torch.equal(masked[rows], expected[k][rows])
    assert (masked[index == 0].sum(1) == 8).all() and (masked[index == 1].sum(1) == 16).all()
    assert torch.equal(xt, torch.where(masked, MASK, x0))
