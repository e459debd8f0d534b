"""Sequence-classification validation by hand: cross-entropy and accuracy over every passage,
[CLS] first, whatever the batch size."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from unmask.eval.likelihood import classification_scores
from unmask.objectives.classify import ClassificationObjective

CLS, CLASSES = 9, 3


class FirstTwoTokens(nn.Module):
    """logits = table[token 0] + table2[token 1]: depends on [CLS] and the first text token."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.a = nn.Parameter(torch.randn(10, CLASSES, generator=gen))
        self.b = nn.Parameter(torch.randn(10, CLASSES, generator=gen))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        return self.a[x[:, 0]] + self.b[x[:, 1]]


def by_hand(model, inputs, labels):
    loss, correct = 0.0, 0
    for x, y in zip(inputs, labels):
        with torch.no_grad():
            logits = (model.a[x[0]] + model.b[x[1]]).double()
        loss -= float(logits.log_softmax(-1)[y])
        correct += int(int(logits.argmax()) == int(y))
    return loss / len(labels), correct / len(labels)


INPUTS = torch.randint(0, 9, (7, 5), generator=torch.Generator().manual_seed(1))
LABELS = torch.randint(0, CLASSES, (7,), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("batch_size", [1, 3, 7, 64])
def test_scores_by_hand_at_any_batch_size(batch_size):
    model = FirstTwoTokens()
    model.train()
    got = classification_scores(model, INPUTS, LABELS, batch_size)
    loss, accuracy = by_hand(model, INPUTS, LABELS)
    assert got["loss"] == pytest.approx(loss, rel=1e-6) and got["accuracy"] == accuracy
    assert 0 < accuracy < 1  # the case tells right from wrong
    assert model.training  # evaluation mode was restored
    assert sum(len(x) for x in model.seen) == 7


def test_objective_validation_puts_cls_first_and_scores_every_validation_passage():
    model = FirstTwoTokens()
    objective = ClassificationObjective.__new__(ClassificationObjective)
    objective.cls_id = CLS
    objective.passages = {"val_x": INPUTS, "val_y": LABELS}
    objective.cfg = SimpleNamespace(train=SimpleNamespace(batch_size=2))
    result = objective.validate(model, None)
    with_cls = torch.cat([torch.full((7, 1), CLS), INPUTS], 1)
    loss, accuracy = by_hand(model, with_cls, LABELS)
    assert result == pytest.approx({"val_loss": loss, "val_accuracy": accuracy})
    assert [len(x) for x in model.seen] == [2, 2, 2, 1]  # train.batch_size rows at a time
    assert all(bool((x[:, 0] == CLS).all()) and x.size(1) == 6 for x in model.seen)
