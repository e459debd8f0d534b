import json
import math

import pytest
import torch

from unmask.config.schema import SelfCorrectionConfig
from unmask.eval.repair_metrics import (
    char_error_rate,
    detection_scores,
    passage_standard_error,
)
from unmask.losses.self_correction import task_weighted_loss
from unmask.noise.corruption import corrupt, corrupt_text_ids, get_corruption_scheduler
from unmask.objectives.self_correction_controller import MaskBiasController

V, MASK, WRONG, VEXT = 65, 65, 66, 72


def test_config_rejects_unknown_remask_target():
    with pytest.raises(ValueError, match="remask_target"):
        SelfCorrectionConfig(remask_target="bad")
    with pytest.raises(ValueError):
        SelfCorrectionConfig(guaranteed_correct_factor=1.0)


def test_scheduler_ramps():
    cfg = SelfCorrectionConfig(penalty_mask_correct=0.5, masking_warmup_iters=1000,
                               proofreading_warmup_iters=2000)
    assert get_corruption_scheduler(0, cfg) == (0.0, 0.0)
    assert get_corruption_scheduler(500, cfg) == pytest.approx((0.25, 0.25))
    assert get_corruption_scheduler(1000, cfg) == pytest.approx((0.5, 0.5))
    assert get_corruption_scheduler(2000, cfg) == pytest.approx((0.5, 1.0))
    assert get_corruption_scheduler(10**6, cfg) == pytest.approx((0.5, 1.0))
    instant = SelfCorrectionConfig(masking_warmup_iters=0, proofreading_warmup_iters=0)
    assert get_corruption_scheduler(0, instant) == (0.5, 1.0)


def _expected_counts(seed, B, L, ratio, gcf):
    # Same draw order as `corrupt` documents: c (B,), u (B,).
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(B, generator=g) * (1 - gcf)
    rate_random = torch.rand(B, generator=g) * c * ratio
    rate_mask = c - rate_random
    return [math.floor(L * float(r)) for r in rate_mask], [math.floor(L * float(r))
                                                             for r in rate_random]


@pytest.mark.parametrize("remask_target", ["wrong", "mask"])
@pytest.mark.parametrize("ratio,gcf", [(1.0, 0.01), (0.5, 0.5), (0.0, 0.01)])
def test_corruption_counts_and_targets(remask_target, ratio, gcf):
    B, L = 64, 50
    cfg = SelfCorrectionConfig(remask_target=remask_target, guaranteed_correct_factor=gcf)
    x0 = torch.randint(0, V, (B, L), generator=torch.Generator().manual_seed(1))
    c = corrupt(x0, ratio, cfg, V, MASK, WRONG, torch.Generator().manual_seed(3))
    n_mask, n_rand = _expected_counts(3, B, L, ratio, gcf)
    assert c.mask_positions.sum(-1).tolist() == n_mask
    assert c.replaced_positions.sum(-1).tolist() == n_rand
    assert not (c.mask_positions & c.replaced_positions).any()
    total = c.mask_positions.sum(-1) + c.replaced_positions.sum(-1)
    assert (total <= L * (1 - gcf)).all()
    if ratio == 0.0:
        assert not c.replaced_positions.any()
    else:
        assert c.replaced_positions.any()
    rep, msk = c.replaced_positions, c.mask_positions
    keep = ~rep & ~msk
    flag_id = WRONG if remask_target == "wrong" else MASK
    assert (c.inputs[rep] != x0[rep]).all() and (c.inputs[rep] < V).all()
    assert (c.targets[rep] == flag_id).all()
    assert (c.inputs[msk] == MASK).all() and torch.equal(c.targets[msk], x0[msk])
    assert torch.equal(c.inputs[keep], x0[keep]) and torch.equal(c.targets[keep], x0[keep])
    expected_rate = rep.sum(-1).float() / (L - msk.sum(-1)).float()
    assert torch.allclose(c.corruption_rate, expected_rate)


def _naive_loss(logits, inputs, targets, remask_target, penalty, cfg, bias):
    flag_id = WRONG if remask_target == "wrong" else MASK
    allowed = list(range(V)) + [flag_id]
    total, probs = 0.0, []
    B, L = inputs.shape
    for b in range(B):
        visible = [l for l in range(L) if inputs[b, l] != MASK]
        n_bad = sum(1 for l in visible if targets[b, l] == flag_id)
        rate = n_bad / len(visible)
        for l in range(L):
            z = logits[b, l, allowed].double().clone()
            if remask_target == "mask":
                z[-1] += bias
            logp = z.log_softmax(-1)
            inp, tgt = int(inputs[b, l]), int(targets[b, l])
            nll = -float(logp[tgt if tgt < V else V])
            pred = allowed[int(z.argmax())]
            if inp == MASK and tgt != flag_id:
                w = cfg.weight_unmask_task
                probs.append(float(logp[-1].exp()))
            elif inp != MASK and tgt == flag_id:
                w = cfg.weight_remask_task
            elif inp == tgt and pred == flag_id:
                w = penalty * (1 - rate)
            else:
                w = 1.0
            total += w * nll
    return total, sum(probs) / len(probs)


