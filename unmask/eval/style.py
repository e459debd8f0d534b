"""Style of a set of texts (seed 004), and how far samples are from the reference text.

- sentence lengths (words per sentence; a sentence ends at . ! or ?): mean, std, median,
  10th/90th percentiles and a histogram;
- type-token ratio (distinct words / words) and Yule's K = 10^4 (sum_m m^2 V_m - N) / N^2
  (V_m words occurring m times, N words; lower = richer vocabulary, nearly independent of N);
- Flesch-Kincaid grade and Gunning Fog index from `textstat` (the `eval` extra; a
  maintained implementation, not ours), on the texts joined by newlines;
- function-word ratio (share of words in FUNCTION_WORDS: articles, pronouns, prepositions,
  conjunctions, auxiliaries, with Early Modern English forms such as thou, thee, hath);
- punctuation density (punctuation characters per character);
- `style_distance`: per-text features standardised by the reference texts' own spread,
  sqrt(mean_f ((mean_samples_f - mean_reference_f) / std_reference_f)^2): 0 = the same
  style on average, 1 = one reference standard deviation apart per feature;
- `lexical_jaccard`: |V_samples & V_reference| / |V_samples | V_reference| over word types.
"""

from __future__ import annotations

import math
import re
import statistics
import string
from collections import Counter

from unmask.eval.diversity import words

SENTENCE_END = re.compile(r"[.!?]+")
PUNCTUATION = frozenset(string.punctuation)
LENGTH_BINS = ((1, 5), (6, 10), (11, 20), (21, 40), (41, None))
FUNCTION_WORDS = frozenset("""
a an the this that these those some any no every each either neither all both
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his
himself she her hers herself it its itself they them their theirs themselves one
who whom whose which what whatever whoever
thou thee thy thine ye art hast hath dost doth shalt wilt wouldst couldst shouldst
and or but nor so yet for if then than because though although while whilst unless
until till since as whether
of in on at by to from with without within into onto upon about above below over under
through throughout across after before behind beside besides between beyond among
against toward towards near off out up down around along during except like unto
be am is are was were been being have has had having do does did doing
will would shall should can could may might must ought
not nay yea o oh ay here there where when why how now too very also even just only
""".split())


def sentence_lengths(text: str) -> list[int]:
    """Words in each sentence (pieces between . ! ? with at least one word)."""
    return [n for piece in SENTENCE_END.split(text) if (n := len(words(piece)))]


def type_token_ratio(tokens: list[str]) -> float | None:
    return len(set(tokens)) / len(tokens) if tokens else None


def yules_k(tokens: list[str]) -> float | None:
    """Yule's K = 10^4 (sum_m m^2 V_m - N) / N^2 (None without words)."""
    n = len(tokens)
    if not n:
        return None
    spectrum = Counter(Counter(tokens).values())  # m -> V_m
    return 1e4 * (sum(m * m * v for m, v in spectrum.items()) - n) / (n * n)


def function_word_ratio(tokens: list[str]) -> float | None:
    return sum(t in FUNCTION_WORDS for t in tokens) / len(tokens) if tokens else None


def punctuation_density(text: str) -> float | None:
    return sum(c in PUNCTUATION for c in text) / len(text) if text else None


def readability(text: str) -> dict:
    """Flesch-Kincaid grade and Gunning Fog, from textstat (None without it or without words)."""
    try:
        import textstat
    except ImportError:
        return {"missing": "readability needs textstat: pip install 'unmask[eval]'"}
    if not words(text):
        return {"flesch_kincaid_grade": None, "gunning_fog": None}
    return {"flesch_kincaid_grade": float(textstat.flesch_kincaid_grade(text)),
            "gunning_fog": float(textstat.gunning_fog(text))}


def _percentile(sorted_values: list[int], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def sentence_length_distribution(texts: list[str]) -> dict:
    lengths = sorted(n for t in texts for n in sentence_lengths(t))
    if not lengths:
        return {"sentences": 0}
    histogram = {f"{lo}-{hi}" if hi else f"{lo}+": sum(lo <= n and (hi is None or n <= hi)
                                                        for n in lengths)
                 for lo, hi in LENGTH_BINS}
    return {"sentences": len(lengths), "mean": statistics.fmean(lengths),
            "std": statistics.pstdev(lengths), "median": statistics.median(lengths),
            "p10": _percentile(lengths, 0.1), "p90": _percentile(lengths, 0.9),
            "histogram": histogram}


def style(texts: list[str]) -> dict:
    """The style figures of `texts` taken together."""
    tokens = [w for t in texts for w in words(t)]
    joined = "\n".join(texts)
    return {"sentence_length": sentence_length_distribution(texts),
            "type_token_ratio": type_token_ratio(tokens), "yules_k": yules_k(tokens),
            **readability(joined), "function_word_ratio": function_word_ratio(tokens),
            "punctuation_density": punctuation_density(joined), "words": len(tokens)}


def text_features(text: str) -> dict[str, float | None]:
    """Per-text features the style distance compares."""
    tokens = words(text)
    lengths = sentence_lengths(text)
    return {"mean_sentence_length": statistics.fmean(lengths) if lengths else None,
            "type_token_ratio": type_token_ratio(tokens),
            "function_word_ratio": function_word_ratio(tokens),
            "punctuation_density": punctuation_density(text),
            "mean_word_length": statistics.fmean(map(len, tokens)) if tokens else None}


def style_distance(samples: list[str], reference: list[str]) -> float | None:
    """Root-mean-square over features of (mean over samples - mean over reference) divided by
    the reference's standard deviation; features missing or constant in the reference skip."""
    sample_feats = [text_features(t) for t in samples]
    reference_feats = [text_features(t) for t in reference]
    terms = []
    for name in reference_feats[0] if reference_feats else ():
        ref = [f[name] for f in reference_feats if f[name] is not None]
        got = [f[name] for f in sample_feats if f[name] is not None]
        if len(ref) < 2 or not got or statistics.pstdev(ref) == 0:
            continue
        terms.append(((statistics.fmean(got) - statistics.fmean(ref))
                      / statistics.pstdev(ref)) ** 2)
    return math.sqrt(statistics.fmean(terms)) if terms else None


def lexical_jaccard(samples: list[str], reference: list[str]) -> float | None:
    a = {w for t in samples for w in words(t)}
    b = {w for t in reference for w in words(t)}
    return len(a & b) / len(a | b) if a | b else None


def style_report(samples: list[str], reference: list[str]) -> dict:
    """Samples' and reference's style side by side, with their distance and overlap."""
    return {"samples": style(samples), "reference": style(reference),
            "style_distance": style_distance(samples, reference),
            "lexical_jaccard": lexical_jaccard(samples, reference)}
