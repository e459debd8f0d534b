"""The MDLM ELBO's per-row 1/t weight, and the deterministic evaluator against an exact value.

1. `masked_diffusion_loss` on a batch whose rows have different t, against a float64 hand
   loop over rows and positions: sum over masked positions of -log softmax(real logits)[x0]
   / t_b. The test also computes two plausible wrong versions (every row weighted by
   1 / mean(t); the softmax over the extended vocabulary, [MASK] included) and checks that
   each lies far outside the tolerance, so it provably tells them apart.
2. `score_eval_set` with a context-free "model" p (the same distribution at every position,
   whatever the input). For such a p the ELBO's expectation over the masks is exact:
   position i is masked with probability t and then weighted by 1/t, so
   E_mask[(1/t) sum_{masked i} -log p(x_i)] = sum_i -log p(x_i) for every t, and the ELBO
   per token equals the mean NLL of p on the windows. The masks are the only randomness left
   once the eval set's times are fixed, and the variance they leave is known in closed form
   (see `_mask_variance`), so the tolerance is derived, not guessed.
"""

from __future__ import annotations

import math

import pytest
import torch

from unmask.eval.likelihood import build_eval_set, score_eval_set
from unmask.losses.likelihood import masked_diffusion_loss
from unmask.objectives.registry import make_objective

V, SPECIALS = 7, 3  # real tokens, then [MASK] and other specials (the extended vocabulary)


def _nll(row: list[float], target: int) -> float:
    """-log softmax(row)[target] in float64, by hand (no torch)."""
    top = max(row)
    return -(row[target] - top - math.log(sum(math.exp(v - top) for v in row)))


def hand_elbo_sum(logits, x0, masked, row_weight, vocab=V) -> float:
    """sum_b sum_{masked i} -log softmax(logits[b, i, :vocab])[x0[b, i]] * row_weight(b)."""
    total = 0.0
    for b in range(x0.size(0)):
        for i in range(x0.size(1)):
            if masked[b, i]:
                total += _nll(logits[b, i, :vocab].double().tolist(), int(x0[b, i])) \
                    * row_weight(b)
    return total


def _distinct_t_batch():
    gen = torch.Generator().manual_seed(0)
    B, L = 4, 9
    logits = 2.0 * torch.randn(B, L, V + SPECIALS, generator=gen)
    logits[..., V:] += 5.0  # the specials hold most of the extended-vocabulary mass
    x0 = torch.randint(0, V, (B, L), generator=gen)
    t = torch.tensor([0.05, 0.3, 0.55, 0.9])
    masked = torch.rand(B, L, generator=gen) < t[:, None]
    masked[:, 0] = True  # every row contributes
    return logits, x0, t, masked


def test_elbo_weights_each_row_by_its_own_time():
    logits, x0, t, masked = _distinct_t_batch()
    correct = hand_elbo_sum(logits, x0, masked, lambda b: 1.0 / float(t[b]))
    tol = 1e-5 * abs(correct)  # float32 logits against a float64 reference

    total, count = masked_diffusion_loss(logits, x0, masked, t, V)
    assert abs(float(total) - correct) < tol
    assert count == x0.numel()  # normalised per token of the batch, masked or not

    # What the test rules out: every row weighted by 1/mean(t) ...
    mean_t = float(t.mean())
    one_weight = hand_elbo_sum(logits, x0, masked, lambda b: 1.0 / mean_t)
    assert abs(one_weight - correct) > 1000 * tol
    # ... and the softmax over the extended vocabulary ([MASK] gets no mass under SUBS).
    full_vocab = hand_elbo_sum(logits, x0, masked, lambda b: 1.0 / float(t[b]),
                               vocab=V + SPECIALS)
    assert abs(full_vocab - correct) > 1000 * tol


def test_mdlm_training_loss_is_the_per_row_elbo(shakespeare):
    """The objective the trainer calls, on a real training batch (antithetic times: every
    row has its own t)."""
    from unmask.config.presets import resolve_config

    cfg = resolve_config("debug", {"train.progress": False, "train.objective": "mdlm",
                                   "model.vocab_size": 72})
    task = make_objective(cfg, shakespeare, torch.device("cpu"))
    batch = task.make_batch(task.make_loader(0).next_batch(), 0)
    assert batch.t.unique().numel() == batch.t.numel()  # distinct t per row
    logits = torch.randn(*batch.targets.shape, 72, generator=torch.Generator().manual_seed(1))
    vocab = shakespeare.tokenizer.vocab_size
    expected = hand_elbo_sum(logits, batch.targets, batch.masked,
                             lambda b: 1.0 / float(batch.t[b]), vocab=vocab)
    assert float(task.loss(logits, batch).total) == pytest.approx(expected, rel=1e-5)
    assert float(task.normaliser(batch)) == batch.targets.numel()
    # the masked inputs are what the model saw
    assert torch.equal(batch.inputs[batch.masked],
                       torch.full_like(batch.inputs[batch.masked], shakespeare.tokenizer.mask_id))
    assert torch.equal(batch.inputs[~batch.masked], batch.targets[~batch.masked])


