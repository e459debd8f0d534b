"""Per-stage validation figures of both curricula against a one-window-at-a-time float64 loop:
the figures sum over every batch of the fixed set (not only the last), divide by the masked
count, and read at most eval_batches x batch_size windows."""

from types import SimpleNamespace

import pytest
import torch

from unmask.config.schema import ModelConfig
from unmask.model.transformer import Transformer
from unmask.objectives.book_curriculum import BookCurriculumObjective
from unmask.objectives.curriculum import CurriculumObjective

V, MASK, VEXT, L = 20, 20, 27, 16


def _model() -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=L,
                                   vocab_size=VEXT)).eval()


def _pool(n: int, seed: int, ratio: float):
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randint(0, V, (n, L), generator=gen)
    masked = torch.rand(n, L, generator=gen) < ratio
    masked[:, 0] = True  # every window masks something
    return x0, masked


def by_hand(model, x0, masked):
    nll, correct, count = 0.0, 0, 0
    for row, m in zip(x0, masked):
        with torch.no_grad():
            logits = model(torch.where(m, MASK, row)[None])[0].double()
        logp = logits[:, :V].log_softmax(-1)
        for j in torch.nonzero(m).flatten().tolist():
            nll -= float(logp[j, row[j]])
            correct += int(int(logits[j, :V].argmax()) == int(row[j]))
            count += 1
    return nll / count, correct / count, count


def _fake(batch_size: int, eval_batches: int = 100, **extra):
    return SimpleNamespace(tokenizer=SimpleNamespace(vocab_size=V, mask_id=MASK),
                           cfg=SimpleNamespace(train=SimpleNamespace(batch_size=batch_size,
                                                                     eval_batches=eval_batches)),
                           device=torch.device("cpu"), **extra)


@pytest.mark.parametrize("batch_size, eval_batches", [(3, 100), (4, 2), (64, 1)])
def test_curriculum_stage_scores_by_hand(batch_size, eval_batches):
    model = _model()
    pools = [_pool(10, 1, 0.3), _pool(10, 2, 0.8)]
    fake = _fake(batch_size, eval_batches,
                 validation=[SimpleNamespace(x0=x, masked=m) for x, m in pools])
    got = CurriculumObjective.stage_scores(fake, model, None)
    for (x0, masked), result in zip(pools, got):
        n = min(10, eval_batches * batch_size)
        loss, accuracy, count = by_hand(model, x0[:n], masked[:n])
        assert result["loss"] == pytest.approx(loss, rel=1e-5)
        assert result["accuracy"] == pytest.approx(accuracy, rel=1e-9)
        assert result["masked_ratio"] == pytest.approx(count / (n * L))
    assert got[0]["masked_ratio"] < got[1]["masked_ratio"]


@pytest.mark.parametrize("batch_size", [3, 64])
def test_book_stage_scores_by_hand(batch_size):
    model = _model()
    x0, masked = _pool(11, 3, 0.5)
    fake = _fake(batch_size, val_sets={2: (x0, masked)})
    loss, accuracy = BookCurriculumObjective.stage_scores(fake, model, None, 2)
    want_loss, want_accuracy, _ = by_hand(model, x0, masked)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    assert accuracy == pytest.approx(want_accuracy, rel=1e-9) and 0 < accuracy < 1
