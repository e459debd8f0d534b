"""Difficulty of a sentence, in four measures and a weighted composite (seed 004).

- lexical rarity: the mean IDF of its words, with document frequencies counted over the
  paragraphs of a *reference* corpus (the other shipped books): a word this book uses but the
  others rarely do is rare. idf(w) = ln((1 + N) / (1 + df(w))) + 1 (scikit-learn's smoothed
  IDF); a word absent from the reference gets the largest value, ln(1 + N) + 1.
- syntactic complexity: the mean percentile rank of its length in words, its clause markers
  (commas, semicolons, colons, dashes, subordinating conjunctions and relative pronouns) and
  its Flesch-Kincaid grade (textstat).
- vocabulary richness: Yule's K = 10^4 (sum_i i^2 V_i - N) / N^2 over its words (N words,
  V_i types seen i times); repetition raises K, so a *low* K is the harder, richer text.
- thematic centrality: TF-IDF vectors (English stop words removed), reduced by truncated SVD
  (LSA), clustered by k-means; centrality is the cosine similarity to the centroid of the
  sentence's cluster. Off-theme sentences are harder.

The composite is the weighted mean of the percentile ranks (rarity, complexity, 1 - K rank,
1 - centrality rank). Ranks are taken against the *training* sentences, so a validation
sentence gets the rank it would have among them. Needs scikit-learn and textstat (the
`book` extra); nothing is downloaded.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from unmask.errors import UserError

WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")
CLAUSE_WORDS = frozenset("""
    which who whom whose that when whenever while whilst where wherever although though because
    since unless until whereas if as before after lest whether
""".split())
CLAUSE_PUNCTUATION = re.compile(r"[,;:]|—|--")


def words_of(text: str) -> list[str]:
    """Lower-cased words (letters, with inner apostrophes: "don't", "Elizabeth’s")."""
    return [w.lower() for w in WORD.findall(text)]


def yule_k(words: Sequence[str]) -> float:
    """Yule's K (1944) of a word sequence; 0 for an empty one."""
    n = len(words)
    if n == 0:
        return 0.0
    spectrum = Counter(Counter(words).values())  # i -> V_i
    m2 = sum(i * i * v for i, v in spectrum.items())
    return 1e4 * (m2 - n) / (n * n)


def idf_table(documents: Sequence[str]) -> tuple[dict[str, float], float]:
    """(word -> idf, idf of an unseen word) over `documents` (see the module docstring)."""
    df = Counter(w for doc in documents for w in set(words_of(doc)))
    n = len(documents)
    table = {w: math.log((1 + n) / (1 + c)) + 1 for w, c in df.items()}
    return table, math.log(1 + n) + 1


def lexical_rarity(text: str, idf: dict[str, float], unseen: float) -> float:
    words = words_of(text)
    return float(np.mean([idf.get(w, unseen) for w in words])) if words else unseen


def clause_markers(text: str) -> int:
    return len(CLAUSE_PUNCTUATION.findall(text)) + sum(w in CLAUSE_WORDS for w in words_of(text))


def _textstat():
    try:
        import textstat
    except ImportError:
        raise UserError("difficulty scoring needs textstat and scikit-learn: "
                        "pip install 'unmask[book]'") from None
    return textstat


def flesch_kincaid_grade(text: str) -> float:
    """textstat's Flesch-Kincaid grade (0.39 words/sentence + 11.8 syllables/word - 15.59)."""
    return float(_textstat().flesch_kincaid_grade(text))