class ContextFree(torch.nn.Module):
    """The same logits at every position, whatever the input: a unigram model."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*tokens.shape, -1)


def _mask_variance(c: torch.Tensor, t: torch.Tensor, n_t: int) -> float:
    """Variance of the evaluator's ELBO per token over the masks, given the eval set's times.

    Row r (window w at time t_r) adds (1/t_r) sum_i m_ri c_wi with m_ri ~ Bernoulli(t_r)
    independent, so Var = sum_r (1 - t_r)/t_r sum_i c_wi^2, divided by the token count
    squared. c: (N, L) per-token NLL of each window; t: (N * n_t,), window-major.
    """
    per_row = (c.double() ** 2).sum(1).repeat_interleave(n_t)
    tokens = c.numel() * n_t
    return float(((1 - t.double()) / t.double() * per_row).sum()) / tokens ** 2


def test_evaluator_elbo_of_a_context_free_model_is_its_mean_nll():
    gen = torch.Generator().manual_seed(0)
    N, L, n_t, V_real = 256, 128, 32, 12
    # windows from a skewed distribution q; the model's p is a different one
    q = torch.softmax(torch.randn(V_real, generator=gen), 0)
    windows = torch.multinomial(q, N * L, replacement=True, generator=gen).view(N, L)
    logits = torch.randn(V_real + SPECIALS, generator=gen)
    logits[q.argmax()] = logits[:V_real].max() + 0.5  # p's favourite is q's most common token
    logits[V_real:] = logits[:V_real].max() + 4.0  # specials win a full-vocabulary argmax
    model = ContextFree(logits)
    mask_id = V_real

    logp = torch.log_softmax(logits[:V_real].double(), 0)
    c = -logp[windows]  # (N, L) NLL of every token under p
    exact = float(c.mean())

    eval_set = build_eval_set(windows, mask_id, n_t, seed=0)
    result = score_eval_set(model, eval_set, V_real, batch_size=512)
    assert result == score_eval_set(model, eval_set, V_real, batch_size=512)  # deterministic

    # Chebyshev: |error| >= 10 sd has probability <= 1 % for any seed, whatever the tails
    # (small t makes 1/t heavy-tailed, so no normal approximation is assumed). The seed is
    # fixed, so the test is deterministic; the bound says it was not picked to pass.
    tol = 10 * math.sqrt(_mask_variance(c, eval_set.t, n_t))
    assert tol < 0.04 * exact  # tight enough to catch a missing 1/t (x0.5) or a bias of 4 %
    assert result["elbo_nats_per_char"] == pytest.approx(exact, abs=tol)
    assert result["elbo_bits_per_char"] == pytest.approx(exact / math.log(2), abs=tol)

    # Accuracy: argmax over the real tokens (the specials' larger logits ignored), counted
    # on the masked positions of the eval set.
    best = int(logits[:V_real].argmax())
    hits = int(((eval_set.x0 == best) & eval_set.masked).sum()) / int(eval_set.masked.sum())
    assert result["masked_accuracy"] == hits
    assert hits == pytest.approx(float(q.max()), abs=0.02)  # an argmax over all ids scores 0


def test_evaluator_averaged_over_mask_seeds_converges_to_the_mean_nll():
    """Unbiasedness, the other way: the mean over independent mask seeds of the evaluator's
    estimate approaches the exact value; its error shrinks like 1 / sqrt(seeds)."""
    gen = torch.Generator().manual_seed(1)
    N, L, n_t, V_real = 16, 32, 8, 12
    windows = torch.randint(0, V_real, (N, L), generator=gen)
    logits = torch.randn(V_real + SPECIALS, generator=gen)
    model = ContextFree(logits)
    c = -torch.log_softmax(logits[:V_real].double(), 0)[windows]
    exact = float(c.mean())

    seeds = 64
    estimates, variances = [], []
    for seed in range(seeds):
        eval_set = build_eval_set(windows, V_real, n_t, seed=seed)
        estimates.append(score_eval_set(model, eval_set, V_real)["elbo_nats_per_char"])
        variances.append(_mask_variance(c, eval_set.t, n_t))
    mean = sum(estimates) / seeds
    # given the drawn times, the seeds' estimates are independent and each is unbiased
    sd_of_mean = math.sqrt(sum(variances)) / seeds
    assert abs(mean - exact) < 10 * sd_of_mean  # Chebyshev, as above
    single_errors = sorted(abs(e - exact) for e in estimates)
    assert abs(mean - exact) < single_errors[seeds // 2]  # better than a typical single seed
