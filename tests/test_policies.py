"""Unmasking policies, semi-AR blocks, MDLM's cache and ReMDM remasking (issue 14)."""

import math

import pytest
import torch
import torch.nn as nn

from unmask.config.io import ConfigError
from unmask.config.schema import ModelConfig, RunConfig
from unmask.errors import UserError
from unmask.model.pretrained import Pretrained
from unmask.model.transformer import Transformer
from unmask.sampling.base import SampleRequest, final_state
from unmask.sampling.registry import (
    SAMPLERS,
    checkpoint_request,
    fitting_samplers,
    pick_sampler,
)
from unmask.sampling.remask import RemaskSampler
from unmask.sampling.remdm import RemdmSampler, sigma_max
from unmask.sampling.unmasking import (
    POLICIES,
    StepView,
    UnmaskingSampler,
    block_index,
    block_plan,
    calibrated_score,
    reveal_calibrated,
    reveal_entropy,
    reveal_margin,
    reveal_most_confident,
    reveal_random,
    top_k_per_row,
)
from unmask.text.tokenizers.char import CharTokenizer

V, MASK, WRONG, VEXT = 65, 65, 66, 72
TOKENIZER = CharTokenizer(tuple(chr(32 + i) for i in range(V)))
MDLM = RunConfig.from_dict({"model": {"mode": "token_classifier"}, "train": {"objective": "mdlm"}})
SELF_CORRECTION = RunConfig.from_dict({"train": {"objective": "self_correction"}})
DIFFUSION = [n for n in SAMPLERS if SAMPLERS[n].fits(MDLM)] + ["remask"]


class Counting(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.cfg, self.calls = inner, inner.cfg, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def _model(seed: int = 0) -> Counting:
    torch.manual_seed(seed)
    return Counting(Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=40,
                                            vocab_size=VEXT)).eval())


def _sampler(name: str, model):
    config = SELF_CORRECTION if name == "remask" else MDLM
    return pick_sampler(name, Pretrained(model, TOKENIZER, config, {}, "ckpt"))


def _request(**kw) -> SampleRequest:
    return SampleRequest(**{"length": 24, "mask_id": MASK, "vocab_size": V, "num_samples": 3,
                            "steps": 8, "prompt_ids": (4, 7)} | kw)


def check_stream(events, request):
    """Every mask filled, only real tokens, fixed tokens untouched, events consistent."""
    x, fixed = request.initial_state("cpu")
    calls = 0
    for i, e in enumerate(events, start=1):
        assert e.step == i <= e.steps
        assert e.network_calls in (calls, calls + 1)
        calls = e.network_calls
        assert torch.equal(e.tokens[fixed], x[fixed])  # fixed tokens never change
        assert torch.equal(e.masked, e.tokens == MASK)
        assert not (e.revealed & (x != MASK)).any() and not (e.revealed & e.masked).any()
        assert not (e.remasked & ((x == MASK) | fixed)).any() and not (e.remasked & ~e.masked).any()
        changed = e.revealed | e.remasked
        assert torch.equal(e.tokens[~changed], x[~changed])
        x = e.tokens
    assert events and not events[-1].masked.any() and events[-1].done.all()
    assert (events[-1].tokens < V).all()  # no special token


@pytest.mark.parametrize("name", DIFFUSION)
@pytest.mark.parametrize("block_length", [0, 5])
@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_every_policy_fills_every_mask_within_its_budget(name, block_length, temperature):
    model = _model()
    request = _request(block_length=block_length, temperature=temperature, top_k=30)
    events = list(_sampler(name, model).generate(model, request,
                                                 torch.Generator().manual_seed(1)))
    check_stream(events, request)
    assert len(events) <= events[-1].steps and model.calls == events[-1].network_calls
    if name in POLICIES:  # unmasking policies: budget max(#blocks, min(steps, length))
        n_blocks = math.ceil(24 / block_length) if block_length else 1
        assert events[-1].steps == max(n_blocks, min(8, 24))


