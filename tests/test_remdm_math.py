"""ReMDM's rates by hand for every schedule (the loop's three phases and their boundaries
included), and the sampler's steps measured: over many positions the share of masks revealed
and of visible tokens re-masked at each step equals the posterior's probabilities."""

import math

import pytest
import torch

from unmask.config.schema import ModelConfig
from unmask.errors import UserError
from unmask.model.transformer import Transformer
from unmask.sampling.base import SampleRequest
from unmask.sampling.remdm import DEFAULT_ETA, RemdmSampler, sigma_max

V, MASK, VEXT = 20, 20, 27


def test_sigma_max_by_hand():
    assert sigma_max(0.8, 0.9) == pytest.approx(0.125)  # (1 - 0.9) / 0.8
    assert sigma_max(0.1, 0.9) == pytest.approx(1.0)
    assert sigma_max(0.05, 0.1) == 1.0  # 0.9 / 0.05 = 18, capped
    assert sigma_max(0.0, 0.3) == 1.0 and sigma_max(-0.1, 0.3) == 1.0  # alpha_t = 0: no bound


@pytest.mark.parametrize("t, s, expected", [
    # cap, eta = 0.008: alpha_t = 0.5, alpha_s = 0.6, sigma_max = 0.8, sigma = 0.008
    (0.5, 0.4, (0.208, 0.008)),  # (0.6 - 0.992 * 0.5) / 0.5
    (1.0, 0.9, (0.1, 0.008)),  # alpha_t = 0: reveal = alpha_s
    (0.2, 0.1, ((0.9 - 0.992 * 0.8) / 0.2, 0.008)),
])
def test_cap_by_hand(t, s, expected):
    reveal, sigma, per_token = RemdmSampler("cap").rates(t, s, DEFAULT_ETA["cap"])
    assert (reveal, sigma) == pytest.approx(expected) and per_token is False


def test_cap_is_capped_by_sigma_max_and_rescale_scales_it():
    reveal, sigma, _ = RemdmSampler("cap").rates(0.2, 0.1, eta=0.5)  # sigma_max 0.125 < 0.5
    assert sigma == pytest.approx(0.125) and reveal == pytest.approx((0.9 - 0.875 * 0.8) / 0.2)
    reveal, sigma, per_token = RemdmSampler("rescale").rates(0.5, 0.4, eta=0.015)
    assert sigma == pytest.approx(0.012) and per_token is False
    assert reveal == pytest.approx((0.6 - 0.988 * 0.5) / 0.5)


def test_conf_reveals_at_mdlm_rate_and_shares_sigma_max():
    reveal, sigma, per_token = RemdmSampler("conf").rates(0.5, 0.4, eta=123.0)  # eta unused
    assert reveal == pytest.approx(0.2) and sigma == pytest.approx(0.8) and per_token is True


LOOP = RemdmSampler("loop")  # t_on 0.55, t_off 0.05, alpha_on 0.9


@pytest.mark.parametrize("t, s, eta, expected", [
    (0.3, 0.25, 0.02, (0.18, 0.02)),  # held: reveal = eta * 0.9 / 0.1
    (0.55, 0.5, 0.02, (0.18, 0.02)),  # t = t_on belongs to the held phase
    (0.3, 0.25, 0.5, (1.0, 1 / 9)),  # eta capped at (1 - 0.9) / 0.9: reveal rate reaches 1
    (0.8, 0.7, 0.02, (0.2 / 0.6, 0.0)),  # before t_on: alpha(u) = (1 - u) * 0.9 / 0.45
    (0.6, 0.5, 0.02, (1.0, 0.0)),  # alpha_s capped at 1
    (0.05, 0.025, 0.02, (0.5, 0.0)),  # t = t_off: MDLM again, alpha(u) = 1 - 2u
    (0.04, 0.0, 0.02, (1.0, 0.0)),
])
def test_loop_phases_by_hand(t, s, eta, expected):
    reveal, sigma, per_token = LOOP.rates(t, s, eta)
    assert (reveal, sigma) == pytest.approx(expected) and per_token is False


