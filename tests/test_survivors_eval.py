"""Tests written to kill surviving mutants of the evaluators (issue 16; see
docs/mutation_judgments.md): per-window loops as the reference."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from unmask.config.schema import ModelConfig
from unmask.eval.estimators import _noise, estimate_draws
from unmask.eval.likelihood import (
    EvalSet,
    _per_byte,
    bytes_per_token,
    causal_nll,
    classification_scores,
    score_eval_set,
)
from unmask.model.transformer import Transformer

V, MASK, VEXT = 20, 20, 24


def _model(mode="token_classifier", seed=0):
    torch.manual_seed(seed)
    return Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=16,
                                   vocab_size=VEXT, mode=mode)).eval()


def _causal_reference(model, windows, amp=None):
    total, count = 0.0, 0
    for w in windows:
        with torch.no_grad(), (torch.autocast("cpu", dtype=amp) if amp else torch.no_grad()):
            logits = model(w[None, :-1])[0]
        for j in range(w.numel() - 1):
            total -= float(logits[j, :V].float().log_softmax(-1)[w[j + 1]])
            count += 1
    return total / count


def test_causal_nll_scores_every_window_in_every_batch():
    model = _model("language_model")
    windows = torch.randint(0, V, (7, 4), generator=torch.Generator().manual_seed(1))
    got = causal_nll(model, windows, V, batch_size=2, bytes_per_token=2.0)
    want = _causal_reference(model, windows)
    assert got["nll_nats_per_char"] == pytest.approx(want, rel=1e-5)
    assert got["nll_bits_per_char"] == pytest.approx(want / math.log(2), rel=1e-5)
    assert got["bits_per_byte"] == pytest.approx(want / math.log(2) / 2.0, rel=1e-5)


def test_causal_nll_runs_under_the_requested_autocast():
    model = _model("language_model", seed=1)
    windows = torch.randint(0, V, (3, 9), generator=torch.Generator().manual_seed(2))
    got = causal_nll(model, windows, V, amp_dtype=torch.bfloat16)["nll_nats_per_char"]
    want = _causal_reference(model, windows, amp=torch.bfloat16)
    full = _causal_reference(model, windows)
    assert got == pytest.approx(want, rel=1e-6) and got != pytest.approx(full, rel=1e-6)


def _eval_set(n=5, L=8, seed=3, masked=None):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, V, (n, L), generator=g)
    t = torch.rand(n, generator=g).clamp_min(0.05)
    if masked is None:
        masked = torch.rand(n, L, generator=g) < t[:, None]
    return EvalSet(x0, t, torch.where(masked, MASK, x0), masked)


def _elbo_reference(model, es, amp=None):
    loss, correct, n_masked = 0.0, 0, 0
    for b in range(es.x0.size(0)):
        with torch.no_grad(), (torch.autocast("cpu", dtype=amp) if amp else torch.no_grad()):
            logits = model(es.xt[b:b + 1])[0, :, :V].float()
        for j in range(es.x0.size(1)):
            if es.masked[b, j]:
                loss -= float(logits[j].log_softmax(-1)[es.x0[b, j]]) / float(es.t[b])
                correct += int(logits[j].argmax() == es.x0[b, j])
                n_masked += 1
    return loss / es.x0.numel(), correct / max(n_masked, 1)


def test_score_eval_set_by_hand():
    model, es = _model(), _eval_set()
    got = score_eval_set(model, es, V, batch_size=2, bytes_per_token=3.0)
    elbo, accuracy = _elbo_reference(model, es)
    assert got["elbo_nats_per_char"] == pytest.approx(elbo, rel=1e-5)
    assert got["bits_per_byte"] == pytest.approx(elbo / math.log(2) / 3.0, rel=1e-5)
    assert got["masked_accuracy"] == pytest.approx(accuracy)
    assert 0 < accuracy < 1


def test_score_eval_set_accuracy_of_a_single_masked_token():
    model = _model()
    masked = torch.zeros(1, 8, dtype=torch.bool)
    masked[0, 3] = True
    es = _eval_set(n=1, masked=masked)
    with torch.no_grad():
        right = int(model(es.xt)[0, 3, :V].argmax())
    es.x0[0, 3] = right  # the model's argmax is the truth: accuracy 1
    got = score_eval_set(model, es, V)
    assert got["masked_accuracy"] == 1.0
    assert got["elbo_nats_per_char"] == pytest.approx(_elbo_reference(model, es)[0], rel=1e-5)


def test_score_eval_set_runs_under_the_requested_autocast():
    model, es = _model(seed=2), _eval_set(seed=4)
    got = score_eval_set(model, es, V, amp_dtype=torch.bfloat16)["elbo_nats_per_char"]
    assert got == pytest.approx(_elbo_reference(model, es, torch.bfloat16)[0], rel=1e-6)
    assert got != pytest.approx(_elbo_reference(model, es)[0], rel=1e-6)


class _Pool(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.emb, self.head = nn.Embedding(V, 16), nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.emb(x).mean(1))


def test_classification_scores_under_autocast_by_hand():
    model = _Pool().eval()
    x = torch.randint(0, V, (10, 6), generator=torch.Generator().manual_seed(6))
    y = torch.randint(0, 3, (10,), generator=torch.Generator().manual_seed(7))
    got = classification_scores(model, x, y, batch_size=4, amp_dtype=torch.bfloat16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x).float()
    want = float(F.cross_entropy(logits, y))
    assert got["loss"] == pytest.approx(want, rel=1e-6)
    assert got["accuracy"] == pytest.approx(float((logits.argmax(-1) == y).float().mean()))
    with torch.no_grad():
        assert got["loss"] != pytest.approx(float(F.cross_entropy(model(x), y)), rel=1e-6)


class _Bytes:
    def count_bytes(self, ids):
        return sum(1 + i % 3 for i in ids)  # token i has 1 + i % 3 bytes


def test_per_byte_and_bytes_per_token_by_hand():
    assert _per_byte(2.0, 4.0)["bits_per_byte"] == pytest.approx(2.0 / math.log(2) / 4.0)
    assert _per_byte(2.0, None) == {} and _per_byte(2.0, 0.0) == {}
    assert bytes_per_token(_Bytes(), torch.tensor([[5]])) == 3.0  # one token of 3 bytes
    assert bytes_per_token(_Bytes(), torch.tensor([[0, 1], [2, 3]])) == pytest.approx(7 / 4)


# --- estimators ------------------------------------------------------------------------------

def test_llada_noise_masks_a_uniform_random_set_even_for_one_row():
    sets = set()
    for seed in range(20):
        masked, weight = _noise("llada", 1, 10, 1, torch.Generator().manual_seed(seed))
        l = int(masked.sum())
        assert weight.item() == pytest.approx(1 / l)
        sets.add(tuple(masked[0].tolist()))
    prefixes = {tuple([True] * k + [False] * (10 - k)) for k in range(1, 11)}
    assert not sets <= prefixes  # not always the first l positions


class _Count(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_estimate_draws_batches_the_rows():
    model = _Count(_model())
    windows = torch.randint(0, V, (3, 8), generator=torch.Generator().manual_seed(8))
    values = estimate_draws(model, windows, MASK, V, "llada", points=4, draws=2, batch_size=5)
    assert values.shape == (3, 2)
    assert model.calls == math.ceil(3 * 2 * 4 / 5)  # 24 rows, 5 per forward pass
