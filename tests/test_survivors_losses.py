"""Tests written to kill surviving mutants of the losses (issue 16; see
docs/mutation_judgments.md): hand-built batches against a per-position loop."""

import math

import pytest
import torch

from unmask.config.schema import SelfCorrectionConfig
from unmask.errors import UserError
from unmask.losses.self_correction import task_weighted_loss
from unmask.losses.unmasking import entropy_penalty_at, masked_token_loss
from unmask.noise.corruption import Corruption

V, MASK, WRONG, VEXT = 6, 6, 7, 9


def _naive(logits, inputs, targets, rate, flag_id, penalty, cfg, bias=0.0, vocab=V,
           mask_id=MASK):
    """(total, avg flag prob over unmask positions, n_flagged, n_destructive), one position at
    a time: softmax over the real ids and the flag id; ties between flag and real go to real."""
    total, probs, n_flagged, n_destructive = 0.0, [], 0, 0
    B, L = inputs.shape
    for b in range(B):
        for j in range(L):
            real = [float(logits[b, j, k]) for k in range(vocab)]
            flag = float(logits[b, j, flag_id]) + (bias if flag_id == mask_id else 0.0)
            lse = math.log(sum(math.exp(v) for v in real) + math.exp(flag))
            inp, tgt = int(inputs[b, j]), int(targets[b, j])
            nll = lse - (flag if tgt == flag_id else real[tgt])
            predicted_flag = flag > max(real)
            if inp == mask_id and tgt != flag_id:
                w = cfg.weight_unmask_task
                probs.append(math.exp(flag - lse))
            elif inp != mask_id and tgt == flag_id:
                w = cfg.weight_remask_task
            elif inp == tgt and predicted_flag:
                w = penalty * (1 - rate[b])
                n_destructive += 1
            else:
                w = 1.0
            n_flagged += inp != mask_id and predicted_flag
            total += w * nll
    return total, sum(probs) / max(len(probs), 1), n_flagged, n_destructive


def _batch():
    # one row: [MASK] (target 0), swapped 3 (target WRONG), correct 2 with a flag exactly tied
    # with its best real logit, correct 0 flagged, [MASK] whose best output is the flag
    inputs = torch.tensor([[MASK, 3, 2, 0, MASK]])
    targets = torch.tensor([[0, WRONG, 2, 0, 4]])
    logits = torch.randn(1, 5, VEXT, generator=torch.Generator().manual_seed(0))
    logits[0, 2, WRONG] = logits[0, 2, :V].max()  # tie: reads as a real token
    logits[0, 3, WRONG] = logits[0, 3, :V].max() + 2.0  # destructive
    logits[0, 4, WRONG] = logits[0, 4, :V].max() + 1.0  # flag predicted on a [MASK] input
    rate = torch.tensor([1 / 3])
    return Corruption(inputs, targets, inputs == MASK, targets == WRONG, rate), logits


def test_task_weighted_loss_by_hand_with_ties_token_zero_and_one_unmask_position():
    cfg = SelfCorrectionConfig(weight_unmask_task=0.7, weight_remask_task=1.9)
    c, logits = _batch()
    total, count, diag = task_weighted_loss(logits, c, MASK, WRONG, 0.4, cfg)
    ref, prob, flagged, destructive = _naive(logits, c.inputs, c.targets, [1 / 3], WRONG, 0.4,
                                             cfg)
    assert count == 5
    assert total.item() == pytest.approx(ref, rel=1e-6)
    assert diag["avg_mask_prob"].item() == pytest.approx(prob, rel=1e-6)
    assert int(diag["n_flagged"]) == flagged == 1  # the tie and the [MASK] input do not count
    assert int(diag["n_destructive"]) == destructive == 1
    assert int(diag["n_unmask"]) == 2 and int(diag["n_remask"]) == 1
    # a single unmask position: its own flag probability, not half of it
    c1 = Corruption(c.inputs[:, 1:], c.targets[:, 1:], c.mask_positions[:, 1:],
                    c.replaced_positions[:, 1:], c.corruption_rate)
    _, _, diag1 = task_weighted_loss(logits[:, 1:], c1, MASK, WRONG, 0.4, cfg)
    lse = torch.logaddexp(logits[0, 4, :V].logsumexp(-1), logits[0, 4, WRONG])
    assert diag1["avg_mask_prob"].item() == pytest.approx(
        math.exp(float(logits[0, 4, WRONG] - lse)), rel=1e-6)


