"""The noisy-channel proofreader: its channel by hand, its decision rule at the threshold, its
vectorised sweeps against a plain loop, and the repair evaluation that uses it."""

import json
import math

import pytest
import torch
import torch.nn as nn

from unmask.cli.main import main
from unmask.config.schema import ModelConfig
from unmask.errors import UserError
from unmask.eval.repair import repair_scores
from unmask.model.transformer import Transformer
from unmask.sampling.channel import channel_log_likelihood, channel_repair
from unmask.sampling.proofread import PROOFREADERS
from tests.test_repair_eval import MASK, V, WRONG, Oracle


def test_channel_log_likelihood_by_hand():
    observed = torch.tensor([[0, 2, 4]])  # 4 = [MASK] for a 4-token vocabulary
    ll = channel_log_likelihood(observed, 4, 0.3)
    same, other = math.log(0.7), math.log(0.1)  # 0.3 spread over the 3 other tokens
    assert ll.shape == (1, 3, 4)
    assert torch.allclose(ll[0, 0], torch.tensor([same, other, other, other]))
    assert torch.allclose(ll[0, 1], torch.tensor([other, other, same, other]))
    assert torch.equal(ll[0, 2], torch.zeros(4))  # a [MASK] says nothing
    # a symmetric channel: summed over the candidates, as over the readings, it is 1
    assert torch.allclose(ll[0, :2].exp().sum(-1), torch.ones(2))
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(UserError, match="error rate must be in"):
            channel_log_likelihood(observed, 4, bad)


class FixedFill(nn.Module):
    """Fill distribution independent of the context: P(token 0) = p0, P(token 1) = p1, the rest
    shared equally; also counts its calls."""

    def __init__(self, p0: float, p1: float, vocab: int = 8):
        super().__init__()
        rest = (1.0 - p0 - p1) / (vocab - 2)
        self.logp = torch.tensor([p0, p1] + [rest] * (vocab - 2)).log()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        extra = torch.full((2,), -1e9)  # [MASK] and one more special
        return torch.cat([self.logp, extra]).expand(*x.shape, -1).clone()


@pytest.mark.parametrize("above", [True, False])
def test_replaces_exactly_when_the_posterior_odds_pass_the_prior_odds(above):
    # A 1 is read where the model would put a 0. The observed 1 stays unless
    # P(0) / P(1) > (1 - rho) (V - 1) / rho = 0.9 * 7 / 0.1 = 63.
    ratio = 63 * (1.05 if above else 0.95)
    p1 = 0.5 / (1 + ratio)
    model = FixedFill(ratio * p1, p1)
    text = torch.ones(2, 5, dtype=torch.long)
    out = channel_repair(model, text, vocab_size=8, mask_id=8, error_rate=0.1, stride=2)
    assert torch.equal(out, torch.zeros_like(text) if above else text)


def test_sweeps_stop_at_a_fixed_point_and_stride_sets_the_passes():
    model = FixedFill(0.98, 0.01)  # odds 98 > 63: every 1 becomes a 0
    text = torch.ones(1, 6, dtype=torch.long)
    channel_repair(model, text, vocab_size=8, mask_id=8, error_rate=0.1, stride=3,
                   max_sweeps=5)
    assert model.calls == 2 * 3  # a sweep that changes all, a sweep that changes nothing


def naive_channel_repair(model, corrupted, V, mask_id, rho, stride, sweeps):
    """The same iterated conditional modes, one row, one position and one candidate at a
    time; each row sweeps until a sweep leaves it unchanged."""
    rows = []
    for row in corrupted.split(1):
        x = row.clone()
        for _ in range(sweeps):
            before = x.clone()
            for k in range(stride):
                cls = [i for i in range(x.size(1)) if i % stride == k]
                masked = x.clone()
                masked[:, cls] = mask_id
                logp = model(masked)[..., :V].float().log_softmax(-1)
                for i in cls:
                    o = int(row[0, i])
                    scores = [float(logp[0, i, c])
                              + math.log(1 - rho if c == o else rho / (V - 1))
                              for c in range(V)]
                    x[0, i] = max(range(V), key=lambda c: scores[c])
            if torch.equal(x, before):
                break
        rows.append(x)
    return torch.cat(rows)