def percentile_of(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mid-rank of each value among `reference`, in [0, 1]: the share of reference values
    below it plus half the share equal to it (ties share a rank)."""
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    values = np.asarray(values, dtype=np.float64)
    below = np.searchsorted(ref, values, side="left")
    upto = np.searchsorted(ref, values, side="right")
    return (below + upto) / (2.0 * max(1, len(ref)))


def centrality(train: Sequence[str], other: Sequence[str], n_clusters: int,
               svd_components: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centrality, cluster) of the train sentences and the centrality of `other`, from
    TF-IDF + truncated SVD + k-means fitted on `train` (see the module docstring)."""
    try:
        from sklearn.cluster import KMeans
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import normalize
    except ImportError:
        raise UserError("difficulty scoring needs scikit-learn: pip install 'unmask[book]'"
                        ) from None
    vectorizer = TfidfVectorizer(lowercase=True, stop_words="english", sublinear_tf=True,
                                 token_pattern=WORD.pattern)
    try:
        x = vectorizer.fit_transform(train)
    except ValueError:  # no content words at all
        return np.zeros(len(train)), np.zeros(len(train), dtype=np.int64), np.zeros(len(other))
    k = min(svd_components, x.shape[1] - 1, x.shape[0] - 1)
    svd = TruncatedSVD(n_components=k, random_state=seed) if k >= 1 else None
    dense = svd.fit_transform(x) if svd else x.toarray()
    dense = normalize(dense)
    clusters = max(1, min(n_clusters, len(train)))
    km = KMeans(n_clusters=clusters, n_init=4, random_state=seed).fit(dense)
    centroids = normalize(km.cluster_centers_)
    labels = km.labels_.astype(np.int64)
    train_c = np.einsum("ij,ij->i", dense, centroids[labels])
    if len(other):
        o = normalize(svd.transform(vectorizer.transform(other)) if svd
                      else vectorizer.transform(other).toarray())
        other_c = np.einsum("ij,ij->i", o, centroids[km.predict(o)])
    else:
        other_c = np.zeros(0)
    return train_c, labels, other_c


MEASURES = ("lexical_rarity", "syntactic_complexity", "yule_k", "centrality", "difficulty")


def score_sentences(train: Sequence[str], val: Sequence[str], reference: Sequence[str],
                    weights: dict[str, float], n_clusters: int, svd_components: int,
                    seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every measure of each train and val sentence, plus its percentile (`<name>_pct`,
    against the train sentences); `weights` has lexical/syntactic/richness/centrality."""
    idf, unseen = idf_table(reference)
    raw = []
    for texts in (train, val):
        words = [words_of(t) for t in texts]
        raw.append({
            "words": np.array([len(w) for w in words], dtype=np.float64),
            "clause_markers": np.array([clause_markers(t) for t in texts], dtype=np.float64),
            "fk_grade": np.array([flesch_kincaid_grade(t) for t in texts], dtype=np.float64),
            "lexical_rarity": np.array([lexical_rarity(t, idf, unseen) for t in texts]),
            "yule_k": np.array([yule_k(w) for w in words], dtype=np.float64),
        })
    train_c, clusters, val_c = centrality(train, val, n_clusters, svd_components, seed)
    raw[0]["centrality"], raw[0]["cluster"], raw[1]["centrality"] = train_c, clusters, val_c
    ref = raw[0]
    out = []
    for r in raw:
        syntactic = np.mean([percentile_of(r[k], ref[k])
                             for k in ("words", "clause_markers", "fk_grade")], axis=0)
        r["syntactic_complexity"] = syntactic
        out.append(r)
    ref_syn = out[0]["syntactic_complexity"]
    total = sum(weights.values())
    for r in out:
        pct = {name: percentile_of(r[name], ref[name] if name != "syntactic_complexity"
                                   else ref_syn)
               for name in ("lexical_rarity", "syntactic_complexity", "yule_k", "centrality")}
        r["difficulty"] = (weights["lexical"] * pct["lexical_rarity"]
                           + weights["syntactic"] * pct["syntactic_complexity"]
                           + weights["richness"] * (1 - pct["yule_k"])
                           + weights["centrality"] * (1 - pct["centrality"])) / total
        for name, value in pct.items():
            r[f"{name}_pct"] = value
    ref_difficulty = out[0]["difficulty"]
    for r in out:
        r["difficulty_pct"] = percentile_of(r["difficulty"], ref_difficulty)
    return out[0], out[1]


def summary(values: np.ndarray) -> dict[str, float]:
    """Percentiles (and mean, min, max) of one measure, for statistics.json."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {}
    qs = (5, 10, 25, 33, 50, 66, 75, 90, 95)
    out = {f"p{q}": float(np.percentile(values, q)) for q in qs}
    out.update(mean=float(values.mean()), min=float(values.min()), max=float(values.max()))
    return {k: round(v, 4) for k, v in out.items()}