def test_task_weighted_loss_single_token_variant_default_bias_is_zero():
    cfg = SelfCorrectionConfig(remask_target="mask")
    inputs = torch.tensor([[MASK, 3, 2, 1]])
    targets = torch.tensor([[5, MASK, 2, 1]])
    c = Corruption(inputs, targets, inputs == MASK, torch.tensor([[False, True, False, False]]),
                   torch.tensor([1 / 3]))
    logits = torch.randn(1, 4, VEXT, generator=torch.Generator().manual_seed(1))
    total, _, diag = task_weighted_loss(logits, c, MASK, WRONG, 0.5, cfg)
    ref, prob, _, _ = _naive(logits, inputs, targets, [1 / 3], MASK, 0.5, cfg, bias=0.0)
    assert total.item() == pytest.approx(ref, rel=1e-6)
    assert diag["avg_mask_prob"].item() == pytest.approx(prob, rel=1e-6)


def test_task_weighted_loss_reads_vocab_size_when_mask_is_not_the_first_special():
    # id 6 is another special (no output), [MASK] is 7, [WRONG] 8
    vocab, mask_id, wrong_id = 6, 7, 8
    cfg = SelfCorrectionConfig()
    inputs = torch.tensor([[mask_id, 3, 2, 1]])
    targets = torch.tensor([[4, wrong_id, 2, 1]])
    c = Corruption(inputs, targets, inputs == mask_id, targets == wrong_id, torch.tensor([1 / 3]))
    logits = torch.randn(1, 4, VEXT, generator=torch.Generator().manual_seed(2))
    logits[..., 6] = 3.0  # mass on the non-output special would change the loss
    total, _, _ = task_weighted_loss(logits, c, mask_id, wrong_id, 0.5, cfg, vocab_size=vocab)
    ref, _, _, _ = _naive(logits, inputs, targets, [1 / 3], wrong_id, 0.5, cfg, vocab=vocab,
                          mask_id=mask_id)
    assert total.item() == pytest.approx(ref, rel=1e-6)


def test_task_weighted_loss_swap_fill_without_originals_is_skipped():
    c, logits = _batch()
    base, _, _ = task_weighted_loss(logits, c, MASK, WRONG, 0.4, SelfCorrectionConfig())
    fill, _, _ = task_weighted_loss(logits, c, MASK, WRONG, 0.4,
                                    SelfCorrectionConfig(weight_swap_fill=0.5))
    assert c.originals is None and fill.item() == pytest.approx(base.item())


# --- masked_token_loss / entropy_penalty_at --------------------------------------------------



def test_masked_token_loss_full_smoothing_is_the_mean_negative_log_prob():
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([[0, 1, 2], [3, 2, 0]])
    masked = torch.tensor([[True, False, True], [False, True, True]])
    total, count = masked_token_loss(logits, targets, masked, 4, uncertainty_factor=1.0)
    want = 0.0
    for b, j in masked.nonzero().tolist():
        logp = logits[b, j, :4].double().log_softmax(-1)
        want += -float(logp.mean())  # eps = 1: the target plays no part
    assert int(count) == 4 and total.item() == pytest.approx(want, rel=1e-6)
    with pytest.raises(UserError, match="uncertainty_factor"):
        masked_token_loss(logits, targets, masked, 4, uncertainty_factor=1.5)


def test_entropy_penalty_ramp_of_one_iteration():
    assert entropy_penalty_at(10, 10, 0.4, 11) == 0.0
    assert entropy_penalty_at(11, 10, 0.4, 11) == pytest.approx(0.4)  # full after one step
    assert entropy_penalty_at(15, 10, 0.4, 20) == pytest.approx(0.2)
