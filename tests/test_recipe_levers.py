"""Issue 15's recipe levers: QK-norm, zero-initialised output projections, Muon, noise
schedules and the loss weighting. Exact resume and gradient accumulation with every lever on
are covered by the `mdlm_levers` case of tests/objective_runs.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from unmask.config.io import ConfigError
from unmask.config.presets import resolve_config
from unmask.config.schema import ModelConfig, OptimConfig
from unmask.errors import UserError
from unmask.losses.likelihood import masked_diffusion_loss, unit_weighting
from unmask.model import sizing
from unmask.model.transformer import Transformer
from unmask.noise.masking import drop_input_tokens, mask_tokens
from unmask.noise.schedules import NOISE_SCHEDULES
from unmask.train.optim import ChainedOptimizer, make_optimizer

TINY = dict(n_layer=2, n_head=2, n_embd=16, block_size=12, vocab_size=11)


def test_qk_norm_counts_its_parameters_and_normalises_queries():
    cfg = ModelConfig(**TINY, qk_norm=True)
    model = Transformer(cfg)
    assert sizing.parameter_breakdown(cfg)["total"] == model.num_parameters()
    assert model.num_parameters() - Transformer(ModelConfig(**TINY)).num_parameters() == 2 * 2 * 8
    attn = model.blocks[0].attn
    q = torch.randn(3, 2, 5, 8) * 7.0
    rms = attn.q_norm(q).pow(2).mean(-1).sqrt()  # unit RMS per head vector (weight = 1 at init)
    torch.testing.assert_close(rms, torch.ones_like(rms), atol=1e-3, rtol=0)


def test_qk_norm_bounds_attention_logits():
    """With QK-norm, scaling the query/key projections does not change the output."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**TINY, qk_norm=True)).eval()
    tokens = torch.randint(0, 11, (2, 12))
    before = model(tokens)
    with torch.no_grad():
        for block in model.blocks:
            qk = block.attn.qkv.weight[: 2 * 16]
            qk.mul_(50.0)
    torch.testing.assert_close(model(tokens), before, atol=1e-4, rtol=1e-4)


def test_zero_init_proj_makes_every_block_the_identity():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**TINY, zero_init_proj=True))
    for block in model.blocks:
        assert not block.attn.proj.weight.any() and not block.mlp.down.weight.any()
    tokens = torch.randint(0, 11, (2, 12))
    expected = model.head(model.norm(model.embed(tokens)))
    torch.testing.assert_close(model(tokens), expected)
    # ... and it still learns: the gradient reaches the zero matrices.
    F.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten()).backward()
    assert model.blocks[0].attn.proj.weight.grad.abs().sum() > 0


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = Transformer(ModelConfig(**TINY))
    opt = make_optimizer(model, OptimConfig(name="muon", lr=1e-3), torch.device("cpu"))
    assert isinstance(opt, ChainedOptimizer)
    muon = {id(p) for g in opt.parts["muon"].param_groups for p in g["params"]}
    adamw = {id(p) for g in opt.parts["adamw"].param_groups for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[i] for i in muon} == {n for n, p in model.named_parameters()
                                        if n.startswith("blocks.") and p.dim() == 2}
    assert {names[i] for i in adamw} >= {"embed.weight", "norm.weight"}
    assert not muon & adamw and len(muon | adamw) == len(list(model.parameters()))
    assert len(opt.param_groups) == len(opt.parts["muon"].param_groups) + 2


