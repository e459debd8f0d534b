"""Monte-Carlo estimates of a masked-diffusion model's likelihood bound, with their standard error.

Both estimate the same number, the MDLM bound per token (Sahoo et al. 2024, eq. 10, linear
schedule), always divided by ALL L tokens of a window, never by the masked ones (that would
not be a bound):

- `elbo`: E_t E_{x_t ~ q(.|x, t)} [ (1/t) sum_{i masked} -log p(x_i | x_t) ] / L, each draw
  at `points` stratified times t_k = (k + u) / points (one uniform u per draw);
- `llada`: LLaDA's lower-variance form (Nie et al. 2025, eq. 12):
  E_{l ~ U{1..L}} E_{exactly l masked} [ (L / l) sum_{i masked} -log p(x_i | x_l) ] / L, each
  draw at `points` stratified counts l_k = floor((k + u) L / points) + 1.

They agree in expectation: given t, the number of masks l is Binomial(L, t) and the masked
set is uniform among sets of that size, and E_t[(1/t) P(l | t)] = 1/l, so both equal
sum_{l=1}^{L} (1/l) E_{|S|=l}[sum_{i in S} -log p(x_i | x_S)] / L. The `llada` form removes
the randomness of l given t, so its draws vary less. An `elbo` draw is heavy-tailed: a small t
that still masks a token is weighted 1/t, and the variance grows like log(1 / t_min) (t is
clamped at 1e-4, as in eval/likelihood.py), so its standard error converges slowly and one
run's standard error is itself noisy; `llada` draws have no such tail.

Each window is scored `draws` times with independent noise; the standard error is the
Monte-Carlo one (the text held fixed): sqrt(sum_w s_w^2 / R) / N for N windows, R draws
and s_w^2 the sample variance of window w's draws. It shrinks like 1 / sqrt(N R).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from unmask.eval.likelihood import evaluating
from unmask.losses.likelihood import token_nll

ESTIMATORS = ("elbo", "llada")


@dataclass
class Estimate:
    """One estimator's result, per token, in nats."""

    estimator: str
    mean: float
    stderr: float | None  # Monte-Carlo standard error of `mean` (None with one draw)
    std_per_draw: float | None  # spread of a single draw of a window (compare estimators)
    windows: int
    draws: int
    points: int

    def to_json(self) -> dict:
        out = asdict(self)
        out["mean_bits"] = self.mean / math.log(2)
        return out


def _noise(estimator: str, n_rows: int, L: int, points: int, generator: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked (R*P, L) bool, weight (R*P,)) for n_rows // points draws of `points` each:
    row value = weight * sum of the masked tokens' NLL, per token of the window."""
    draws = n_rows // points
    u = torch.rand(draws, 1, generator=generator)
    strata = (torch.arange(points)[None, :] + u) / points  # (draws, points) in [0, 1)
    keys = torch.rand(n_rows, L, generator=generator)
    if estimator == "elbo":
        t = strata.flatten().clamp_min(1e-4)
        return keys < t[:, None], 1.0 / (t * L)
    l_count = (strata.flatten() * L).floor().long().clamp(0, L - 1) + 1  # in 1..L
    rank = keys.argsort(-1).argsort(-1)  # a uniform random order of the positions
    return rank < l_count[:, None], 1.0 / l_count.double()


def estimate_draws(model, windows: torch.Tensor, mask_id: int, vocab_size: int,
                   estimator: str = "elbo", *, points: int = 8, draws: int = 2, seed: int = 0,
                   batch_size: int = 64) -> torch.Tensor:
    """(N, draws) float64: each draw's per-token estimate for each window (see module doc).

    The noise is drawn up front from one CPU generator seeded with `seed`: the same call
    gives the same numbers on any device and at any batch size."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")
    if points < 1 or draws < 1:
        raise ValueError("points and draws must be >= 1")
    N, L = windows.shape
    rows_per_window = draws * points
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    values = torch.empty(N * rows_per_window, dtype=torch.float64)
    per_batch = max(1, batch_size)
    x0_all = windows.repeat_interleave(rows_per_window, dim=0)
    masked_all, weight_all = _noise(estimator, x0_all.size(0), L, points, generator)
    with evaluating(model):
        for start in range(0, x0_all.size(0), per_batch):
            x0 = x0_all[start:start + per_batch]
            masked = masked_all[start:start + per_batch]
            weight = weight_all[start:start + per_batch]
            xt = torch.where(masked, mask_id, x0)
            logits = model(xt.to(device))
            nll = token_nll(logits, x0.to(device), vocab_size).double().cpu()
            values[start:start + x0.size(0)] = (nll * masked).sum(-1) * weight.double()
    return values.view(N, draws, points).mean(-1)


def summarize(values: torch.Tensor, estimator: str, points: int) -> Estimate:
    """Mean and Monte-Carlo standard error of (N, R) per-draw values (module doc)."""
    N, R = values.shape
    if R < 2:
        return Estimate(estimator, float(values.mean()), None, None, N, R, points)
    var = values.var(dim=1, unbiased=True)  # (N,) each window's draw-to-draw variance
    stderr = math.sqrt(float(var.sum()) / R) / N
    return Estimate(estimator, float(values.mean()), stderr, math.sqrt(float(var.mean())),
                    N, R, points)


def estimate(model, windows: torch.Tensor, mask_id: int, vocab_size: int,
             estimator: str = "elbo", *, points: int = 8, draws: int = 2, seed: int = 0,
             batch_size: int = 64) -> Estimate:
    """The bound per token with its Monte-Carlo standard error (module doc)."""
    values = estimate_draws(model, windows, mask_id, vocab_size, estimator, points=points,
                            draws=draws, seed=seed, batch_size=batch_size)
    return summarize(values, estimator, points)
