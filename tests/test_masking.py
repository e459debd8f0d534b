import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unmask.noise.masking import mask_tokens, sample_times

MASK = 99


def _x0(b=4, l=256):
    return torch.randint(0, 50, (b, l), generator=torch.Generator().manual_seed(1))


@given(seed=st.integers(0, 2**31 - 1))
@settings(max_examples=30, deadline=None)
def test_t0_masks_nothing_and_t1_masks_everything(seed):
    x0, gen = _x0(), torch.Generator().manual_seed(seed)
    xt, masked = mask_tokens(x0, torch.zeros(4), MASK, gen)
    assert not masked.any() and torch.equal(xt, x0)
    xt, masked = mask_tokens(x0, torch.ones(4), MASK, gen)
    assert masked.all() and (xt == MASK).all()


@given(t=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
@settings(max_examples=50, deadline=None)
def test_mean_mask_ratio_is_t(t, seed):
    x0 = torch.zeros(64, 512, dtype=torch.long)
    xt, masked = mask_tokens(x0, torch.full((64,), t), MASK, torch.Generator().manual_seed(seed))
    n = masked.numel()
    tolerance = 5 * (t * (1 - t) / n) ** 0.5 + 1e-9  # five binomial standard deviations
    assert abs(masked.float().mean().item() - t) <= tolerance
    assert torch.equal(xt == MASK, masked)  # masked positions, and only those, hold [MASK]


@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 64))
@settings(max_examples=30, deadline=None)
def test_antithetic_times_are_stratified(seed, batch):
    t = sample_times(batch, torch.Generator().manual_seed(seed), antithetic=True, t_min=0.0)
    strata = torch.sort((t * batch).floor().long()).values
    assert torch.equal(strata, torch.arange(batch))  # exactly one time in each 1/B stratum


def test_times_respect_t_min_and_are_uniform():
    t = sample_times(20000, torch.Generator().manual_seed(0), antithetic=False, t_min=0.01)
    assert t.min() >= 0.01 and t.max() < 1.0
    assert abs(t.mean().item() - 0.505) < 0.01


def test_same_generator_seed_same_masks():
    x0 = _x0()
    a = mask_tokens(x0, torch.full((4,), 0.5), MASK, torch.Generator().manual_seed(3))
    b = mask_tokens(x0, torch.full((4,), 0.5), MASK, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0])