def test_muon_update_is_orthogonalised_momentum():
    """One Muon step from zero momentum moves a matrix by -lr' * NS(g): a polynomial in g g^T
    times g, so it keeps g's singular vectors (U^T dW V is diagonal) and pushes the singular
    values of the largest directions to about one (S' ~ U(0.5, 1.5) in Muon's docs); lr' is
    lr * 0.2 * sqrt(max(rows, cols)) ("match_rms_adamw")."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**TINY))
    lr = 1e-2
    opt = make_optimizer(model, OptimConfig(name="muon", lr=lr, weight_decay=0.0),
                         torch.device("cpu"))
    w = model.blocks[0].mlp.down.weight  # (16, 64)
    before = w.detach().clone()
    tokens = torch.randint(0, 11, (4, 12))
    F.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten()).backward()
    opt.step()
    g = w.grad.double()
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    step = -(w.detach() - before).double() / (lr * 0.2 * math.sqrt(64))
    d = u.T @ step @ vh.T  # (16, 16): diagonal when the singular vectors are g's
    off = d - torch.diag(d.diagonal())
    assert off.norm() < 0.05 * d.diagonal().norm()
    assert (d.diagonal() > 0).all()
    assert 0.5 < d.diagonal()[0] < 1.5  # the largest direction: about one
    assert s[0] / s[-1] > 5  # while the gradient's own spread is wide


def test_chained_optimizer_refuses_another_optimizers_state():
    model = Transformer(ModelConfig(**TINY))
    muon = make_optimizer(model, OptimConfig(name="muon"), torch.device("cpu"))
    with pytest.raises(UserError, match="optim.name"):
        muon.load_state_dict({"adamw": {}})


@pytest.mark.parametrize("name", sorted(NOISE_SCHEDULES))
def test_every_schedule_gives_the_same_elbo_integral(name):
    """Substituting m = 1 - alpha(t): the integral over t of w(t) f(m(t)) equals the integral
    over m of f(m) / m, for every schedule. With f(m) = m^2 + m^3 that is 1/2 + 1/3."""
    schedule = NOISE_SCHEDULES[name]
    n = 200_000
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # midpoint rule on (0, 1)
    m = schedule.mask_prob(t)
    integral = (schedule.elbo_weight(t) * (m**2 + m**3)).mean().item()
    top = schedule.mask_prob(torch.ones((), dtype=torch.float64)).item()
    expected = top**2 / 2 + top**3 / 3  # the schedule's masking rate ends at `top`
    assert integral == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", sorted(NOISE_SCHEDULES))
def test_schedule_weight_is_minus_alpha_prime_over_one_minus_alpha(name):
    schedule = NOISE_SCHEDULES[name]
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64, requires_grad=True)
    alpha = 1.0 - schedule.mask_prob(t)
    (alpha_prime,) = torch.autograd.grad(alpha.sum(), t)
    expected = -alpha_prime / (1.0 - alpha)
    torch.testing.assert_close(schedule.elbo_weight(t.detach()), expected.detach())
    m = schedule.mask_prob(t.detach())
    assert (m > 0).all() and (m < 1).all() and (m.diff() > 0).all()


def test_cosine_schedule_masks_at_its_rate():
    g = torch.Generator().manual_seed(0)
    x0 = torch.zeros(4, 20_000, dtype=torch.long)
    t = torch.tensor([0.1, 0.4, 0.7, 0.95])
    _, masked = mask_tokens(x0, t, 99, g, NOISE_SCHEDULES["cosine"])
    expected = 1 - torch.cos(math.pi * t / 2)
    torch.testing.assert_close(masked.float().mean(1), expected, atol=0.01, rtol=0)


def test_masked_ce_weighting_is_the_plain_cross_entropy_on_masked_tokens():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 13)
    x0 = torch.randint(0, 10, (3, 7))
    masked = torch.rand(3, 7) < 0.5
    t = torch.tensor([0.2, 0.5, 0.9])
    total, count = masked_diffusion_loss(logits, x0, masked, t, 10, weighting=unit_weighting)
    by_hand = sum(F.cross_entropy(logits[b, i, :10], x0[b, i]) for b in range(3)
                  for i in range(7) if masked[b, i])
    assert total.item() == pytest.approx(float(by_hand), rel=1e-5) and count == 21
    elbo, _ = masked_diffusion_loss(logits, x0, masked, t, 10)
    by_hand_elbo = sum(F.cross_entropy(logits[b, i, :10], x0[b, i]) / t[b] for b in range(3)
                       for i in range(7) if masked[b, i])
    assert elbo.item() == pytest.approx(float(by_hand_elbo), rel=1e-5)


@pytest.mark.parametrize("override, key", [
    ({"optim.name": "sgd"}, "optim.name"),
    ({"optim.muon_momentum": 1.0}, "optim.muon_momentum"),
    ({"train.noise_schedule": "cosin"}, "train.noise_schedule"),
    ({"train.loss_weighting": "ce"}, "train.loss_weighting"),
    ({"train.input_dropout": 1.0}, "train.input_dropout"),
])
def test_bad_lever_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        resolve_config("cpu-demo", override)


@given(p=st.floats(0.0, 0.9), seed=st.integers(0, 2**16))
@settings(max_examples=25, deadline=None)
def test_input_dropout_only_ever_writes_mask_and_keeps_its_rate(p, seed):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, 50, (64, 256))
    out = drop_input_tokens(inputs, p, 99, g)
    changed = out != inputs
    assert (out[changed] == 99).all()
    # 16,384 draws: 0.03 is >= 7.6 standard errors at any p (at 2,048 draws it was 2.7, and
    # one of 25 unseeded examples failed now and then)
    assert abs(changed.float().mean().item() - p) < 0.03
    if p == 0:
        assert out is inputs


def test_input_dropout_hides_context_but_scores_the_same_positions(tmp_path):
    from tests.objective_runs import case_config
    from unmask.data.dataset import Dataset
    from unmask.data.prepare import prepare
    from unmask.objectives.registry import make_objective

    data = Dataset.load(prepare("tinyshakespeare", tmp_path / "ts"))
    x0 = data.train[: 4 * 33].view(4, 33).long()
    batches = {}
    for p in (0.0, 0.3):
        for objective in ("mdlm", "causal_lm"):
            mode = "language_model" if objective == "causal_lm" else "token_classifier"
            cfg = case_config("mdlm", data, **{"train.objective": objective, "model.mode": mode,
                                                "train.input_dropout": p})
            batches[objective, p] = make_objective(cfg, data, torch.device("cpu")).make_batch(
                x0 if objective == "causal_lm" else x0[:, :32], 0)
    plain, dropped = batches["mdlm", 0.0], batches["mdlm", 0.3]
    assert torch.equal(plain.masked, dropped.masked) and torch.equal(plain.targets, dropped.targets)
    mask_id = data.tokenizer.mask_id
    extra = (dropped.inputs == mask_id) & ~plain.masked
    assert extra.any() and torch.equal(dropped.inputs[~extra], plain.inputs[~extra])
    lm_plain, lm_dropped = batches["causal_lm", 0.0], batches["causal_lm", 0.3]
    assert torch.equal(lm_plain.targets, lm_dropped.targets)
    hidden = lm_dropped.inputs != lm_plain.inputs
    assert hidden.any() and (lm_dropped.inputs[hidden] == mask_id).all()


def test_muon_with_a_frozen_backbone_keeps_only_adamw():
    """feature_extraction freezes every block: nothing is left for Muon, and that is no error."""
    model = Transformer(ModelConfig(**TINY))
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith("blocks."))
    opt = make_optimizer(model, OptimConfig(name="muon"), torch.device("cpu"))
    assert list(opt.parts) == ["adamw"]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == trainable
