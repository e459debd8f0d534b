"""Diversity of generated text: what a judge's NLL cannot see.

A sampler can lower a judge's NLL by repeating frequent words ("the the the"), so every
generative-quality report prints these beside it (issue 14):

- `char_entropy`: entropy (nats) of the character-unigram distribution of all texts pooled
  (real Tiny Shakespeare: about 3.3; repetitive text: much less); `char_entropy_per_text`
  is the mean of each text's own entropy (MDLM / ReMDM's per-sample figure, biased low for
  short texts);
- `distinct_n`: distinct word n-grams / all word n-grams, n-grams within each text, counted
  over all texts (Li et al. 2016); 1 = no n-gram repeats;
- `self_bleu`: mean BLEU-4 of each text against all the others as references (Zhu et al.
  2018, Texygen): high = the texts resemble each other. nltk's `sentence_bleu` with its
  smoothing method 1, over lower-cased words.

Words are lower-cased alphabetic runs, as in word validity (eval/words.py).
"""

from __future__ import annotations

import math
from collections import Counter

from unmask.eval.words import WORD


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def entropy(counts: Counter) -> float:
    """Plug-in entropy (nats) of a count table; 0 for an empty one."""
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values() if c) if total else 0.0


def char_entropy(texts: list[str]) -> float:
    """Entropy of the character-unigram distribution of all texts pooled (nats)."""
    return entropy(Counter("".join(texts)))


def char_entropy_per_text(texts: list[str]) -> float:
    return sum(entropy(Counter(t)) for t in texts) / len(texts) if texts else 0.0


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: list[str], n: int = 2) -> float | None:
    """Distinct word n-grams / all word n-grams (None when the texts hold none)."""
    grams = [g for t in texts for g in ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else None


def self_bleu(texts: list[str], max_n: int = 4) -> float | None:
    """Mean BLEU-`max_n` (uniform weights) of each text against all the others; None with
    fewer than two texts that have words. Needs nltk (the `eval` extra)."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    tokens = [words(t) for t in texts]
    tokens = [t for t in tokens if t]
    if len(tokens) < 2:
        return None
    smooth = SmoothingFunction().method1
    weights = (1.0 / max_n,) * max_n
    scores = [sentence_bleu(tokens[:i] + tokens[i + 1:], hyp, weights=weights,
                            smoothing_function=smooth) for i, hyp in enumerate(tokens)]
    return sum(scores) / len(scores)


def diversity(texts: list[str]) -> dict:
    """Every figure above for one set of texts."""
    result = {"texts": len(texts), "chars": sum(len(t) for t in texts),
              "char_entropy": char_entropy(texts),
              "char_entropy_per_text": char_entropy_per_text(texts),
              "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
              "distinct_3": distinct_n(texts, 3)}
    try:
        result["self_bleu"] = self_bleu(texts)
    except ImportError:
        result["self_bleu"] = None
        result["missing"] = "self_bleu needs nltk: pip install 'unmask[eval]'"
    return result
