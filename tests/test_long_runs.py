"""Longer checks (`make test-slow`, about two minutes on two CPU cores): real training runs
that must beat count-based baselines, and `unmask eval` over the whole validation split.

The baselines are computed here from character counts of the training split (add-one
smoothing) and scored on the validation split, so a threshold means "learned something a
table of counts cannot", not a number read off an earlier run:
unigram 3.35 nats/char, bigram 2.48 nats/char on Tiny Shakespeare.
"""

from __future__ import annotations

import json

import pytest
import torch

from unmask.cli.main import main
from unmask.config.presets import resolve_config
from unmask.data.windows import contiguous_windows
from unmask.model.pretrained import load_pretrained
from unmask.train.trainer import Trainer

pytestmark = pytest.mark.slow

SMALL = {"model.n_layer": 2, "model.n_head": 4, "model.n_embd": 64, "model.block_size": 64,
         "train.batch_size": 32, "train.eval_batches": 8, "train.progress": False,
         "train.dtype": "float32", "train.compile": "false", "optim.lr": 3e-3,
         "optim.min_lr": 3e-4, "optim.warmup_iters": 20}


def _counts_nll(dataset, order: int) -> float:
    """Validation NLL per char of an add-one-smoothed unigram (order 1) or bigram (order 2)
    model counted on the training split."""
    V = dataset.tokenizer.vocab_size
    train, val = dataset.train.long(), dataset.val.long()
    if order == 1:
        p = torch.bincount(train, minlength=V).double() + 1
        return float(-(p / p.sum()).log()[val].mean())
    counts = torch.ones(V, V, dtype=torch.float64)
    counts.index_put_((train[:-1], train[1:]), torch.ones(len(train) - 1, dtype=torch.float64),
                      accumulate=True)
    p = counts / counts.sum(1, keepdim=True)
    return float(-p.log()[val[:-1], val[1:]].mean())


def test_mdlm_beats_a_unigram_model(shakespeare, tmp_path):
    """1,000 steps of MDLM (measured: ELBO 2.82 nats/char, about a minute): the ELBO, an
    upper bound on its NLL, is well below what character frequencies alone give."""
    unigram = _counts_nll(shakespeare, 1)
    assert 3.2 < unigram < 3.5
    cfg = resolve_config("debug", {**SMALL, "train.max_iters": 1000,
                                   "train.eval_interval": 1000})
    trainer = Trainer(cfg, shakespeare, tmp_path, log=lambda *_: None)
    assert trainer.evaluate()["val_loss"] > unigram  # a fresh model is worse than counting
    result = trainer.run()
    assert result["elbo_nats_per_char"] < unigram - 0.3
    assert result["masked_accuracy"] > 0.15  # the most frequent character (space) is ~15 %


def test_language_model_beats_a_bigram_model(shakespeare, tmp_path):
    """400 steps of the causal baseline (measured: 1.99 nats/char, about 30 s) use more
    context than the previous character."""
    bigram = _counts_nll(shakespeare, 2)
    assert 2.3 < bigram < 2.7
    cfg = resolve_config("debug", {**SMALL, "model.mode": "language_model",
                                   "train.max_iters": 400, "train.eval_interval": 400})
    result = Trainer(cfg, shakespeare, tmp_path, log=lambda *_: None).run()
    assert result["nll_nats_per_char"] < bigram - 0.2


def test_eval_scores_the_whole_validation_split(shakespeare, tmp_path, capsys):
    """`unmask eval` without --max-windows: every window of the validation split, against a
    float64 reference over the same windows."""
    run = tmp_path / "lm"
    assert main(["train", "debug", "--data", str(shakespeare.path), "--out", str(run),
                 "--model.mode=language_model", "--model.n_layer=1", "--model.n_head=2",
                 "--model.n_embd=16", "--model.block_size=16", "--train.max_iters=20",
                 "--train.eval_interval=20", "--train.progress=false",
                 "--train.dtype=float32"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run / "latest"), "--json", "--samples", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    windows = contiguous_windows(shakespeare.val, 17)
    assert report["val_windows"] == len(shakespeare.val) // 17 == windows.size(0)
    pre = load_pretrained(str(run / "latest"), "cpu")
    total = 0.0
    with torch.no_grad():
        for chunk in windows.split(512):
            logits = pre.model.eval()(chunk[:, :-1])[..., :65].double()
            logp = logits.log_softmax(-1).gather(-1, chunk[:, 1:, None]).squeeze(-1)
            total -= float(logp.sum())
    assert report["val_tokens_scored"] == windows.size(0) * 16
    assert report["nll_nats_per_char"] == pytest.approx(total / (windows.size(0) * 16),
                                                        rel=1e-5)


def test_soak_sigkill_and_resume_ends_with_the_uninterrupted_weights(tmp_path):
    """`benchmarks/soak.py` with 4 kills (the full 20 run by the documented command)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.soak import INTERVAL, soak

    result = soak(kills=4, seed=1, workdir=tmp_path)
    assert result["kills"] == 4 and result["every_kill_left_a_checkpoint"]
    assert result["max_steps_lost"] <= INTERVAL
    assert result["final_weights_equal"] and result["final_optimizer_equal"]
