"""What the estimators' API promises beyond their means (tests/test_estimators.py): documented
defaults, batch-size invariance, float64 draws, the stratified noise, the summary by hand."""

import math

import pytest
import torch

from tests.test_estimators import MASK, V, WINDOWS, MaskCount
from unmask.eval.estimators import Estimate, _noise, estimate, estimate_draws, summarize


def test_defaults_are_elbo_8_points_2_draws_seed_0():
    model = MaskCount()
    default = estimate(model, WINDOWS, MASK, V)
    explicit = estimate(model, WINDOWS, MASK, V, "elbo", points=8, draws=2, seed=0,
                        batch_size=64)
    assert default == explicit and (default.estimator, default.points, default.draws) == (
        "elbo", 8, 2)
    for changed in ({"points": 9}, {"draws": 3}, {"seed": 1}):
        assert estimate(model, WINDOWS, MASK, V, **changed).mean != default.mean, changed


@pytest.mark.parametrize("estimator", ["elbo", "llada"])
def test_draws_are_float64_and_independent_of_the_batch_size(estimator):
    model = MaskCount()
    ref = estimate_draws(model, WINDOWS, MASK, V, estimator, points=4, draws=3, batch_size=1000)
    assert ref.dtype == torch.float64 and ref.shape == (3, 3)
    for batch_size in (1, 5, 36, 0):  # 0 and 1: one row at a time
        got = estimate_draws(model, WINDOWS, MASK, V, estimator, points=4, draws=3,
                             batch_size=batch_size)
        assert torch.allclose(got, ref, rtol=1e-12, atol=1e-12), batch_size


@pytest.mark.parametrize("kwargs, message", [
    ({"estimator": "elbow"}, "unknown estimator 'elbow'; choose one of ('elbo', 'llada')"),
    ({"points": 0}, "points and draws must be >= 1"),
    ({"draws": 0}, "points and draws must be >= 1"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError) as err:
        estimate_draws(MaskCount(), WINDOWS, MASK, V, **kwargs)
    assert str(err.value) == message


def test_one_point_one_draw_is_allowed():
    values = estimate_draws(MaskCount(), WINDOWS, MASK, V, points=1, draws=1)
    assert values.shape == (3, 1) and bool(torch.isfinite(values).all())


def test_llada_noise_masks_each_count_once_per_draw():
    """With points = L the strata give each count l = 1..L exactly once per draw, and a row
    masks exactly l positions, weighted 1 / l."""
    L, draws = 12, 3
    masked, weight = _noise("llada", draws * L, L, L, torch.Generator().manual_seed(0))
    counts = masked.sum(-1).view(draws, L)
    for row in counts:
        assert sorted(row.tolist()) == list(range(1, L + 1))
    assert torch.equal(weight, 1.0 / masked.sum(-1).double())
    # the masked positions of a count are a uniform random subset: every column is used
    assert bool((masked.sum(0) > 0).all())


def test_elbo_noise_masks_about_t_and_weights_one_over_t_l():
    L, points, draws = 400, 4, 2
    masked, weight = _noise("elbo", draws * points, L, points, torch.Generator().manual_seed(1))
    t = 1.0 / (weight * L)
    assert bool(((t >= 0) & (t < 1)).all())
    share = masked.double().mean(-1)
    assert torch.allclose(share, t.double(), atol=5 * math.sqrt(0.25 / L))
    strata = (t.view(draws, points) * points).floor()
    assert torch.equal(strata, torch.arange(points).double().expand(draws, -1))


def test_summary_by_hand():
    est = summarize(torch.tensor([[1.0, 3.0], [2.0, 2.0]], dtype=torch.float64), "llada", 5)
    # mean 2; window variances 2 and 0: stderr = sqrt((2 + 0) / 2) / 2, std per draw sqrt(1)
    assert est == Estimate("llada", 2.0, 0.5, 1.0, 2, 2, 5)
    one = summarize(torch.tensor([[1.0], [2.0], [6.0]], dtype=torch.float64), "elbo", 7)
    assert one == Estimate("elbo", 3.0, None, None, 3, 1, 7)


def test_json_adds_bits():
    out = Estimate("elbo", 2.0, 0.1, 0.3, 4, 2, 8).to_json()
    assert out == {"estimator": "elbo", "mean": 2.0, "stderr": 0.1, "std_per_draw": 0.3,
                   "windows": 4, "draws": 2, "points": 8, "mean_bits": 2.0 / math.log(2)}