@pytest.mark.parametrize("name", DIFFUSION)
def test_blocks_fill_left_to_right_and_remask_only_the_current_block(name):
    model = _model()
    request = _request(block_length=8, steps=12, eta=0.5)
    events = list(_sampler(name, model).generate(model, request,
                                                 torch.Generator().manual_seed(2)))
    check_stream(events, request)
    current = 0
    for e in events:
        touched = (e.revealed | e.remasked).nonzero()[:, 1]
        if touched.numel():
            blocks = set(((touched - 2) // 8).tolist())  # 2 prompt tokens
            assert len(blocks) == 1 and min(blocks) >= current  # one block, never back
            current = blocks.pop()
            assert not (e.tokens[:, :2 + 8 * current] == MASK).any()  # earlier blocks full
    assert current == 2


@pytest.mark.parametrize("policy", ["random", "confidence", "threshold"])
def test_mdlm_cache_gives_the_same_text_with_fewer_calls(policy):
    """Skipping the forward pass after a step that changed nothing changes no token."""
    request = _request(num_samples=1, steps=24, prompt_ids=())  # many steps reveal nothing
    runs = {}
    for cache in (True, False):
        model = _model()
        sampler = UnmaskingSampler(POLICIES[policy], cache=cache)
        events = list(sampler.generate(model, request, torch.Generator().manual_seed(3)))
        runs[cache] = (events[-1].tokens, model.calls, len(events))
    assert torch.equal(runs[True][0], runs[False][0])
    assert runs[False][1] == runs[False][2]  # no cache: one call per step
    if policy == "random":
        assert runs[True][1] < runs[False][1]  # the cache skipped some
    else:
        assert runs[True][1] == runs[False][1]  # every step reveals: nothing to skip


@pytest.mark.parametrize("schedule", ["cap", "rescale", "conf", "loop"])
def test_remdm_cache_gives_the_same_text(schedule):
    request = _request(num_samples=1, steps=48, prompt_ids=())
    tokens, calls = [], []
    for cache in (True, False):
        model = _model()
        sampler = RemdmSampler(schedule, cache=cache)
        tokens.append(final_state(sampler.generate(model, request,
                                                   torch.Generator().manual_seed(4))).tokens)
        calls.append(model.calls)
    assert torch.equal(tokens[0], tokens[1]) and calls[0] < calls[1] == 48


def _naive_top_k(score, masked, k):
    out = torch.zeros_like(masked)
    for b in range(score.size(0)):
        candidates = [i for i in range(score.size(1)) if masked[b, i]]
        candidates.sort(key=lambda i: -float(score[b, i]))
        for i in candidates[:int(k[b])]:
            out[b, i] = True
    return out


def test_top_k_per_row_matches_a_naive_loop():
    g = torch.Generator().manual_seed(5)
    score = torch.rand(6, 17, generator=g)
    masked = torch.rand(6, 17, generator=g) < 0.6
    k = torch.tensor([0, 1, 3, 5, 17, 2])
    assert torch.equal(top_k_per_row(score, masked, k), _naive_top_k(score, masked, k))


def _view(probs: torch.Tensor, masked: torch.Tensor, step=0, steps=3, **kw) -> StepView:
    request = SampleRequest(length=masked.size(1), mask_id=MASK, vocab_size=probs.size(-1),
                            **kw)
    logits = probs.log()
    confidence = probs.max(-1).values
    return StepView(logits, confidence, masked, step, steps, torch.Generator(), request)


def test_margin_and_entropy_orders_by_hand():
    # position 0: peaked but close runner-up; 1: flat; 2: clear winner; 3: two-way tie
    probs = torch.tensor([[[0.50, 0.45, 0.05], [0.34, 0.33, 0.33],
                           [0.80, 0.10, 0.10], [0.50, 0.50, 0.00]]])
    masked = torch.ones(1, 4, dtype=torch.bool)
    view = _view(probs, masked, temperature=1.0)  # budget: ceil(4 / 3) = 2
    assert reveal_margin(view).tolist() == [[True, False, True, False]]  # gaps .05 .01 .7 0
    # entropies: 0.83, 1.10, 0.64, 0.69 -> the two lowest are positions 2 and 3
    assert reveal_entropy(view).tolist() == [[False, False, True, True]]


def _calibrated_by_hand(probs, tokens, decay):
    """PC-Sampler's score with the row-mean background, one position at a time in float64."""
    probs = probs.double()
    rows = []
    for b in range(probs.size(0)):
        background = probs[b].mean(0)  # every position is masked here
        rows.append([probs[b, i, tokens[b, i]].item()
                     * -math.log(max(background[tokens[b, i]].item(), 1e-4))
                     * math.exp(-decay * i) for i in range(probs.size(1))])
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("decay, first", [(0.0, 2), (1.0, 0)])
def test_calibrated_order_by_hand(decay, first):
    # token 0 is likely everywhere (a space, "the"): confidence puts position 0 first, the
    # calibrated order the position whose token is specific to it, until the left is preferred
    probs = torch.tensor([[[0.70, 0.20, 0.10], [0.70, 0.10, 0.20], [0.30, 0.05, 0.65]]])
    tokens = torch.tensor([[0, 0, 2]])
    masked = torch.ones(1, 3, dtype=torch.bool)
    request = SampleRequest(length=3, mask_id=MASK, vocab_size=3, position_decay=decay)
    view = StepView(probs.log(), probs.gather(-1, tokens[..., None])[..., 0], masked, 0, 3,
                    torch.Generator(), request, tokens)
    expected = _calibrated_by_hand(probs, tokens, decay)
    assert torch.allclose(calibrated_score(view).double(), expected, rtol=1e-5)
    assert reveal_calibrated(view)[0].nonzero().flatten().tolist() == [first]
    assert reveal_most_confident(view)[0, 0]  # plain confidence: position 0 (a tie with 1)


def test_calibrated_background_and_positions_count_revealable_positions_only():
    g = torch.Generator().manual_seed(3)
    probs = torch.rand(2, 6, 5, generator=g).softmax(-1)
    tokens = torch.randint(0, 5, (2, 6), generator=g)
    masked = torch.tensor([[False, True, True, False, True, True]] * 2)
    request = SampleRequest(length=6, mask_id=MASK, vocab_size=5, position_decay=0.3)
    view = StepView(probs.log(), probs.gather(-1, tokens[..., None])[..., 0], masked, 0, 4,
                    torch.Generator(), request, tokens)
    keep = masked[0].nonzero().flatten()
    expected = _calibrated_by_hand(probs[:, keep], tokens[:, keep], 0.3)
    assert torch.allclose(calibrated_score(view)[:, keep].double(), expected, rtol=1e-5)


def test_negative_position_decay_is_a_user_error():
    with pytest.raises(UserError, match="position-decay"):
        SampleRequest(length=4, mask_id=MASK, vocab_size=3, position_decay=-0.1)
    with pytest.raises(ConfigError, match="sample.position_decay"):
        RunConfig.from_dict({"sample": {"position_decay": -1.0}})


def test_checkpoint_sample_settings_carry_the_position_decay():
    config = RunConfig.from_dict({"sample": {"policy": "calibrated", "position_decay": 0.07}})
    pre = Pretrained(_model(), TOKENIZER, config, {}, "ckpt")
    sampler = pick_sampler(None, pre)
    assert checkpoint_request(pre, sampler, []).position_decay == 0.07
    assert checkpoint_request(pre, sampler, [], position_decay=0.2).position_decay == 0.2


def test_threshold_reveals_everything_sure_and_at_least_the_budget():
    probs = torch.tensor([[[0.95, 0.05], [0.60, 0.40], [0.91, 0.09], [0.55, 0.45]],
                          [[0.60, 0.40], [0.70, 0.30], [0.55, 0.45], [0.52, 0.48]]])
    masked = torch.ones(2, 4, dtype=torch.bool)
    reveal = POLICIES["threshold"](_view(probs, masked, steps=8, threshold=0.9))
    assert reveal.tolist() == [[True, False, True, False], [False, True, False, False]]
    last = POLICIES["threshold"](_view(probs, masked, step=7, steps=8, threshold=0.9))
    assert last.all()  # the last step reveals every mask


def test_threshold_zero_decodes_a_block_per_call_and_one_is_confidence():
    model = _model()
    request = _request(block_length=8, steps=24, threshold=0.0)
    events = list(_sampler("threshold", model).generate(model, request, torch.Generator()))
    assert len(events) == 3 and events[-1].network_calls == 3  # one call per block
    a = final_state(_sampler("threshold", model).generate(
        model, _request(threshold=1.0), torch.Generator().manual_seed(6))).tokens
    b = final_state(_sampler("confidence", model).generate(
        model, _request(), torch.Generator().manual_seed(6))).tokens
    assert torch.equal(a, b)


class HalfSure(nn.Module):
    """Logits sure of token (position % 7) at even positions, flat at odd ones."""

    def __init__(self, length: int):
        super().__init__()
        self.cfg = ModelConfig(block_size=length, vocab_size=VEXT)
        logits = torch.zeros(length, VEXT)
        even = torch.arange(0, length, 2)
        logits[even, even % 7] = 30.0
        self.fixed = nn.Parameter(logits, requires_grad=False)  # samplers read its device

    def forward(self, x):
        return self.fixed.expand(x.size(0), -1, -1)


def test_random_threshold_adds_the_sure_positions_to_the_random_reveals():
    probs = torch.tensor([[[0.95, 0.05], [0.60, 0.40], [0.91, 0.09], [0.55, 0.45]]])
    masked = torch.tensor([[True, True, True, False]])
    view = _view(probs, masked, step=0, steps=1000, threshold=0.9)
    # step 0 of 1000: the random rule reveals each mask w.p. 0.001, the seed here none
    assert not reveal_random(_view(probs, masked, step=0, steps=1000)).any()
    assert POLICIES["random-threshold"](view).tolist() == [[True, False, True, False]]
    last = POLICIES["random-threshold"](_view(probs, masked, step=999, steps=1000))
    assert torch.equal(last, masked)  # the last step reveals every mask


def test_random_threshold_one_is_random_and_sure_tokens_cost_no_steps():
    model = _model()
    a = final_state(_sampler("random-threshold", model).generate(
        model, _request(threshold=1.0), torch.Generator().manual_seed(6))).tokens
    b = final_state(_sampler("random", model).generate(
        model, _request(), torch.Generator().manual_seed(6))).tokens
    assert torch.equal(a, b)  # nothing reaches probability 1: plain MDLM ancestral order
    calls = {}
    for name in ("random", "random-threshold"):
        model = Counting(HalfSure(40))
        request = _request(length=40, prompt_ids=(), steps=40, num_samples=2)
        events = list(_sampler(name, model).generate(model, request,
                                                     torch.Generator().manual_seed(7)))
        check_stream(events, request)
        calls[name] = model.calls
        if name == "random-threshold":  # every sure position is revealed by the first call
            assert events[0].revealed[:, ::2].all()
        assert torch.equal(events[-1].tokens[:, ::2], (torch.arange(0, 40, 2) % 7).expand(2, -1))
    assert calls["random-threshold"] < calls["random"]


def test_random_reveals_at_mdlms_rate():
    masked = torch.ones(1, 20000, dtype=torch.bool)
    view = StepView(torch.zeros(1, 1, 2), torch.zeros(1, 20000), masked, 1, 4,
                    torch.Generator().manual_seed(7), _request())
    rate = reveal_random(view).float().mean()
    assert rate == pytest.approx((0.75 - 0.5) / 0.75, abs=0.02)  # (t - s) / t


def test_block_index_counts_generated_positions_only():
    generated = torch.tensor([[False, True, True, False, True, True, True, False]])
    assert block_index(generated, 2).tolist() == [[-1, 0, 0, -1, 1, 1, 2, -1]]
    assert block_index(generated, 0).tolist() == [[-1, 0, 0, -1, 0, 0, 0, -1]]
    assert block_plan(24, 8, 12) == [4, 4, 4] and block_plan(24, 0, 100) == [24]
    assert block_plan(24, 0, 100, cap_at_length=False) == [100]


@pytest.mark.parametrize("schedule", ["cap", "rescale", "conf", "loop"])
@pytest.mark.parametrize("n", [1, 2, 5, 64])
def test_remdm_rates_are_probabilities(schedule, n):
    sampler = RemdmSampler(schedule)
    for i in range(n):
        t, s = 1 - i / n, 1 - (i + 1) / n
        reveal, sigma, _ = sampler.rates(t, s, eta=0.5)
        assert 0 <= reveal <= 1 + 1e-12 and 0 <= sigma <= 1
        if schedule in ("cap", "rescale", "conf"):
            assert sigma <= sigma_max(1 - t, 1 - s) + 1e-12  # the posterior's bound


def test_remdm_cap_and_rescale_by_hand():
    t, s = 0.5, 0.25  # alpha_t = 0.5, alpha_s = 0.75: sigma_max = 0.25 / 0.5 = 0.5
    reveal, sigma, _ = RemdmSampler("cap").rates(t, s, eta=0.1)
    assert sigma == pytest.approx(0.1) and reveal == pytest.approx((0.75 - 0.9 * 0.5) / 0.5)
    reveal, sigma, _ = RemdmSampler("rescale").rates(t, s, eta=0.5)
    assert sigma == pytest.approx(0.25) and reveal == pytest.approx((0.75 - 0.75 * 0.5) / 0.5)
    reveal, sigma, per_token = RemdmSampler("conf").rates(t, s, eta=0.0)
    assert per_token and sigma == pytest.approx(0.5) and reveal == pytest.approx(0.5)


def test_remdm_remasks_and_still_finishes():
    model = _model()
    request = _request(steps=40, eta=1.0)  # rescale with eta 1: sigma = sigma_max
    events = list(RemdmSampler("rescale").generate(model, request,
                                                   torch.Generator().manual_seed(8)))
    check_stream(events, request)
    assert sum(int(e.remasked.sum()) for e in events) > 0
    eta0 = list(RemdmSampler("cap").generate(model, _request(steps=40, eta=0.0),
                                             torch.Generator().manual_seed(8)))
    assert not any(e.remasked.any() for e in eta0)  # eta 0: plain MDLM, nothing re-masked


def test_wrong_based_remask_works_in_blocks():
    model = _model()
    request = _request(block_length=8, steps=12)
    events = list(RemaskSampler(WRONG, flag_bias=100.0).generate(
        model, request, torch.Generator().manual_seed(9)))
    check_stream(events, request)
    assert any(e.remasked.any() for e in events)


def test_every_new_policy_is_registered_for_diffusion_checkpoints_only():
    lm = RunConfig.from_dict({"model": {"mode": "language_model"}})
    for name in ("margin", "entropy", "threshold", "remdm-cap", "remdm-rescale", "remdm-conf",
                 "remdm-loop"):
        assert name in fitting_samplers(MDLM) and name not in fitting_samplers(lm)


def test_request_defaults_keep_older_calls_unchanged():
    r = SampleRequest(length=4, mask_id=MASK, vocab_size=V)
    assert (r.threshold, r.eta, r.template_ids, r.block_length) == (0.9, None, (), 0)
    with pytest.raises(ValueError, match="threshold"):
        SampleRequest(length=4, mask_id=MASK, vocab_size=V, threshold=1.5)
