"""Gradient accumulation: k micro-batches of B rows give the gradient of one batch of k * B.

For every objective, one Trainer step with train.grad_accum=k is run from fixed weights; the
micro-batches it draws are recorded (objective.make_batch), and the reference is computed by
hand from the same starting weights: the k batches concatenated row-wise into one batch of
k * B, one forward pass, loss sum / the big batch's normaliser, backward. The gradients the
trainer hands to the optimizer (captured by a step pre-hook, before the update) must match.

Comparing the update after AdamW would prove little: its first step is lr * g / |g| per
element, blind to a wrong gradient scale. So the gradients are compared, with clipping off.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from tests.objective_runs import CASES, case_config, case_dataset, make_datasets, quiet
from unmask.errors import UserError
from unmask.objectives.registry import OBJECTIVES
from unmask.train.trainer import Trainer

K, B = 3, 4


@pytest.fixture(scope="module")
def objective_datasets(tmp_path_factory):
    return make_datasets(tmp_path_factory.mktemp("objective-data"))


def concat_batches(batches: list):
    """One batch of k * B rows from k micro-batches: tensors with B rows are concatenated
    (nested dataclasses likewise); anything else (a step's schedule values) must agree."""
    first = batches[0]
    rows = first.inputs.size(0)

    def join(values):
        v0 = values[0]
        if isinstance(v0, torch.Tensor) and v0.dim() > 0 and v0.size(0) == rows:
            return torch.cat(values, dim=0)
        if dataclasses.is_dataclass(v0) and not isinstance(v0, type):
            return dataclasses.replace(v0, **{f.name: join([getattr(v, f.name) for v in values])
                                              for f in dataclasses.fields(v0)})
        for v in values[1:]:
            same = torch.equal(v, v0) if isinstance(v, torch.Tensor) else v == v0
            assert same, f"micro-batches disagree on a per-step value: {v0!r} vs {v!r}"
        return v0

    return join(batches)


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()
            if p.grad is not None}


# Objectives whose model mixes the rows of a forward pass (BatchNorm over pooled features).
BATCH_STATISTICS = {"sequence_classification"}


@pytest.mark.parametrize("name", list(CASES))
def test_accumulated_micro_batches_give_the_big_batch_gradient(name, objective_datasets,
                                                               tmp_path):
    data = case_dataset(name, objective_datasets)
    # Step 3: the self-correction curricula have started (swaps, penalty), the entropy
    # penalty is on; grad_clip 0 so the gradient reaches the optimizer untouched.
    cfg = case_config(name, data, **{"train.grad_accum": K, "train.batch_size": B,
                                     "optim.grad_clip": 0.0, "train.max_iters": 10})
    trainer = Trainer(cfg, data, tmp_path, log=quiet)
    trainer.counters.step = 3
    start = copy.deepcopy(trainer.model)
    objective = trainer.objective

    drawn = []
    make_batch = objective.make_batch
    objective.make_batch = lambda item, step: drawn.append(make_batch(item, step)) or drawn[-1]
    seen = {}
    first = next(iter(getattr(trainer.optimizer, "parts", {"": trainer.optimizer}).values()))
    first.register_step_pre_hook(  # (a ChainedOptimizer's parts step one after the other)
        lambda opt, args, kwargs: seen.update(grads(trainer.model)))
    trainer.set_lr()
    trainer.train_step()

    assert len(drawn) == K and not torch.equal(drawn[0].targets, drawn[1].targets)
    assert seen, "the optimizer never stepped"
    big = concat_batches(drawn)
    assert big.inputs.size(0) == K * B

    start.train()
    if name in BATCH_STATISTICS:
        # The classifier standardises its pooled features with the statistics of each forward
        # pass (BatchNorm), so k passes of B rows are not one pass of k * B rows by design;
        # the reference is then k passes, each row's loss divided by the window's total.
        total = sum(objective.normaliser(b) for b in drawn)
        for b in drawn:
            (objective.loss(start(b.inputs), b).total / total).backward()
    else:  # one forward pass over all k * B rows
        out = objective.loss(start(big.inputs), big)
        (out.total / objective.normaliser(big)).backward()
    expected = grads(start)
    assert expected.keys() == seen.keys()
    scale = max(float(g.abs().max()) for g in expected.values())
    for key, g in expected.items():
        torch.testing.assert_close(seen[key], g, rtol=1e-4, atol=1e-6 * scale,
                                   msg=lambda m, key=key: f"{key}: {m}")

    # The data really is split: the same rows normalised per micro-batch (a mean of means)
    # differ wherever the micro-batches' normalisers differ (the curriculum's masked counts).
    norms = torch.stack([objective.normaliser(b) for b in drawn])
    if not torch.all(norms == norms[0]):
        mutant = copy.deepcopy(trainer.model)  # any weights: compare the two formulas
        per_micro = sum(objective.loss(mutant(b.inputs), b).total / objective.normaliser(b)
                        for b in drawn) / K
        whole = objective.loss(mutant(big.inputs), big).total / objective.normaliser(big)
        # (float32 sums agree to ~1e-7; with ~100 masked tokens per micro-batch the two
        # formulas can differ by only ~1e-5 of the loss, e.g. book_curriculum's stage I)
        assert abs(float(per_micro) - float(whole)) > 1e-6 * abs(float(whole))


def test_every_registered_objective_has_a_case():
    """A new objective gets a case in tests/objective_runs.py, so accumulation and exact
    resume are checked for it too."""
    covered = {extra["train.objective"] for _, extra in CASES.values()}
    assert covered == set(OBJECTIVES)


def test_classifier_with_one_row_per_micro_batch_trains_or_says_why(objective_datasets,
                                                                     tmp_path):
    """batch_size 1 (e.g. batch 1 x grad_accum 32 to save memory) is a valid config: it must
    train, or stop with a UserError naming the setting, never a traceback from inside the
    model (the classifier's BatchNorm needs two rows per forward pass in training mode)."""
    data = case_dataset("sequence_classification", objective_datasets)
    cfg = case_config("sequence_classification", data,
                      **{"train.batch_size": 1, "train.grad_accum": 2, "train.max_iters": 2,
                         "train.eval_interval": 2})
    try:
        result = Trainer(cfg, data, tmp_path, log=quiet).run()
    except UserError as error:
        assert "batch_size" in str(error)
    else:
        assert result["step"] == 2
