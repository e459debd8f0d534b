"""Precise BatchNorm statistics: the classifier evaluates with population statistics of the
current weights, computed the way torch's own SWA utility does, with dropout off."""

import copy

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from tests.objective_runs import case_config
from unmask.config.schema import ModelConfig
from unmask.data.authors import prepare_authors
from unmask.data.dataset import Dataset
from unmask.model.precise_bn import batchnorm_layers, recompute_batchnorm_statistics
from unmask.model.transformer import Transformer
from unmask.objectives.classify import ClassificationObjective
from unmask.train.trainer import complete_config


def classifier(dropout: float = 0.0) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=16, block_size=12, vocab_size=11,
                                   mode="sequence_classifier", num_classes=3, dropout=dropout))


def batches(n: int = 3, rows: int = 4, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 11, (rows, 12), generator=g) for _ in range(n)]


def test_two_batches_give_the_mean_of_their_statistics_by_hand():
    bn = nn.BatchNorm1d(3, affine=False)
    a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64) + 2
    bn.double()
    assert recompute_batchnorm_statistics(bn, [a, b]) == 2
    torch.testing.assert_close(bn.running_mean, (a.mean(0) + b.mean(0)) / 2)
    torch.testing.assert_close(bn.running_var, (a.var(0) + b.var(0)) / 2)  # unbiased per batch
    assert bn.num_batches_tracked == 2 and bn.momentum == 0.1


def test_matches_torch_update_bn_on_the_classifier():
    model, reference = classifier(), classifier()
    for m in (model, reference):  # stale statistics, as after training
        for bn in batchnorm_layers(m):
            bn.running_mean.fill_(3.0)
            bn.running_var.fill_(9.0)
    data = batches()
    recompute_batchnorm_statistics(model, data)
    update_bn(data, reference)
    (ours,), (theirs,) = batchnorm_layers(model), batchnorm_layers(reference)
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    torch.testing.assert_close(ours.running_var, theirs.running_var)
    assert not torch.equal(ours.running_mean, torch.full_like(ours.running_mean, 3.0))


def test_dropout_is_off_and_every_flag_restored():
    plain, dropped = classifier(0.0), classifier(0.5)
    dropped.load_state_dict(plain.state_dict())
    dropped.train()
    recompute_batchnorm_statistics(plain, batches())
    recompute_batchnorm_statistics(dropped, batches())
    (a,), (b,) = batchnorm_layers(plain), batchnorm_layers(dropped)
    torch.testing.assert_close(a.running_var, b.running_var)  # dropout would change them
    assert all(m.training for m in dropped.modules())
    plain.eval()
    recompute_batchnorm_statistics(plain, batches())
    assert not any(m.training for m in plain.modules())


def test_weights_untouched_and_a_model_without_batchnorm_is_left_alone():
    model = classifier()
    before = copy.deepcopy(model.state_dict())
    recompute_batchnorm_statistics(model, batches())
    changed = {k for k in before if not torch.equal(before[k], model.state_dict()[k])}
    assert changed == {"pool_norm.running_mean", "pool_norm.running_var",
                       "pool_norm.num_batches_tracked"}
    lm = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=8, block_size=12, vocab_size=11))
    assert recompute_batchnorm_statistics(lm, batches()) == 0


def test_classifier_objective_refreshes_statistics_idempotently(tmp_path):
    """before_validation gives the same statistics from the same weights (so re-validating a
    saved checkpoint repeats its figures), and validate itself changes nothing."""
    data = Dataset.load(prepare_authors(tmp_path / "authors", passage_length=32))
    cfg = complete_config(case_config("sequence_classification", data), data)
    model = Transformer(cfg.model)
    objective = ClassificationObjective(cfg, data, torch.device("cpu"))
    (bn,) = batchnorm_layers(model)
    objective.before_validation(model, None)
    first = (bn.running_mean.clone(), bn.running_var.clone())
    assert not torch.equal(first[0], torch.zeros_like(first[0]))
    scores = objective.validate(model, None)
    assert torch.equal(first[0], bn.running_mean)
    objective.before_validation(model, None)
    assert torch.equal(first[0], bn.running_mean) and torch.equal(first[1], bn.running_var)
    assert objective.validate(model, None) == scores
