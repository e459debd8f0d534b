import json
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from unmask.losses.unmasking import entropy_penalty_at, masked_token_loss
from unmask.noise.stages import validate_stages
from unmask.objectives.curriculum import CurriculumState, advance, stages_for_training

STAGES = [
    {"type": "sticky", "target_masked_ratio": 0.4, "p1_probability": 0.15,
     "p2_probability": 0.3, "val_loss_stale_count": 3},
    {"type": "random", "max_masked_ratio": 0.5, "val_loss_stale_count": 2},
    {"type": "sticky", "target_masked_ratio": 0.7, "p1_probability": 0.1,
     "p2_probability": 0.9, "val_loss_stale_count": 4},
]


# --- advance -----------------------------------------------------------------------------------

def test_advances_after_exactly_stale_count_stale_evals():
    state, moved = advance(CurriculumState(), 2.0, STAGES)  # first eval always improves on inf
    assert (state.stage, state.best_val_loss, state.stale_count, moved) == (0, 2.0, 0, False)
    for k in range(1, 3):  # stale_count 3: two stale evals are not enough
        state, moved = advance(state, 2.0, STAGES)  # equal is not an improvement
        assert (state.stage, state.stale_count, moved) == (0, k, False)
    state, moved = advance(state, 2.5, STAGES)
    assert moved and state == CurriculumState(stage=1)  # best reset: new stage is harder


def test_improvement_resets_the_stale_count():
    state = CurriculumState(stage=0, best_val_loss=2.0, stale_count=2)
    state, moved = advance(state, 1.9, STAGES)
    assert (state.stage, state.best_val_loss, state.stale_count, moved) == (0, 1.9, 0, False)
    state, _ = advance(state, float("nan"), STAGES)  # NaN is never an improvement
    assert state.stale_count == 1 and state.best_val_loss == 1.9


@given(losses=st.lists(st.floats(0.0, 10.0), max_size=60))
@settings(max_examples=40, deadline=None)
def test_advance_matches_a_step_by_step_reference(losses):
    state, stage, best, stale = CurriculumState(), 0, math.inf, 0
    for loss in losses:
        state, moved = advance(state, loss, STAGES)
        if loss < best:
            best, stale, expect_move = loss, 0, False
        else:
            stale += 1
            expect_move = stage < len(STAGES) - 1 and stale >= STAGES[stage]["val_loss_stale_count"]
            if expect_move:
                stage, best, stale = stage + 1, math.inf, 0
        assert moved == expect_move
        assert (state.stage, state.best_val_loss, state.stale_count) == (stage, best, stale)


def test_last_stage_never_advances():
    state = CurriculumState(stage=2, best_val_loss=1.0)
    for k in range(1, 20):
        state, moved = advance(state, 5.0, STAGES)
        assert not moved and state.stage == 2 and state.stale_count == k


def test_advance_is_pure():
    state = CurriculumState(stage=0, best_val_loss=1.0, stale_count=2)
    advance(state, 3.0, STAGES)
    assert state == CurriculumState(stage=0, best_val_loss=1.0, stale_count=2)


@pytest.mark.parametrize("state", [CurriculumState(), CurriculumState(2, 1.25, 3)])
def test_state_dict_round_trips_through_json(state):
    text = json.dumps(state.state_dict(), allow_nan=False)  # inf must not leak into JSON
    restored = CurriculumState(stage=1, best_val_loss=0.5, stale_count=7)
    restored.load_state_dict(json.loads(text))
    assert restored == state


def test_stages_for_training():
    assert stages_for_training(STAGES, 1, use_all_stages=True) == STAGES[:2]
    assert stages_for_training(STAGES, 1, use_all_stages=False) == [STAGES[1]]
    with pytest.raises(ValueError, match="out of range"):
        stages_for_training(STAGES, 3, use_all_stages=True)


# --- validate_stages ---------------------------------------------------------------------------

def _with(index, **changes):
    stages = [dict(s) for s in STAGES]
    stages[index].update(changes)
    return [{k: v for k, v in s.items() if v is not None} for s in stages]


def test_valid_stages_pass_unchanged():
    assert validate_stages(STAGES) == STAGES


@pytest.mark.parametrize("stages,pattern", [
    (_with(1, max_masked_ratio=None), r"stage 1 .*missing key 'max_masked_ratio'"),
    (_with(0, target_masked_ratio=0.0), r"stage 0 .*'target_masked_ratio'.*\(0, 1\]"),
    (_with(2, target_masked_ratio=1.5), r"stage 2 .*'target_masked_ratio'"),
    (_with(2, p2_probability=-0.1), r"stage 2 .*'p2_probability'.*\[0, 1\]"),
    (_with(0, p1_probability=0.0), r"stage 0 .*'p1_probability'.*> 0"),
    (_with(1, val_loss_stale_count=0), r"stage 1 .*'val_loss_stale_count'.*positive int"),
    (_with(1, val_loss_stale_count=2.5), r"stage 1 .*'val_loss_stale_count'"),
    (_with(0, p1_probabilty=0.2), r"stage 0 .*unknown key 'p1_probabilty'"),
    (_with(2, type="span"), r"stage 2: key 'type' is 'span'.*random.*sticky"),
    ([], "at least one stage"),
])
def test_validate_stages_names_the_stage_and_key(stages, pattern):
    with pytest.raises(ValueError, match=pattern):
        validate_stages(stages)


