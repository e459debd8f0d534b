import pytest
import torch
import torch.nn as nn

from unmask.config.schema import ModelConfig
from unmask.eval.repair_metrics import detection_scores
from unmask.model.transformer import Transformer
from unmask.noise.corruption import corrupt_text_ids
from unmask.sampling.remask import detect_wrong, remask_generate, repair

V, MASK, WRONG, VEXT = 65, 65, 66, 72


@pytest.fixture(autouse=True)
def _one_thread():
    # A 1-layer, 16-wide model gains nothing from intra-op threads; on a shared, busy CPU
    # waking a second thread costs more than the whole forward pass.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=32,
                                   vocab_size=VEXT)).eval()


class Oracle(nn.Module):
    """Knows the clean text: predicts it, and flags exactly the tokens that differ from it."""

    def __init__(self, clean, flag_id=WRONG):
        super().__init__()
        self.clean, self.flag_id = clean, flag_id
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logits = torch.nn.functional.one_hot(self.clean, VEXT).float() * 5.0
        logits[..., self.flag_id] = torch.where(x != self.clean, 10.0, -10.0)
        logits[..., self.flag_id] = logits[..., self.flag_id].masked_fill(x == MASK, -10.0)
        return logits


class AlwaysFlag(nn.Module):
    """Worst case for flip-flopping: flags every visible token, every step."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        g = torch.Generator().manual_seed(int(x.sum()))
        logits = torch.randn(*x.shape, VEXT, generator=g)
        logits[..., WRONG] = 100.0
        return logits


def _run(model, tokens, frozen=None, **kw):
    kw = dict(vocab_size=V, mask_id=MASK, wrong_id=WRONG, tokens=tokens, frozen=frozen,
              generator=torch.Generator().manual_seed(0)) | kw
    return list(remask_generate(model, **kw))


@pytest.mark.parametrize("remask_target,bias", [("wrong", 0.0), ("mask", 0.0), ("mask", 50.0)])
def test_terminates_without_specials_and_keeps_frozen(model, remask_target, bias):
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, V, (3, 24), generator=g)
    tokens[:, 8:] = torch.where(torch.rand(3, 16, generator=g) < 0.5, MASK, tokens[:, 8:])
    tokens[0, 10] = WRONG  # a stray special outside the prompt is treated as [MASK]
    frozen = torch.zeros_like(tokens, dtype=torch.bool)
    frozen[:, :8] = True
    states = _run(model, tokens, frozen, max_steps=6, remask_target=remask_target,
                  mask_logit_bias=bias, temperature=1.0, top_k=10)
    assert 1 <= len(states) <= 6
    out = states[-1].tokens
    assert (out < V).all() and states[-1].remaining == 0
    assert torch.equal(out[:, :8], tokens[:, :8])
    for s in states:
        assert not s.remasked[:, :8].any() and not s.revealed[:, :8].any()
    if bias:  # a huge [MASK] bias flags everything; the re-mask cap still lets it finish
        assert sum(int(s.remasked.sum()) for s in states) > 0


def test_flip_flop_is_capped():
    tokens = torch.full((2, 16), MASK)
    states = _run(AlwaysFlag(), tokens, max_steps=20, max_remasks=2, unmask_per_step=16)
    remasks = sum(s.remasked.long() for s in states)
    assert remasks.min() == remasks.max() == 2
    # fill, flag all, fill, flag all, fill; then every position is capped: the sixth pass
    # finds nothing to do and is yielded as a check that changes nothing.
    assert len(states) == 6 and (states[-1].tokens < V).all()
    assert not states[-1].revealed.any() and not states[-1].remasked.any()
    assert states[-1].done.all() and not states[-2].done.any()


def test_unmask_per_step_and_last_step_fills_all(model):
    tokens = torch.full((2, 20), MASK)
    states = _run(model, tokens, max_steps=3, unmask_per_step=2, remask_target="mask",
                  mask_logit_bias=-50.0)  # no flags: only fills
    assert [int(s.revealed.sum(-1).max()) for s in states] == [2, 2, 16]
    assert (states[-1].tokens < V).all()


def test_oracle_repairs_corruption_and_detects_exactly():
    clean = torch.randint(0, V, (4, 30), generator=torch.Generator().manual_seed(0))
    corrupted, replaced = corrupt_text_ids(clean, 0.2, V, torch.Generator().manual_seed(1))
    oracle = Oracle(clean)
    flagged = detect_wrong(oracle, corrupted, V, WRONG)
    assert detection_scores(flagged, replaced) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    fixed = repair(oracle, vocab_size=V, mask_id=MASK, wrong_id=WRONG, corrupted=corrupted,
                   max_steps=8)
    assert torch.equal(fixed, clean)
    # A clean text is a fixed point: the first check finds nothing and changes nothing.
    (check,) = _run(oracle, clean, max_steps=8)
    assert torch.equal(check.tokens, clean) and check.done.all() and check.network_calls == 1
    assert not check.revealed.any() and not check.remasked.any()


def test_single_token_oracle_repairs():
    clean = torch.randint(0, V, (2, 20), generator=torch.Generator().manual_seed(2))
    corrupted, _ = corrupt_text_ids(clean, 0.3, V, torch.Generator().manual_seed(3))
    fixed = repair(Oracle(clean, flag_id=MASK), vocab_size=V, mask_id=MASK, wrong_id=WRONG,
                   corrupted=corrupted, max_steps=8, remask_target="mask")
    assert torch.equal(fixed, clean)


def test_frozen_special_rejected(model):
    tokens = torch.full((1, 8), MASK)
    with pytest.raises(ValueError, match="frozen"):
        _run(model, tokens, torch.ones_like(tokens, dtype=torch.bool), max_steps=2)


class Hesitant(Oracle):
    """An oracle whose refill also gives the corrupted token e^-1 of the clean one's odds."""

    def __init__(self, clean, corrupted):
        super().__init__(clean)
        self.corrupted = corrupted

    def forward(self, x):
        logits = super().forward(x)
        doubt = torch.nn.functional.one_hot(self.corrupted, VEXT).float()[..., :V] * 4.0
        logits[..., :V] = torch.maximum(logits[..., :V], doubt)
        return logits


