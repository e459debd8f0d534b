"""The remasking sampler against a plain per-row reference written from its docstring
(greedy, so every step is deterministic): flag, then fill the k most confident masks, the
last step flagging nothing, a step that finds nothing to do ending the run."""

import math

import pytest
import torch

from unmask.config.schema import ModelConfig
from unmask.errors import UserError
from unmask.model.readout import flag_from_logits
from unmask.model.transformer import Transformer
from unmask.sampling.base import SampleRequest
from unmask.sampling.remask import (
    RemaskSampler,
    detect_wrong,
    remask_generate,
    remask_sample,
    repair,
)

V, MASK, WRONG, VEXT = 20, 20, 21, 27


def _model(seed: int) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=32,
                                   vocab_size=VEXT)).eval()


def reference(model, tokens, frozen, steps, flag_id, bias, max_remasks=2, change_margin=1.0,
              unmask_per_step=None):
    """[(tokens, revealed, remasked)] per step, one row at a time, greedy."""
    out_rows = []
    for row in range(tokens.size(0)):
        x = tokens[row].clone()
        x[~frozen[row] & (x >= V)] = MASK
        count = [0] * x.numel()
        doubted = [-1] * x.numel()
        events = []
        for i in range(steps):
            last = i == steps - 1
            with torch.no_grad():
                logits = model(x[None])[0].double()
            masked = [bool(x[j] == MASK) for j in range(x.numel())]
            flags = flag_from_logits(logits[None], V, flag_id, bias)[0]
            flagged = [bool(flags[j]) and not masked[j] and not frozen[row, j]
                       and count[j] < max_remasks and not last for j in range(x.numel())]
            if not any(masked) and not any(flagged):
                events.append((x.clone(), [False] * x.numel(), [False] * x.numel()))
                break
            probs = logits[:, :V].softmax(-1)
            conf, fills = probs.max(-1)
            fills, placed = fills.tolist(), conf.tolist()
            for j in range(x.numel()):
                if change_margin != 1.0 and doubted[j] >= 0 and \
                        change_margin * float(probs[j, doubted[j]]) >= placed[j]:
                    fills[j], placed[j] = doubted[j], float(probs[j, doubted[j]])
            n_masked = sum(masked)
            k = (n_masked if last else unmask_per_step if unmask_per_step is not None
                 else math.ceil(n_masked / (steps - i)))
            order = sorted((j for j in range(x.numel()) if masked[j]), key=lambda j: -conf[j])
            reveal = set(order[:k])
            for j in reveal:
                x[j] = fills[j]
            for j in range(x.numel()):
                if flagged[j]:
                    doubted[j], x[j] = int(x[j]), MASK
                    count[j] += 1
            events.append((x.clone(), [j in reveal for j in range(x.numel())], flagged))
        out_rows.append(events)
    return out_rows


def _compare(events, expected):
    for row, row_events in enumerate(expected):
        for i, (tokens, revealed, remasked) in enumerate(row_events):
            e = events[i]
            assert torch.equal(e.tokens[row], tokens), (row, i)
            assert e.revealed[row].tolist() == revealed, (row, i)
            assert e.remasked[row].tolist() == remasked, (row, i)


CASES = {
    "wrong": dict(flag_bias=1.0),
    "margin": dict(flag_bias=1.0, change_margin=3.0),
    "per_step": dict(flag_bias=0.5, unmask_per_step=3),
    "one_remask": dict(flag_bias=2.0, max_remasks=1),
    "mask_target": dict(remask_target="mask", mask_logit_bias=1.5, flag_bias=0.5),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_generation_from_masks_matches_the_reference(name):
    options = CASES[name]
    model, steps = _model(1), 9
    sampler = RemaskSampler(WRONG, **options)
    request = SampleRequest(length=14, mask_id=MASK, vocab_size=V, prompt_ids=(3, 4),
                            num_samples=1, steps=steps, temperature=0.0)
    events = list(sampler.generate(model, request, torch.Generator().manual_seed(0)))
    x, frozen = request.initial_state("cpu")
    flag_id = MASK if options.get("remask_target") == "mask" else WRONG
    bias = options.get("flag_bias", 0.0) + (options.get("mask_logit_bias", 0.0)
                                            if flag_id == MASK else 0.0)
    expected = reference(model, x, frozen, steps, flag_id, bias,
                         options.get("max_remasks", 2), options.get("change_margin", 1.0),
                         options.get("unmask_per_step"))
    assert len(events) == len(expected[0])
    assert any(any(r) for _, _, r in expected[0]) or name == "per_step"  # flags happen
    _compare(events, expected)
    assert not (events[-1].tokens >= V).any() and bool(events[-1].done.all())


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_proofreading_rows_independently_matches_the_reference(seed):
    model, steps = _model(seed), 6
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V, (4, 16), generator=gen)
    frozen = torch.zeros_like(tokens, dtype=torch.bool)
    frozen[:, :2] = True
    tokens[1, 5] = WRONG  # any special outside `frozen` reads as [MASK]
    options = dict(flag_bias=1.5, change_margin=2.0)
    expected = reference(model, tokens, frozen, steps, WRONG, 1.5, change_margin=2.0)
    events = list(remask_generate(model, vocab_size=V, mask_id=MASK, wrong_id=WRONG,
                                  tokens=tokens, frozen=frozen, max_steps=steps,
                                  temperature=0.0, **options))
    # the batch runs until every row is done; a row that stopped earlier stays unchanged
    for row, row_events in enumerate(expected):
        for i, e in enumerate(events):
            tokens_i, revealed, remasked = row_events[min(i, len(row_events) - 1)]
            assert torch.equal(e.tokens[row], tokens_i), (row, i)
            if i < len(row_events):
                assert e.revealed[row].tolist() == revealed and e.remasked[row].tolist() == remasked
    fixed = repair(model, vocab_size=V, mask_id=MASK, wrong_id=WRONG, corrupted=tokens,
                   frozen=frozen, max_steps=steps, **options)
    assert torch.equal(fixed, events[-1].tokens)
    assert torch.equal(fixed[:, :2], tokens[:, :2])


