"""The candidate items of each stage format, built from the prepared book (pipeline.py).

A stage's `format` picks its builder from ITEM_FORMATS: `sentences` (one sentence, cut to the
sequence length), `pairs` (two adjacent sentences of one paragraph joined by [SEP]) or
`paragraphs` (a window of the running text starting at a paragraph). Which candidates a stage
keeps is stages.py's business (select_rebalanced).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from unmask.data.book.stages import Candidate


@dataclass
class BookTokens:
    """What the item builders read: the sentence records (pipeline.py's segments.json rows),
    their token ids, and the running text's tokens per split."""

    records: list[dict]  # id, paragraph, split, words, difficulty_pct, centrality_pct, ...
    sentence_ids: list[list[int]]
    usable: list[bool]  # within the sentence-length bounds (data.min/max_sentence_words)
    paragraph_starts: np.ndarray  # token offset of each paragraph in the running text (+ end)
    n_train: int  # paragraphs [0, n_train) train, the rest validate
    train_ids: list[int]
    val_ids: list[int]
    sep: int  # the [SEP] id
    length: int  # data.sequence_length
    per_paragraph: dict[int, list[int]] = field(init=False)  # sentence ids, in reading order

    def __post_init__(self) -> None:
        self.per_paragraph = {}
        for r in self.records:
            self.per_paragraph.setdefault(r["paragraph"], []).append(r["id"])


def sentence_items(book: BookTokens, split: str) -> list[Candidate]:
    return [Candidate(book.sentence_ids[r["id"]][:book.length], [r["id"]], r["difficulty_pct"],
                      r["centrality_pct"])
            for r in book.records if r["split"] == split and book.usable[r["id"]]]


def pair_items(book: BookTokens, split: str) -> list[Candidate]:
    """Adjacent usable sentences of one paragraph; the pair is as hard as its harder half and
    as central as its less central one."""
    out = []
    for ids in book.per_paragraph.values():
        for a, b in zip(ids, ids[1:]):
            ra, rb = book.records[a], book.records[b]
            if ra["split"] == split and book.usable[a] and book.usable[b]:
                tokens = (book.sentence_ids[a] + [book.sep] + book.sentence_ids[b])[:book.length]
                out.append(Candidate(tokens, [a, b],
                                     max(ra["difficulty_pct"], rb["difficulty_pct"]),
                                     min(ra["centrality_pct"], rb["centrality_pct"])))
    return out


def window_items(book: BookTokens, split: str) -> list[Candidate]:
    """A full window from each paragraph's start (while one fits), scored by the mean of the
    paragraph's sentences (difficulty 0 and centrality 1 for a paragraph without any)."""
    train = split == "train"
    stream = book.train_ids if train else book.val_ids
    base = 0 if train else int(book.paragraph_starts[book.n_train])
    paragraphs = range(book.n_train) if train else range(book.n_train,
                                                          len(book.paragraph_starts) - 1)
    out = []
    for pi in paragraphs:
        at = int(book.paragraph_starts[pi]) - base
        if at + book.length > len(stream):
            break
        own = [book.records[i] for i in book.per_paragraph.get(pi, [])]
        difficulty = float(np.mean([r["difficulty_pct"] for r in own])) if own else 0.0
        centrality = float(np.mean([r["centrality_pct"] for r in own])) if own else 1.0
        out.append(Candidate(stream[at:at + book.length], [pi], difficulty, centrality))
    return out


# stage format (config/book.py's FORMATS) -> fn(book, split) -> candidate items
ITEM_FORMATS: dict[str, Callable[[BookTokens, str], list[Candidate]]] = {
    "sentences": sentence_items, "pairs": pair_items, "paragraphs": window_items}