# --- masked_token_loss golden values -------------------------------------------------------------

V = 3
# Two positions, V real logits plus one special logit that must be ignored.
LOGITS = torch.tensor([[[2.0, 0.0, -1.0, 9.0], [0.5, 0.5, 3.0, -9.0]]])
TARGETS = torch.tensor([[0, 2]])


def _log_probs(row):
    z = math.log(sum(math.exp(v) for v in row[:V]))
    return [v - z for v in row[:V]]


def test_label_smoothing_golden_value():
    eps = 0.2
    masked = torch.tensor([[True, False]])  # only position 0 counts
    total, count = masked_token_loss(LOGITS, TARGETS, masked, V, uncertainty_factor=eps)
    logp = _log_probs(LOGITS[0, 0].tolist())
    expected = (1 - eps) * -logp[0] + eps * sum(-lp for lp in logp) / V
    assert count == 1 and total.item() == pytest.approx(expected, rel=1e-6)
    plain, _ = masked_token_loss(LOGITS, TARGETS, masked, V)
    assert plain.item() == pytest.approx(-logp[0], rel=1e-6)


def test_entropy_penalty_adds_penalty_times_log_v_minus_entropy():
    masked = torch.tensor([[True, True]])
    base, _ = masked_token_loss(LOGITS, TARGETS, masked, V)
    penalised, count = masked_token_loss(LOGITS, TARGETS, masked, V, entropy_penalty=0.5)
    gap = 0.0
    for row in LOGITS[0].tolist():
        logp = _log_probs(row)
        gap += math.log(V) + sum(math.exp(lp) * lp for lp in logp)  # log V - H
    assert count == 2
    assert penalised.item() - base.item() == pytest.approx(0.5 * gap, rel=1e-5)
    uniform = torch.zeros(1, 2, V)  # a uniform prediction has H = log V: no penalty
    assert (masked_token_loss(uniform, TARGETS, masked, V, entropy_penalty=3.0)[0].item()
            == pytest.approx(2 * math.log(V), rel=1e-6))


def test_weight_by_mask_ratio_scales_rows_by_sqrt_l_over_n_masked():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, V, generator=gen)
    targets = torch.randint(0, V, (3, 4), generator=gen)
    masked = torch.tensor([[True, False, False, False],   # n = 1: weight sqrt(4/1) = 2
                           [True, True, False, True],     # n = 3: weight sqrt(4/3)
                           [False, False, False, False]])  # n = 0: contributes nothing
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(3, 4)
    expected = 2.0 * nll[0, 0] + math.sqrt(4 / 3) * (nll[1, 0] + nll[1, 1] + nll[1, 3])
    total, count = masked_token_loss(logits, targets, masked, V, weight_loss_by_mask_ratio=True)
    assert count == 4 and total.item() == pytest.approx(expected.item(), rel=1e-6)
    unweighted, _ = masked_token_loss(logits, targets, masked, V)
    assert unweighted.item() == pytest.approx(nll[masked].sum().item(), rel=1e-6)


def test_unmasked_logits_do_not_matter():
    masked = torch.tensor([[True, False]])
    other = LOGITS.clone()
    other[0, 1] = torch.tensor([-5.0, 7.0, 1.0, 0.0])
    kwargs = dict(uncertainty_factor=0.1, entropy_penalty=0.3, weight_loss_by_mask_ratio=True)
    a, _ = masked_token_loss(LOGITS, TARGETS, masked, V, **kwargs)
    b, _ = masked_token_loss(other, TARGETS, masked, V, **kwargs)
    assert a.item() == b.item()


def test_entropy_penalty_schedule():
    assert entropy_penalty_at(0, 6000, 0.5, 10000) == 0.0
    assert entropy_penalty_at(5999, 6000, 0.5, 10000) == 0.0
    assert entropy_penalty_at(6000, 6000, 0.5, 10000) == 0.0
    assert entropy_penalty_at(8000, 6000, 0.5, 10000) == pytest.approx(0.25)
    assert entropy_penalty_at(10000, 6000, 0.5, 10000) == pytest.approx(0.5)
    assert entropy_penalty_at(20000, 6000, 0.5, 10000) == pytest.approx(0.5)