def test_vectorised_sweeps_match_a_plain_loop():
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=12,
                                    vocab_size=V + 2)).eval()
    with torch.no_grad():  # a random model with confident opinions, not a near-uniform one
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    text = torch.randint(0, V, (3, 12), generator=torch.Generator().manual_seed(1))
    for rho in (0.1, 0.99):
        got = channel_repair(model, text, vocab_size=V, mask_id=MASK, error_rate=rho,
                             stride=4, max_sweeps=3)
        with torch.no_grad():
            want = naive_channel_repair(model, text, V, MASK, rho, 4, 3)
        assert torch.equal(got, want)
    assert not torch.equal(got, text)  # at rho 0.99 the random model rewrites it


class RowsRead(nn.Module):
    """Fills with a fixed token and records how many rows each forward pass reads."""

    def __init__(self, fill: int, vocab: int = 8):
        super().__init__()
        self.fill, self.vocab, self.rows = fill, vocab, []
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        self.rows.append(x.size(0))
        logits = torch.full((*x.shape, self.vocab + 2), -1e9)
        logits[..., self.fill] = 0.0
        return logits


def test_rows_at_their_fixed_point_are_not_read_again():
    # Row 0 is already all 0s (the model's only fill): its first sweep changes nothing.
    # Row 1 is all 1s: its first sweep rewrites it, its second confirms it.
    model = RowsRead(fill=0)
    text = torch.stack([torch.zeros(6, dtype=torch.long), torch.ones(6, dtype=torch.long)])
    out = channel_repair(model, text, vocab_size=8, mask_id=8, error_rate=0.5, stride=3,
                         max_sweeps=4)
    assert torch.equal(out, torch.zeros_like(text))
    assert model.rows == [2, 2, 2, 1, 1, 1]


class SureOracle(Oracle):
    """The repair tests' oracle, sure enough (fill odds e^10 against any other character) to
    overturn what it reads at the prior odds 0.9 * 64 / 0.1 = 576."""

    def forward(self, x):
        return 2.0 * super().forward(x)


def test_frozen_positions_and_masks():
    clean = torch.randint(0, V, (2, 16), generator=torch.Generator().manual_seed(2))
    model = SureOracle(clean)
    corrupted = clean.clone()
    corrupted[:, 3] = (clean[:, 3] + 1) % V  # swapped
    corrupted[:, 5] = MASK  # a hole: filled from the context alone
    frozen = torch.zeros_like(clean, dtype=torch.bool)
    frozen[0, 3] = True
    out = channel_repair(model, corrupted, vocab_size=V, mask_id=MASK, frozen=frozen)
    assert out[0, 3] == corrupted[0, 3] and out[1, 3] == clean[1, 3]
    assert torch.equal(out[:, 5], clean[:, 5])
    assert torch.equal(out[:, 6:], clean[:, 6:])


def test_repair_scores_with_the_channel_proofreader():
    clean = torch.randint(0, V, (6, 40), generator=torch.Generator().manual_seed(0))
    r = repair_scores(SureOracle(clean), clean, rate=0.1, vocab_size=V, mask_id=MASK,
                      wrong_id=WRONG, batch_size=6, proofreader="channel")
    assert r["cer_after"] == 0.0 and r["repair_f1"] == 1.0 and r["damaged"] == 0.0
    assert r["proofreader"] == "channel" and r["prior_rate"] == 0.1
    with pytest.raises(UserError, match="unknown proofreader 'x'"):
        repair_scores(Oracle(clean), clean, rate=0.1, vocab_size=V, mask_id=MASK,
                      wrong_id=WRONG, proofreader="x")


def test_eval_repair_channel_cli(sc_run, capsys):
    capsys.readouterr()
    args = ["eval", str(sc_run), "--repair", "0.10", "--json", "--passages", "8",
            "--proofreader", "channel"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["proofreader"] == "channel" and r["prior_rate"] == 0.1
    # the CLI lists its choices without importing torch: they must be the registry's
    with pytest.raises(SystemExit):
        main(args[:-1] + ["nonsense"])
    assert f"choose from {', '.join(map(repr, PROOFREADERS))}" in capsys.readouterr().err
    n, bad = r["passages"] * r["passage_length"], r["corrupted_chars"]
    assert r["cer_after"] * n == pytest.approx(bad * (1 - r["restored"])
                                               + (n - bad) * r["damaged"])
    assert main(args + ["--prior-rate", "0.3"]) == 0
    assert json.loads(capsys.readouterr().out)["prior_rate"] == 0.3
    assert main(args + ["--prior-rate", "1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "error rate must be in (0, 1)" in err and len(err.splitlines()) == 1
