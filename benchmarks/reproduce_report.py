"""The Markdown report of benchmarks/reproduce.py: mean ± standard deviation over seeds, the
worst seed, and for the transfer comparison a paired significance test."""

from __future__ import annotations

import statistics
from collections import defaultdict

# Figures where higher is better; every other figure (losses, error rates, seconds,
# self-BLEU) is better lower. The worst seed is read in that direction.
HIGHER_IS_BETTER = ("accuracy", "validity", "f1", "entropy", "distinct", "minus_random")


def higher_is_better(figure: str) -> bool:
    return any(word in figure for word in HIGHER_IS_BETTER)


def summarise(values: dict[int, float], figure: str) -> dict:
    """mean, sample standard deviation (0 for one seed), and the worst seed with its value."""
    worst = (max if not higher_is_better(figure) else min)(values, key=values.get)
    return {"mean": statistics.fmean(values.values()),
            "std": statistics.stdev(values.values()) if len(values) > 1 else 0.0,
            "n": len(values), "worst_seed": worst, "worst": values[worst]}


def mcnemar(first: str, second: str) -> tuple[int, int, float]:
    """Exact McNemar test on paired 0/1 outcomes (strings of equal length): the counts of
    passages only `first` gets right (b) and only `second` gets right (c), and the two-sided
    p-value of b against Binomial(b + c, 1/2)."""
    from scipy.stats import binomtest

    if len(first) != len(second):
        raise ValueError("paired outcomes must cover the same passages")
    b = sum(x == "1" and y == "0" for x, y in zip(first, second))
    c = sum(x == "0" and y == "1" for x, y in zip(first, second))
    p = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    return b, c, float(p)


def _decimals(value: float) -> int:
    return 0 if abs(value) >= 100 else 3 if abs(value) >= 1 else 4


def _fmt(value: float, like: float | None = None) -> str:
    """Fixed decimals by magnitude (of `like` when given, so a std reads like its mean)."""
    return f"{value:.{_decimals(value if like is None else like)}f}"


def transfer_significance(runs: dict[int, dict]) -> list[str]:
    """Per seed and pooled over seeds: pretrained head vs random-backbone head on the same
    validation passages (exact McNemar), and the spread of the per-seed differences."""
    lines, b_all, c_all = [], 0, 0
    for seed, fig in sorted(runs.items()):
        b, c, p = mcnemar(fig["pretrained_correct"], fig["random_correct"])
        b_all, c_all = b_all + b, c_all + c
        lines.append(f"seed {seed}: pretrained right / random wrong {b}, the reverse {c}, "
                     f"exact McNemar p = {p:.3g}")
    from scipy.stats import binomtest

    pooled = binomtest(b_all, b_all + c_all, 0.5).pvalue if b_all + c_all else 1.0
    diffs = [fig["pretrained_minus_random"] for fig in runs.values()]
    lines.append(f"pooled over {len(runs)} seeds: {b_all} vs {c_all} passages, p = {pooled:.3g}; "
                 f"accuracy difference {statistics.fmean(diffs):+.4f}"
                 + (f" ± {statistics.stdev(diffs):.4f} (std over seeds)" if len(diffs) > 1 else ""))
    if len(diffs) > 1 and statistics.stdev(diffs) > 0:
        from scipy.stats import ttest_1samp

        t = ttest_1samp(diffs, 0.0)
        lines.append(f"seed-level paired t-test of the differences (each seed a replication: its "
                     f"own pretraining and heads): t = {t.statistic:.2f}, df = {len(diffs) - 1}, "
                     f"p = {t.pvalue:.3g}")
    return lines


def markdown_report(results: dict) -> str:
    """results: {"piece/precision/seed": {"figures": {...}, "date", "machine", "torch"}}."""
    groups: dict[tuple[str, str], dict[int, dict]] = defaultdict(dict)
    meta: dict[tuple[str, str], set] = defaultdict(set)
    for key, entry in results.items():
        piece, precision, seed = key.split("/")
        groups[piece, precision][int(seed)] = entry["figures"]
        meta[piece, precision].add((entry["date"], entry["machine"], entry["commit"]))
    out = ["# Reproduction report (benchmarks/reproduce.py)", ""]
    for (piece, precision), runs in sorted(groups.items()):
        out += [f"## {piece}, {precision}, {len(runs)} seeds ({', '.join(map(str, sorted(runs)))})",
                ""]
        out += [f"- {d}: {m}; commit {c}" for d, m, c in sorted(meta[piece, precision])]
        out += ["", "| figure | mean ± std | worst seed (value) |", "|---|---|---|"]
        figures = [f for f in next(iter(runs.values())) if not f.endswith("_correct")]
        for figure in figures:
            values = {s: fig[figure] for s, fig in runs.items()
                      if isinstance(fig.get(figure), (int, float))}
            if not values:
                continue
            s = summarise(values, figure)
            out.append(f"| {figure} | {_fmt(s['mean'])} ± {_fmt(s['std'], s['mean'])} "
                       f"(n={s['n']}) | {s['worst_seed']} ({_fmt(s['worst'])}) |")
        if piece == "transfer":
            out += [""] + [f"- {line}" for line in transfer_significance(runs)]
        out.append("")
    return "\n".join(out)
