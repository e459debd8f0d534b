import math

import torch

from unmask.losses.likelihood import masked_diffusion_loss
from unmask.noise.masking import mask_tokens, sample_times
from unmask.train.optim import cosine_lr

V, MASK = 65, 65


def _elbo_estimate(logits_fn, n_batches=40, batch=64, length=128, seed=0):
    gen = torch.Generator().manual_seed(seed)
    per_batch = []
    for _ in range(n_batches):
        x0 = torch.randint(0, V, (batch, length), generator=gen)
        t = sample_times(batch, gen, antithetic=True, t_min=1e-3)
        _, masked = mask_tokens(x0, t, MASK, gen)
        loss_sum, count = masked_diffusion_loss(logits_fn(x0), x0, masked, t, V)
        per_batch.append(loss_sum.item() / count)
    values = torch.tensor(per_batch)
    return values.mean().item(), values.std().item() / math.sqrt(n_batches)


def test_uniform_model_scores_ln_v():
    # Uniform logits over the V real tokens: every masked token costs ln V and the 1/t weight
    # makes E[(1/t) * #masked / L] = 1, so the bound is ln V nats per token.
    uniform = lambda x0: torch.zeros(*x0.shape, V + 7)  # specials are never given mass
    mean, stderr = _elbo_estimate(uniform)
    assert abs(mean - math.log(V)) < 4 * stderr + 1e-3, (mean, stderr)


def test_oracle_scores_zero():
    oracle = lambda x0: torch.nn.functional.one_hot(x0, V + 7).float() * 1e4
    mean, _ = _elbo_estimate(oracle, n_batches=3)
    assert mean == 0.0


def test_hand_computed_single_sequence():
    # One sequence, t = 0.5, two of four tokens masked; p(true) = 1/2 and 1/4 at those.
    x0 = torch.tensor([[0, 1, 2, 3]])
    masked = torch.tensor([[True, False, True, False]])
    logits = torch.full((1, 4, 4), -1e9)
    logits[0, 0, :2] = 0.0  # p(0) = 1/2
    logits[0, 2, :] = 0.0  # p(2) = 1/4
    logits[0, 1, 1] = logits[0, 3, 3] = 0.0
    loss_sum, count = masked_diffusion_loss(logits, x0, masked, torch.tensor([0.5]), 4)
    expected = (math.log(2) + math.log(4)) / 0.5
    assert count == 4 and abs(loss_sum.item() - expected) < 1e-5


def test_cosine_lr_schedule_endpoints():
    assert cosine_lr(0, 1.0, 0.1, 10, 100) < 0.1
    assert abs(cosine_lr(10, 1.0, 0.1, 10, 100) - 1.0) < 1e-9
    assert abs(cosine_lr(55, 1.0, 0.1, 10, 100) - 0.55) < 1e-9
    assert cosine_lr(500, 1.0, 0.1, 10, 100) == 0.1
