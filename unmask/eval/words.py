"""Word validity: the share of generated words that occur in the training text."""

from __future__ import annotations

import re

WORD = re.compile(r"[A-Za-z]+")


def word_validity(texts: list[str], known_words: set[str]) -> tuple[float, int]:
    """Fraction of alphabetic runs (lower-cased) in `texts` that occur in the training text."""
    words = [w.lower() for text in texts for w in WORD.findall(text)]
    if not words:
        return 0.0, 0
    return sum(w in known_words for w in words) / len(words), len(words)


def vocabulary_of(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text)}
