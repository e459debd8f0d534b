"""The ELBO and LLaDA estimators against values derived by hand on toy models (issue 14)."""

import math
import statistics

import pytest
import torch
import torch.nn as nn

from unmask.eval.estimators import estimate, estimate_draws, summarize

V, MASK, L = 5, 5, 12
WINDOWS = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 0],
                        [4, 4, 3, 2, 1, 0, 0, 1, 2, 3, 4, 4],
                        [2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 3, 4]])


class ContextFree(nn.Module):
    """Predicts every position from its position alone (logits table[i]), whatever is masked."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(L, V + 2, generator=torch.Generator()
                                              .manual_seed(0)))

    def forward(self, x):
        return self.table.expand(x.size(0), -1, -1)

    def nll(self, l_masked: int | None = None) -> torch.Tensor:
        """(L, V) -log p over the real tokens (independent of how many are masked)."""
        return -self.table[:, :V].double().log_softmax(-1)


class MaskCount(ContextFree):
    """Context enters through the number of masks l only: logits = table[i] * (1 + l / L)."""

    def forward(self, x):
        scale = 1 + (x == MASK).sum(-1, keepdim=True).float() / L  # (B, 1)
        return self.table[None] * scale[..., None]

    def nll(self, l_masked: int | None = None) -> torch.Tensor:
        return -(self.table[:, :V].double() * (1 + l_masked / L)).log_softmax(-1)


def exact_bound(model, windows) -> float:
    """sum_{l=1}^{L} (1/l) E_{|S|=l} [sum_{i in S} NLL_i(l)] / L, averaged over windows.
    For a predictor whose NLL depends on l only, E_{|S|=l}[sum_S NLL_i(l)] = (l/L) sum_i
    NLL_i(l), so the bound is (1/L^2) sum_l sum_i NLL_i(l); context-free: the mean NLL."""
    total = 0.0
    for w in windows:
        for l_masked in range(1, L + 1):
            with torch.no_grad():
                nll = model.nll(l_masked).gather(-1, w[:, None].long()).sum()
            total += float(nll) / L / L
    return total / len(windows)


@pytest.mark.parametrize("toy", [ContextFree, MaskCount])
@pytest.mark.parametrize("estimator", ["elbo", "llada"])
def test_means_match_the_exact_bound(toy, estimator):
    model = toy()
    exact = exact_bound(model, WINDOWS)
    result = estimate(model, WINDOWS, MASK, V, estimator, points=4, draws=400, seed=1)
    assert result.stderr > 0
    assert abs(result.mean - exact) < 4 * result.stderr, (result.mean, exact, result.stderr)
    assert abs(result.mean - exact) / exact < 0.05


def test_context_free_bound_is_the_mean_nll():
    model = ContextFree()
    with torch.no_grad():
        mean_nll = float(model.nll().gather(-1, WINDOWS.T.long()).mean())
    assert exact_bound(model, WINDOWS) == pytest.approx(mean_nll, rel=1e-12)


def _repeat(estimator, draws, seeds, points=4):
    model = MaskCount()
    return [estimate(model, WINDOWS, MASK, V, estimator, points=points, draws=draws,
                     seed=seed) for seed in seeds]


@pytest.mark.parametrize("estimator", ["elbo", "llada"])
def test_standard_error_shrinks_like_one_over_sqrt_n(estimator):
    """Averaged over repetitions: one ELBO draw is heavy-tailed (the 1/t weight of a rare
    small t with a masked token), so a single run's standard error is itself noisy."""
    small = _repeat(estimator, 25, range(20))
    large = _repeat(estimator, 100, range(100, 120))
    ratio = sum(e.stderr for e in large) / sum(e.stderr for e in small)
    assert ratio == pytest.approx(0.5, rel=0.25)


@pytest.mark.parametrize("estimator", ["elbo", "llada"])
def test_standard_error_is_calibrated(estimator):
    """The reported standard error matches the spread of independent repetitions' means."""
    runs = _repeat(estimator, 50, range(1000, 1040))
    spread = statistics.stdev(e.mean for e in runs)
    assert statistics.fmean(e.stderr for e in runs) == pytest.approx(spread, rel=0.35)


def test_llada_varies_less_than_the_elbo():
    model = MaskCount()
    elbo = estimate(model, WINDOWS, MASK, V, "elbo", points=1, draws=300, seed=4)
    llada = estimate(model, WINDOWS, MASK, V, "llada", points=1, draws=300, seed=4)
    assert llada.std_per_draw < elbo.std_per_draw


def test_standard_error_formula_by_hand():
    values = torch.tensor([[1.0, 3.0], [2.0, 2.0], [0.0, 4.0]], dtype=torch.float64)
    result = summarize(values, "elbo", 1)
    # window variances 2, 0, 8 (unbiased); stderr = sqrt((2 + 0 + 8) / 2) / 3
    assert result.mean == pytest.approx(2.0)
    assert result.stderr == pytest.approx(math.sqrt(5) / 3)
    assert summarize(values[:, :1], "elbo", 1).stderr is None


def test_per_total_token_and_deterministic():
    """The same seed gives the same draws at any batch size; a uniform predictor scores
    log V per token (divided by all L tokens, not by the masked ones)."""
    model = MaskCount()
    a = estimate_draws(model, WINDOWS, MASK, V, "llada", points=3, draws=2, seed=5,
                       batch_size=6)
    b = estimate_draws(model, WINDOWS, MASK, V, "llada", points=3, draws=2, seed=5,
                       batch_size=64)
    assert torch.allclose(a, b) and a.shape == (3, 2)
    uniform = UniformModel()  # -log p = log V at every position, masked or not
    llada = estimate(uniform, WINDOWS, MASK, V, "llada", points=3, draws=4)
    assert llada.mean == pytest.approx(math.log(V), rel=1e-6)  # per ALL tokens: exactly
    assert llada.stderr == pytest.approx(0.0, abs=1e-6)  # (L / l) * l * log V / L, every draw
    elbo = estimate(uniform, WINDOWS, MASK, V, "elbo", points=8, draws=200, seed=6)
    assert abs(elbo.mean - math.log(V)) < 4 * elbo.stderr


class UniformModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.zeros(*x.shape, V + 2)
