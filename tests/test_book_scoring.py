"""Difficulty measures (unmask/data/book/scoring.py) against independent references."""

import math

import numpy as np
import pytest

from unmask.data.book import scoring

textstat = pytest.importorskip("textstat")
pytest.importorskip("sklearn")

FIXED = [
    "The cat sat on the mat.",
    "I am already far north of London, and as I walk in the streets of Petersburgh, I feel "
    "a cold northern breeze play upon my cheeks, which braces my nerves and fills me with "
    "delight.",
    "It is a truth universally acknowledged, that a single man in possession of a good "
    "fortune, must be in want of a wife.",
]


@pytest.mark.parametrize("text", FIXED)
def test_flesch_kincaid_equals_textstat(text):
    assert scoring.flesch_kincaid_grade(text) == textstat.flesch_kincaid_grade(text)


def test_scored_sentences_carry_textstat_grades():
    train, val = scoring.score_sentences(FIXED * 4, FIXED[:1], ["a reference text"],
                                         {"lexical": 1, "syntactic": 1, "richness": 1,
                                          "centrality": 1}, 2, 4, seed=0)
    assert list(train["fk_grade"][:3]) == [textstat.flesch_kincaid_grade(t) for t in FIXED]
    assert val["fk_grade"][0] == textstat.flesch_kincaid_grade(FIXED[0])


def test_yule_k_hand_computed():
    # "a a b c c c": N = 6; a twice, b once, c three times -> V1 = V2 = V3 = 1;
    # M2 = 1*1 + 4*1 + 9*1 = 14; K = 10^4 (14 - 6) / 36 = 2222.2...
    assert scoring.yule_k("a a b c c c".split()) == pytest.approx(1e4 * 8 / 36)
    assert scoring.yule_k("every word here differs".split()) == 0.0  # M2 = N
    assert scoring.yule_k([]) == 0.0
    # K grows with repetition
    assert scoring.yule_k("the the the cat".split()) > scoring.yule_k("the the a cat".split())


def test_idf_by_hand():
    docs = ["the cat", "the dog", "a bird"]
    idf, unseen = scoring.idf_table(docs)
    assert idf["the"] == pytest.approx(math.log(4 / 3) + 1)  # df 2 of N 3
    assert idf["cat"] == pytest.approx(math.log(4 / 2) + 1)
    assert unseen == pytest.approx(math.log(4) + 1)
    assert scoring.lexical_rarity("The cat flew", idf, unseen) == pytest.approx(
        (idf["the"] + idf["cat"] + unseen) / 3)


def test_clause_markers_and_words():
    assert scoring.words_of("Elizabeth’s letter, which I don't like!") == [
        "elizabeth’s", "letter", "which", "i", "don't", "like"]
    # a comma, "which", a semicolon, "because", an em dash
    assert scoring.clause_markers("He came, which pleased her; because—well.") == 5


def test_percentile_is_a_mid_rank():
    ref = np.array([1.0, 2.0, 2.0, 3.0])
    assert list(scoring.percentile_of(np.array([0.0, 1.0, 2.0, 3.0, 9.0]), ref)) == [
        0.0, 0.125, 0.5, 0.875, 1.0]


def test_centrality_ranks_on_theme_sentences_above_off_theme_ones():
    theme = [f"The monster wandered the frozen mountains alone, cursing his creator {i}."
             for i in range(12)]
    other = ["Tea and cakes were served in the drawing room."]
    train_c, clusters, other_c = scoring.centrality(theme + other, theme[:1] + other,
                                                    n_clusters=1, svd_components=4, seed=0)
    assert train_c[:12].min() > train_c[12]
    assert other_c[0] > other_c[1] and len(clusters) == 13


def test_composite_follows_its_weights():
    texts = ["Short one here.",
             "A considerably longer sentence, which has clauses; because it wanders, it is "
             "harder to read than the others."] * 5
    weights = {"lexical": 0.0, "syntactic": 1.0, "richness": 0.0, "centrality": 0.0}
    train, _ = scoring.score_sentences(texts, [], ["short one here"], weights, 2, 2, seed=0)
    assert np.allclose(train["difficulty"], train["syntactic_complexity_pct"])
    assert train["difficulty"][1] > train["difficulty"][0]
    assert set(scoring.MEASURES) <= set(train)