LOOP_RANGE = "ReMDM loop needs 0 < t_off < t_on < 1 and 0 < alpha_on < 1"


@pytest.mark.parametrize("kwargs, message", [
    ({"schedule": "loops"}, "unknown ReMDM schedule 'loops'; choose one of cap, rescale, conf, "
                            "loop"),
    ({"schedule": "loop", "t_off": 0.6}, LOOP_RANGE),
    ({"schedule": "loop", "t_off": 0.0}, LOOP_RANGE),
    ({"schedule": "loop", "t_on": 1.0}, LOOP_RANGE),
    ({"schedule": "loop", "alpha_on": 1.0}, LOOP_RANGE),
    ({"schedule": "loop", "alpha_on": 0.0}, LOOP_RANGE),
])
def test_invalid_settings_are_named(kwargs, message):
    with pytest.raises(UserError) as err:
        RemdmSampler(**kwargs)
    assert str(err.value) == message


def test_valid_loop_settings_at_the_edges_are_accepted():
    RemdmSampler("loop", t_on=0.99, t_off=0.01, alpha_on=0.01)


def _uniform_model() -> Transformer:
    """Untrained but fixed: the rates do not depend on the logits (except `conf`'s weights)."""
    torch.manual_seed(0)
    return Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=64,
                                   vocab_size=VEXT)).eval()


def _close(count: int, n: int, p: float) -> bool:
    """`count` of `n` Bernoulli(p) draws, within 5 standard deviations."""
    return abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1e-9


@pytest.mark.parametrize("schedule, eta", [("cap", 0.3), ("rescale", 0.5), ("loop", 0.05)])
def test_each_step_reveals_and_remasks_at_the_posterior_rates(schedule, eta):
    sampler, steps = RemdmSampler(schedule), 8
    request = SampleRequest(length=64, mask_id=MASK, vocab_size=V, num_samples=128,
                            steps=steps, temperature=1.0, eta=eta)
    events = list(sampler.generate(_uniform_model(), request, torch.Generator().manual_seed(3)))
    assert len(events) == steps
    masked_before = torch.ones(128, 64, dtype=torch.bool)
    for i, event in enumerate(events):
        visible_before = ~masked_before
        reveal_p, sigma, _ = sampler.rates(1 - i / steps, 1 - (i + 1) / steps, eta)
        if i == steps - 1:
            reveal_p, sigma = 1.0, 0.0
        revealed, remasked = int(event.revealed.sum()), int(event.remasked.sum())
        assert not (event.revealed & visible_before).any()  # only masks are revealed
        assert not (event.remasked & masked_before).any()  # only visible tokens go back
        assert _close(revealed, int(masked_before.sum()), reveal_p), (i, revealed, reveal_p)
        assert _close(remasked, int(visible_before.sum()), sigma), (i, remasked, sigma)
        masked_before = event.masked
    assert not events[-1].masked.any() and bool(events[-1].done.all())


def test_conf_remasks_sigma_per_row_on_average():
    """conf spreads sigma_max over a row's revealed tokens (softmax weights sum to 1), so a
    row re-masks sigma_max tokens on average per step."""
    sampler, steps, rows = RemdmSampler("conf"), 4, 400
    request = SampleRequest(length=32, mask_id=MASK, vocab_size=V, num_samples=rows,
                            steps=steps, temperature=1.0)
    events = list(sampler.generate(_uniform_model(), request, torch.Generator().manual_seed(5)))
    _, sigma, _ = sampler.rates(1 - 1 / steps, 1 - 2 / steps, 0.0)  # step 2: min(1, .5/.25)
    remasks = events[1].remasked.sum(-1).double()
    assert sigma == pytest.approx(1.0)
    assert abs(float(remasks.mean()) - sigma) < 5 * float(remasks.std()) / math.sqrt(rows)
    assert int(events[0].remasked.sum()) == 0  # nothing revealed yet, nothing to take back