@pytest.mark.parametrize("margin,expect_clean", [(1.0, True), (2.0, True), (3.0, False)])
def test_change_margin_keeps_flagged_tokens_unless_the_refill_is_clearly_better(margin,
                                                                                 expect_clean):
    clean = torch.randint(0, V, (3, 24), generator=torch.Generator().manual_seed(4))
    corrupted, replaced = corrupt_text_ids(clean, 0.25, V, torch.Generator().manual_seed(5))
    fixed = repair(Hesitant(clean, corrupted), vocab_size=V, mask_id=MASK, wrong_id=WRONG,
                   corrupted=corrupted, max_steps=8, change_margin=margin)
    # the clean token is e = 2.72 times as probable as the flagged one: margins below change it
    assert torch.equal(fixed, clean if expect_clean else corrupted)
    assert replaced.any()


def test_flag_bias_moves_the_detection_threshold():
    clean = torch.randint(0, V, (2, 20), generator=torch.Generator().manual_seed(6))
    corrupted, replaced = corrupt_text_ids(clean, 0.2, V, torch.Generator().manual_seed(7))
    oracle = Oracle(clean)  # flag logit +10 on swapped tokens, -10 elsewhere; clean token 5
    assert torch.equal(detect_wrong(oracle, corrupted, V, WRONG, flag_bias=0.0), replaced)
    assert not detect_wrong(oracle, corrupted, V, WRONG, flag_bias=-6.0).any()
    assert detect_wrong(oracle, corrupted, V, WRONG, flag_bias=16.0).all()