def test_remask_sample_is_the_sampler_with_the_same_options():
    model = _model(5)
    request = SampleRequest(length=10, mask_id=MASK, vocab_size=V, prompt_ids=(1, 2),
                            num_samples=3, steps=7, temperature=0.8, top_k=6, top_p=0.9)
    events = list(RemaskSampler(WRONG, flag_bias=1.0, max_remasks=1).generate(
        model, request, torch.Generator().manual_seed(4)))
    got = remask_sample(model, vocab_size=V, mask_id=MASK, wrong_id=WRONG, length=10,
                        prompt_ids=[1, 2], num_samples=3, steps=7, temperature=0.8, top_k=6,
                        top_p=0.9, generator=torch.Generator().manual_seed(4), flag_bias=1.0,
                        max_remasks=1)
    assert torch.equal(got, events[-1].tokens) and got.shape == (3, 12)


def test_bad_calls_are_named():
    model, tokens = _model(0), torch.zeros(1, 8, dtype=torch.long)
    with pytest.raises(UserError, match="max_steps must be >= 1, got 0"):
        remask_generate(model, vocab_size=V, mask_id=MASK, wrong_id=WRONG, tokens=tokens,
                        max_steps=0)
    frozen = torch.ones_like(tokens, dtype=torch.bool)
    with pytest.raises(ValueError, match="frozen positions must hold real tokens"):
        remask_generate(model, vocab_size=V, mask_id=MASK, wrong_id=WRONG,
                        tokens=tokens.fill_(MASK), frozen=frozen)


def test_a_run_that_settles_early_ends_with_an_empty_check_step():
    model, steps = _model(1), 30
    request = SampleRequest(length=8, mask_id=MASK, vocab_size=V, num_samples=2, steps=steps,
                            temperature=0.0)
    events = list(RemaskSampler(WRONG, flag_bias=-50.0).generate(model, request))  # no flags
    assert len(events) < steps  # 8 masks need few steps; then one step finds nothing to do
    last, before = events[-1], events[-2]
    assert (last.step, last.steps) == (before.step + 1, steps)
    assert not last.revealed.any() and not last.remasked.any()
    assert torch.equal(last.tokens, before.tokens) and not bool(last.confidence.any())
    assert bool(last.done.all()) and last.network_calls == before.network_calls + 1


def test_wrapper_defaults_are_the_samplers():
    model = _model(6)
    tokens = torch.randint(0, V, (3, 12), generator=torch.Generator().manual_seed(6))
    tokens[:, 3] = MASK
    got = list(remask_generate(model, vocab_size=V, mask_id=MASK, wrong_id=WRONG,
                               tokens=tokens, generator=torch.Generator().manual_seed(1)))
    request = SampleRequest(12, MASK, V, (), 3, 64, 1.0, 0, 1.0, gumbel64=False)
    want = list(RemaskSampler(WRONG).edit(model, request, tokens, None,
                                          torch.Generator().manual_seed(1)))
    assert len(got) == len(want)
    assert all(torch.equal(a.tokens, b.tokens) for a, b in zip(got, want))


@pytest.mark.parametrize("target, mask_bias, flag_bias", [("wrong", 0.0, 0.0), ("wrong", 5.0, 1.0),
                                                          ("mask", 2.0, -1.0)])
def test_detect_wrong_by_hand(target, mask_bias, flag_bias):
    model = _model(7)
    tokens = torch.randint(0, V, (4, 12), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits = model(tokens).double()
    flag_id = WRONG if target == "wrong" else MASK
    bias = flag_bias + (mask_bias if target == "mask" else 0.0)  # [MASK] bias: its variant only
    want = logits[..., flag_id] + bias > logits[..., :V].max(-1).values
    got = detect_wrong(model, tokens, V, WRONG, target, mask_logit_bias=mask_bias,
                       flag_bias=flag_bias)
    assert torch.equal(got, want)
    if target == "wrong" and mask_bias == 0.0:  # mask_id defaults to vocab_size
        assert torch.equal(detect_wrong(model, tokens, V, WRONG), want)
