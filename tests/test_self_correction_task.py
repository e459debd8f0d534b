import json

import pytest
import torch

from unmask.config.presets import resolve_config
from unmask.losses.self_correction import task_weighted_loss
from unmask.model.checkpoint import load_checkpoint
from unmask.model.pretrained import checkpoint_mask_logit_bias
from unmask.objectives.registry import make_objective
from unmask.objectives.remask_binary import RemaskBinaryObjective
from unmask.objectives.self_correction import SelfCorrectionObjective
from unmask.train.trainer import Trainer

V = 65  # Tiny Shakespeare's characters; [MASK] = 65, [WRONG] = 66, [GOOD] = 67, [BAD] = 68


def sc_config(**overrides):
    base = {"train.progress": False, "train.max_iters": 10, "train.eval_interval": 5,
            "train.log_interval": 5, "train.objective": "self_correction",
            "self_correction.masking_warmup_iters": 4,
            "self_correction.proofreading_warmup_iters": 8}
    cfg = resolve_config("debug", {**base, **overrides})
    cfg.model.vocab_size = 72
    return cfg


def quiet(*_):
    pass


def test_batches_follow_the_curriculum_and_loss_is_the_weighted_loss(shakespeare):
    cfg = sc_config()
    task = make_objective(cfg, shakespeare, torch.device("cpu"))
    assert isinstance(task, SelfCorrectionObjective)
    x0 = task.make_loader(0).next_batch()
    start = task.make_batch(x0, 0)  # remask ratio 0: masks only
    c = start.corruption
    assert not c.replaced_positions.any() and c.mask_positions.any()
    assert start.penalty == 0.0
    late = task.make_batch(x0, 100)  # past both ramps: swaps, full penalty
    c = late.corruption
    assert c.replaced_positions.any() and late.penalty == cfg.self_correction.penalty_mask_correct
    assert (late.targets[c.replaced_positions] == V + 1).all()  # [WRONG]
    assert (late.inputs[c.replaced_positions] != x0[c.replaced_positions]).all()
    assert float(task.normaliser(late)) == x0.numel()
    logits = torch.randn(*x0.shape, 72)
    expected = task_weighted_loss(logits, c, V, V + 1, late.penalty,
                                  cfg.self_correction, vocab_size=V)[0]
    out = task.loss(logits, late)
    assert torch.equal(out.total, expected)
    log = task.after_step(101, [out.diagnostics])
    assert set(log) == {"remask_ratio", "penalty_mask_correct", "avg_wrong_prob"}
    assert log["remask_ratio"] == 1.0 and log["penalty_mask_correct"] == late.penalty
    assert task.after_step(102, [out.diagnostics]) == log  # no state left behind by loss()


def _by_hand_detection(flags: torch.Tensor, truth: torch.Tensor) -> tuple[float, float, float]:
    """Precision, recall, F1 from the counts (both sets non-empty here)."""
    tp = int((flags & truth).sum())
    precision, recall = tp / int(flags.sum()), tp / int(truth.sum())
    return precision, recall, 2 * precision * recall / (precision + recall)


