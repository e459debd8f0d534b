"""The reproduction report's statistics, against hand-computed values."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from reproduce_report import markdown_report, mcnemar, summarise  # noqa: E402


def test_mean_sample_std_and_worst_seed_in_the_figures_direction():
    acc = summarise({1: 0.90, 2: 0.92, 3: 0.94}, "best_val_accuracy")
    assert acc["mean"] == pytest.approx(0.92) and acc["std"] == pytest.approx(0.02)  # n - 1
    assert (acc["worst_seed"], acc["worst"]) == (1, 0.90)  # accuracy: lowest is worst
    loss = summarise({1: 2.1, 2: 2.4}, "elbo_nats_per_char")
    assert (loss["worst_seed"], loss["worst"]) == (2, 2.4)  # a loss: highest is worst
    assert summarise({7: 1.5}, "cer_after")["std"] == 0.0


def test_exact_mcnemar_by_hand():
    # 5 passages only the first gets right, 1 only the second: p = 2 * P(X <= 1), X ~ B(6, 1/2)
    first, second = "1111101100", "0000011100"
    b, c, p = mcnemar(first, second)
    assert (b, c) == (5, 1)
    assert p == pytest.approx(2 * (1 + 6) / 64)
    assert mcnemar("101", "101")[2] == 1.0  # no discordant pair: no evidence either way
    with pytest.raises(ValueError):
        mcnemar("10", "101")


def test_report_groups_by_piece_and_precision_and_tests_the_transfer_pairs():
    entry = dict(date="2026-11-25", machine="cpu X, torch 2.13", commit="abc1234")
    results = {
        f"transfer/float32/{s}": {**entry, "figures": {
            "pretrained_val_accuracy": acc, "random_val_accuracy": 0.5,
            "pretrained_minus_random": acc - 0.5,
            "pretrained_correct": "1100", "random_correct": "1000"}}
        for s, acc in ((1, 0.5), (2, 0.75))}
    results["attribution/bfloat16/1"] = {**entry, "figures": {"best_val_accuracy": 0.91}}
    text = markdown_report(results)
    assert "## attribution, bfloat16, 1 seeds (1)" in text
    assert "## transfer, float32, 2 seeds (1, 2)" in text
    assert "| pretrained_val_accuracy | 0.6250 ± 0.1768 (n=2) | 1 (0.5000) |" in text
    assert "pooled over 2 seeds: 2 vs 0 passages, p = 0.5" in text  # 2 * (1/2)^2
    # differences 0 and 0.25: t = mean / (std / sqrt 2) = 1 with 1 df (Cauchy): P(|T| > 1) = 1/2
    assert "t = 1.00, df = 1, p = 0.5" in text
    assert "- 2026-11-25: cpu X, torch 2.13; commit abc1234" in text
    assert "_correct |" not in text