@pytest.mark.parametrize("remask_target", ["wrong", "mask"])
def test_task_weighted_loss_matches_naive_loop(remask_target):
    g = torch.Generator().manual_seed(0)
    B, L = 4, 12
    cfg = SelfCorrectionConfig(remask_target=remask_target, weight_unmask_task=0.7,
                               weight_remask_task=1.9)
    x0 = torch.randint(0, V, (B, L), generator=g)
    c = corrupt(x0, 1.0, cfg, V, MASK, WRONG, g)
    logits = torch.randn(B, L, VEXT, generator=g)
    flag_id = WRONG if remask_target == "wrong" else MASK
    # Make the model flag about half the positions, so destructive edits occur.
    logits[..., flag_id] += 6.0 * (torch.rand(B, L, generator=g) < 0.5)
    bias = 1.3
    loss, count, diag = task_weighted_loss(logits, c, MASK, WRONG, 0.3, cfg, mask_logit_bias=bias)
    ref, ref_prob = _naive_loss(logits, c.inputs, c.targets, remask_target, 0.3, cfg, bias)
    assert count == B * L
    assert diag["n_destructive"] > 0 and diag["n_remask"] > 0 and diag["n_unmask"] > 0
    assert loss.item() == pytest.approx(ref, rel=1e-5)
    assert diag["avg_mask_prob"].item() == pytest.approx(ref_prob, rel=1e-5)


def test_swap_fill_term_adds_the_original_token_cross_entropy_at_swaps():
    g = torch.Generator().manual_seed(3)
    B, L = 3, 16
    cfg = SelfCorrectionConfig()
    x0 = torch.randint(0, V, (B, L), generator=g)
    c = corrupt(x0, 1.0, cfg, V, MASK, WRONG, g)
    logits = torch.randn(B, L, VEXT, generator=g)
    base, _, _ = task_weighted_loss(logits, c, MASK, WRONG, 0.3, cfg)
    with_fill, _, _ = task_weighted_loss(logits, c, MASK, WRONG, 0.3,
                                         SelfCorrectionConfig(weight_swap_fill=0.4))
    expected = 0.0
    for b, l in c.replaced_positions.nonzero().tolist():
        expected -= float(logits[b, l, :V].double().log_softmax(-1)[int(x0[b, l])])
    assert c.replaced_positions.sum() > 0
    assert (with_fill - base).item() == pytest.approx(0.4 * expected, rel=1e-5)


def test_task_weighted_loss_has_gradients():
    cfg = SelfCorrectionConfig()
    g = torch.Generator().manual_seed(1)
    c = corrupt(torch.randint(0, V, (2, 8), generator=g), 1.0, cfg, V, MASK, WRONG, g)
    logits = torch.randn(2, 8, VEXT, generator=g, requires_grad=True)
    loss, _, _ = task_weighted_loss(logits, c, MASK, WRONG, 0.5, cfg)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad[..., V + 2:] == 0).all() and (logits.grad[..., MASK] == 0).all()


def _run_controller(offset, steps=20000):
    # Synthetic model: P([MASK]) = sigmoid(bias + offset), i.e. the bias shifts the logit.
    ctl = MaskBiasController.from_config(SelfCorrectionConfig())
    biases = [ctl.bias]
    for _ in range(steps):
        biases.append(ctl.update(1 / (1 + math.exp(-(ctl.bias + offset)))))
    return ctl, biases


@pytest.mark.parametrize("offset", [-6.0, 2.0])  # P starts far below / above the 0.5 target
def test_bias_controller_moves_toward_target(offset):
    ctl, biases = _run_controller(offset)
    if offset == -6.0:
        assert biases[1] > biases[0] and biases[-1] > biases[0]
    else:
        assert biases[1] < biases[0] and biases[-1] < biases[0]
    assert ctl.bias == pytest.approx(-offset, abs=0.05)  # P = 0.5 at bias = -offset
    overshoot = max(b + offset for b in biases) if offset == -6.0 else -min(b + offset
                                                                           for b in biases)
    assert overshoot < 0.05  # critically damped with the defaults


def test_bias_controller_state_round_trip():
    a = MaskBiasController(initial_bias=1.0, strength=0.1, target=0.3)
    for p in (0.1, 0.2, 0.9):
        a.update(p)
    b = MaskBiasController(initial_bias=0.0, strength=0.1, target=0.3)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.state_dict() == a.state_dict()
    assert a.update(0.4) == b.update(0.4)


def test_corrupt_text_ids_exact_count():
    ids = torch.randint(0, V, (5, 40), generator=torch.Generator().manual_seed(0))
    bad, replaced = corrupt_text_ids(ids, 0.1, V, torch.Generator().manual_seed(1))
    assert replaced.sum(-1).tolist() == [4] * 5
    assert (bad[replaced] != ids[replaced]).all() and (bad < V).all()
    assert torch.equal(bad[~replaced], ids[~replaced])


def test_detection_scores_and_cer_by_hand():
    pred = torch.tensor([1, 1, 0, 0, 1], dtype=torch.bool)
    true = torch.tensor([1, 0, 1, 0, 1], dtype=torch.bool)
    s = detection_scores(pred, true)
    assert s == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    s = detection_scores(torch.tensor([1, 0, 0, 0], dtype=torch.bool),
                         torch.tensor([1, 1, 1, 1], dtype=torch.bool))
    assert s == pytest.approx({"precision": 1.0, "recall": 0.25, "f1": 0.4})
    none = torch.zeros(4, dtype=torch.bool)
    assert detection_scores(none, none) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert char_error_rate(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 0, 3, 0])) == 0.5
    with pytest.raises(ValueError):
        char_error_rate(torch.tensor([1, 2]), torch.tensor([1, 2, 3]))


def test_passage_standard_error_by_hand():
    clean = torch.zeros(3, 4, dtype=torch.long)
    repaired = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    # passage error rates 0.5, 1, 0: mean 0.5, sample variance 0.25, SE sqrt(0.25 / 3)
    assert passage_standard_error(repaired, clean) == pytest.approx((0.25 / 3) ** 0.5)
    assert passage_standard_error(clean, clean) == 0.0
    assert passage_standard_error(repaired[:1], clean[:1]) is None
    with pytest.raises(ValueError):
        passage_standard_error(repaired, clean[:2])
