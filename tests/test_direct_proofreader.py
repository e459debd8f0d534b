"""The direct proofreader: its margin rule at the threshold, the vectorised pass against a plain
loop, which checkpoints it accepts, and `unmask eval --repair` / `unmask proofread` with it."""

import json
import math

import pytest
import torch
import torch.nn as nn

from unmask.cli.main import main
from unmask.config.schema import RunConfig
from unmask.data.dataset import Dataset
from unmask.errors import UserError
from unmask.eval.repair import repair_passages
from unmask.eval.repair_metrics import char_error_rate
from unmask.model.pretrained import load_pretrained
from unmask.noise.corruption import corrupt_text_ids
from unmask.sampling.direct import direct_repair
from unmask.sampling.proofread import (
    CHECKPOINT_NEEDS,
    PROOFREADERS,
    require_checkpoint_for,
    resolve_change_margin,
)
from tests.test_channel_repair import FixedFill
from tests.test_repair_eval import MASK, V, VEXT


@pytest.mark.parametrize("margin", [1.0, 2.5, 3.5])
def test_replaces_exactly_when_the_best_token_beats_the_one_read_by_the_margin(margin):
    model = FixedFill(0.6, 0.2)  # P(0) / P(1) = 3; every other token is less probable still
    text = torch.tensor([[1, 0, 5, 1]])
    out = direct_repair(model, text, vocab_size=8, change_margin=margin)
    # the 1s go to 0 iff 3 > margin; the 0 stays; the 5 (P 0.2 / 6) is out-argued at any margin
    one = 0 if 3.0 > margin else 1
    assert out.tolist() == [[one, 0, 0, one]]
    assert model.calls == 1  # one forward pass, whatever the margin


def test_frozen_positions_stay_and_a_mask_is_filled_at_any_margin():
    model = FixedFill(0.6, 0.2)
    text = torch.tensor([[1, 8, 1, 8]])  # 8 = [MASK] of the 8-token vocabulary
    frozen = torch.tensor([[True, False, False, True]])
    out = direct_repair(model, text, vocab_size=8, change_margin=100.0, frozen=frozen)
    assert out.tolist() == [[1, 0, 1, 8]]


class Scrambler(nn.Module):
    """Context-dependent logits: a random embedding of each token plus its neighbours'."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.table = nn.Parameter(torch.randn(VEXT, VEXT, generator=g) * 3)

    def forward(self, x):
        return self.table[x] + 0.5 * self.table[x.roll(1, -1)] - 0.5 * self.table[x.roll(-1, -1)]


@pytest.mark.parametrize("margin", [1.0, 1.5, 4.0])
def test_vectorised_pass_matches_a_plain_loop(margin):
    g = torch.Generator().manual_seed(int(margin * 10))
    text = torch.randint(0, V, (3, 40), generator=g)
    text[0, 5] = MASK
    frozen = torch.rand(3, 40, generator=g) < 0.2
    model = Scrambler()
    out = direct_repair(model, text, vocab_size=V, change_margin=margin, frozen=frozen)
    with torch.no_grad():
        logits = model(text)
    expected = text.clone()
    for b in range(3):
        for i in range(40):
            probs = [math.exp(v) for v in logits[b, i, :V].tolist()]
            best = max(range(V), key=lambda c: probs[c])
            seen = int(text[b, i])
            if frozen[b, i]:
                continue
            if seen >= V or probs[best] > margin * probs[seen]:
                expected[b, i] = best
    assert torch.equal(out, expected)
    assert (out != text).any() and (out == text).any()  # the case is not trivial


def _config(objective: str, swap_fill: float = 0.0) -> RunConfig:
    cfg = RunConfig()
    cfg.train.objective = objective
    cfg.self_correction.weight_swap_fill = swap_fill
    return cfg


def test_it_needs_a_model_that_learned_what_belongs_at_a_swapped_token():
    require_checkpoint_for("direct", _config("self_correction", 0.5), "run")
    with pytest.raises(UserError, match=r"weight_swap_fill > 0\); run was trained without"):
        require_checkpoint_for("direct", _config("self_correction"), "run")
    with pytest.raises(UserError, match="train.objective=self_correction; run was trained "
                                        "with 'mdlm'"):
        require_checkpoint_for("direct", _config("mdlm"), "run")
    require_checkpoint_for("channel", _config("mdlm"), "run")  # the fill alone is enough there
    assert set(CHECKPOINT_NEEDS) == set(PROOFREADERS)  # a new proofreader says what it needs


def test_eval_repair_and_proofread_with_it(sc_run, tmp_path, capsys):
    assert main(["eval", str(sc_run), "--repair", "0.1", "--passages", "8", "--json",
                 "--proofreader", "direct", "--change-margin", "2"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["proofreader"] == "direct" and r["change_margin"] == 2.0 and r["passages"] == 8
    # the report is the pass itself, recomputed here from the same corruption draw
    pre = load_pretrained(str(sc_run), "cpu")
    tok = pre.tokenizer
    clean = repair_passages(Dataset.load(pre.meta["dataset_dir"]).val,
                            pre.config.model.block_size, 8)
    corrupted, _ = corrupt_text_ids(clean, 0.1, tok.vocab_size, torch.Generator().manual_seed(0))
    fixed = direct_repair(pre.model, corrupted, vocab_size=tok.vocab_size, change_margin=2.0)
    assert r["cer_after"] == char_error_rate(fixed, clean)
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 3
    source = tmp_path / "in.txt"
    source.write_text(text, encoding="utf-8")
    assert main(["proofread", str(sc_run), str(source), "--proofreader", "direct", "--json",
                 "--dtype", "float32"]) == 0
    p = json.loads(capsys.readouterr().out)
    assert p["proofreader"] == "direct" and len(p["text"]) == len(text)
    # without --change-margin, the direct proofreader's own (the remasking sampler's is 1)
    assert main(["eval", str(sc_run), "--repair", "0.1", "--passages", "4", "--json",
                 "--proofreader", "direct"]) == 0
    assert json.loads(capsys.readouterr().out)["change_margin"] == 3.0


def test_each_proofreader_has_its_default_margin_and_none_goes_below_1():
    assert [resolve_change_margin(p, None) for p in ("remask", "direct")] == [1.0, 3.0]
    assert resolve_change_margin("direct", 1.5) == 1.5
    with pytest.raises(UserError, match="--change-margin must be >= 1"):
        resolve_change_margin("direct", 0.9)
    with pytest.raises(UserError, match="unknown proofreader 'x'"):
        resolve_change_margin("x", None)