class FlagsSome(torch.nn.Module):
    """A trained model whose [WRONG] logit is raised at a fixed, input-dependent third of the
    positions, so validation has flags (right and wrong) to score."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        logits = self.inner(x).clone()
        logits[..., V + 1] += 30.0 * ((x * 7 + torch.arange(x.size(1))) % 3 == 0)
        return logits


def test_evaluate_is_fixed_and_reports_detection(shakespeare, tmp_path):
    trainer = Trainer(sc_config(), shakespeare, tmp_path, log=quiet)
    first, second = trainer.evaluate(), trainer.evaluate()
    assert first == second
    c = trainer.objective.eval_set
    assert c.replaced_positions.any()  # full remask ratio from step 0
    trainer.run()  # 10 steps: fills better than chance
    model = FlagsSome(trainer.model).eval()
    result = trainer.objective.validate(model, None)
    with torch.no_grad():
        logits = model(c.inputs)
    # independent figures over the whole set at once (validation runs in batches)
    flag_wins = logits[..., V + 1] > logits[..., :V].max(-1).values  # ties go to the token
    flags = flag_wins & (c.inputs != V)
    precision, recall, f1 = _by_hand_detection(flags, c.replaced_positions)
    assert 0 < precision < 1 and 0 < recall < 1  # not a degenerate case
    assert (result["detect_precision"], result["detect_recall"]) == (precision, recall)
    assert result["detect_f1"] == pytest.approx(f1, rel=1e-12)
    fills = logits[..., :V].argmax(-1)
    hits = int(((fills == c.targets) & c.mask_positions).sum())
    assert hits > 0 and result["fill_accuracy"] == hits / int(c.mask_positions.sum())
    # the loss at the full penalty (task_weighted_loss is checked against a naive loop in
    # test_self_correction.py), per token of the set
    full = task_weighted_loss(logits, c, V, V + 1, trainer.cfg.self_correction.penalty_mask_correct,
                              trainer.cfg.self_correction, vocab_size=V)[0]
    assert result["val_loss"] == pytest.approx(float(full) / c.inputs.numel(), rel=1e-5)


def test_bias_controller_is_wired_logged_and_resumed(shakespeare, tmp_path):
    mask = {"self_correction.remask_target": "mask", "optim.lr_decay_iters": 10}
    full = Trainer(sc_config(**mask), shakespeare, tmp_path / "full", log=quiet)
    full.run()
    bias = float(full.objective.controller.bias)
    # Fresh model: P([MASK]) on unmask positions is below the 0.5 set point, so the bias rises.
    assert bias > 3.5
    lines = [json.loads(l) for l in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    logged = [l["mask_logit_bias"] for l in lines if "train_loss" in l]
    assert len(logged) == 2 and logged[0] > 3.5 and logged[-1] == pytest.approx(bias)
    assert checkpoint_mask_logit_bias(tmp_path / "full" / "latest", full.cfg) == bias

    half = Trainer(sc_config(**mask, **{"train.max_iters": 5}), shakespeare, tmp_path / "half",
                   log=quiet)
    half.run()
    state = load_checkpoint(tmp_path / "half" / "latest")["train_state"]["task"]
    assert state["bias_controller"]["bias"] == float(half.objective.controller.bias)
    resumed = Trainer(sc_config(**mask), shakespeare, tmp_path / "half", resume="auto",
                      log=quiet)
    assert float(resumed.objective.controller.bias) == state["bias_controller"]["bias"]
    resumed.run()
    assert float(resumed.objective.controller.bias) == bias
    assert float(resumed.objective.controller.running_avg) == float(full.objective.controller.running_avg)


def test_self_correction_rejects_binary_head(shakespeare):
    cfg = sc_config(**{"model.binary_head": True})
    with pytest.raises(ValueError, match="remask_binary"):
        make_objective(cfg, shakespeare, torch.device("cpu"))


def test_binary_batches(shakespeare):
    cfg = sc_config(**{"train.objective": "remask_binary"})
    task = make_objective(cfg, shakespeare, torch.device("cpu"))
    assert isinstance(task, RemaskBinaryObjective) and task.columns == [V + 2, V + 3]  # [GOOD], [BAD]
    x0 = task.make_loader(0).next_batch()
    batch = task.make_batch(x0, 0)
    wrong = batch.targets.bool()
    assert (batch.inputs < V).all() and wrong.any() and (~wrong).any()
    assert torch.equal(batch.inputs != x0, wrong)  # swapped exactly where labelled wrong
    logits = torch.zeros(*x0.shape, 72, requires_grad=True)
    task.loss(logits, batch).total.backward()
    touched = logits.grad.abs().sum((0, 1)).nonzero().flatten().tolist()
    assert touched == [V + 2, V + 3]  # only the two class columns are trained


def test_binary_head_on_pretrained_unmasking_model_feature_extraction(shakespeare, tmp_path):
    Trainer(resolve_config("debug", {"train.progress": False, "train.max_iters": 3}),
            shakespeare, tmp_path / "mdlm", log=quiet).run()
    pretrained = load_checkpoint(tmp_path / "mdlm" / "latest")["weights"]
    cfg = resolve_config("debug", {
        "train.progress": False, "train.max_iters": 6, "train.eval_interval": 6,
        "transfer.init_from": "pretrained",
        "transfer.pretrained_checkpoint_path": str(tmp_path / "mdlm" / "latest"),
        "transfer.switch_to_binary": True, "transfer.transfer_learning_mode": "feature_extraction"})
    trainer = Trainer(cfg, shakespeare, tmp_path / "binary", log=quiet)
    assert isinstance(trainer.objective, RemaskBinaryObjective) and trainer.objective.columns is None
    head_before = trainer.model.binary.weight.detach().clone()
    result = trainer.run()
    for name, value in trainer.model.state_dict().items():
        if name in pretrained:  # the whole backbone (and the tied head): bit-identical
            assert torch.equal(value, pretrained[name]), name
    assert not torch.equal(trainer.model.binary.weight, head_before)
    assert trainer.model(torch.zeros(1, 8, dtype=torch.long)).shape == (1, 8, 2)
    # The final validation, recomputed from the final model over the whole fixed set.
    task = trainer.objective
    with torch.no_grad():
        logits = trainer.model.eval()(task.eval_inputs).double()
    wrong = task.eval_targets == 1
    predicted = logits.argmax(-1) == 1
    tp, n_pred, n_true = int((predicted & wrong).sum()), int(predicted.sum()), int(wrong.sum())
    assert 0 < tp < min(n_pred, n_true)  # flags some, right and wrong: not a degenerate case
    precision, recall = tp / n_pred, tp / n_true
    assert (result["detect_precision"], result["detect_recall"]) == (precision, recall)
    assert result["detect_f1"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert result["accuracy"] == pytest.approx(float((predicted == wrong).double().mean()))
    weights = torch.where(wrong, cfg.self_correction.weight_remask_task, 1.0)
    ce = -logits.log_softmax(-1).gather(-1, task.eval_targets[..., None]).squeeze(-1)
    assert result["val_loss"] == pytest.approx(float((ce * weights).mean()), rel=1e-5)
