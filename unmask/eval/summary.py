"""Plain-text tables of an evaluation report: samples beside the real text."""

from __future__ import annotations

# (label, block, key): block "generative" or "style"
ROWS = (
    ("judge NLL (nats/char)", "generative", "judge_nll_nats_per_char"),
    ("char entropy (nats)", "generative", "char_entropy"),
    ("distinct-2 (word bigrams)", "generative", "distinct_2"),
    ("self-BLEU-4", "generative", "self_bleu"),
    ("word validity", "generative", "word_validity"),
    ("type-token ratio", "style", "type_token_ratio"),
    ("Yule's K", "style", "yules_k"),
    ("Flesch-Kincaid grade", "style", "flesch_kincaid_grade"),
    ("Gunning Fog", "style", "gunning_fog"),
    ("function-word ratio", "style", "function_word_ratio"),
    ("punctuation density", "style", "punctuation_density"),
)


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def comparison_table(report: dict) -> str:
    """Samples | real text, one line per figure, from `unmask eval`'s generative and style
    blocks (a figure absent from both is left out)."""
    lines = [f"{'':28}{'samples':>10}{'real text':>11}"]
    for label, block, key in ROWS:
        part = report.get(block) or {}
        a, b = (part.get("samples") or {}).get(key), (part.get("reference") or {}).get(key)
        if a is None and b is None:
            continue
        lines.append(f"{label:28}{fmt(a):>10}{fmt(b):>11}")
    style = report.get("style") or {}
    for label, key in (("style distance", "style_distance"),
                       ("lexical Jaccard", "lexical_jaccard")):
        if style.get(key) is not None:
            lines.append(f"{label:28}{fmt(style[key]):>10}")
    return "\n".join(lines)


def print_report(result: dict) -> None:
    """`unmask eval` without --json: flat figures first, then the comparison table."""
    blocks = ("generative", "style", "likelihood_mc")
    for key, value in result.items():
        if key not in blocks:
            print(f"{key:>24}: {value}")
    for name, est in (result.get("likelihood_mc") or {}).items():
        stderr = "" if est["stderr"] is None else f" ± {est['stderr']:.4f}"
        print(f"{name + ' (MC)':>24}: {est['mean']:.4f}{stderr} nats/token "
              f"({est['windows']} windows x {est['draws']} draws x {est['points']} points)")
    if "generative" in result:
        sampler = result["generative"].get("sampler", {})
        print("\nsamples: " + ", ".join(f"{k}={v}" for k, v in sampler.items()))
        print(f"judge: {result['generative'].get('judge') or '-'}")
        print(comparison_table(result))
