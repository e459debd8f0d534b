"""Diversity, style and judge metrics against hand-computed values and textstat (issue 14)."""

import math

import pytest
import torch

from unmask.config.schema import ModelConfig
from unmask.eval.diversity import char_entropy, char_entropy_per_text, distinct_n, self_bleu
from unmask.eval.generative import generative_report, reference_texts
from unmask.eval.judge import _window_plan, judge_text_nlls, nll_sums
from unmask.eval.style import (
    function_word_ratio,
    lexical_jaccard,
    punctuation_density,
    sentence_length_distribution,
    sentence_lengths,
    style,
    style_distance,
    type_token_ratio,
    yules_k,
)
from unmask.model.pretrained import Pretrained
from unmask.model.transformer import Transformer
from unmask.sampling.causal import context_start
from unmask.text.tokenizers.char import CharTokenizer

TEXTS = [
    "The quick brown fox jumps over the lazy dog. It was not amused, and neither were we.",
    "ROMEO:\nBut, soft! what light through yonder window breaks? It is the east, and Juliet "
    "is the sun.",
    "Notwithstanding the considerable complications, the administration's extraordinarily "
    "comprehensive investigation continued indefinitely.",
]


def test_character_entropy_by_hand():
    assert char_entropy(["aabb"]) == pytest.approx(math.log(2))
    assert char_entropy(["aa", "bb"]) == pytest.approx(math.log(2))  # pooled
    assert char_entropy_per_text(["aa", "bb"]) == 0.0  # each text alone is constant
    assert char_entropy(["abcd"]) == pytest.approx(math.log(4))


def test_distinct_n_by_hand():
    # words: the cat the cat | the dog; bigrams (the cat)(cat the)(the cat) + (the dog)
    assert distinct_n(["The cat, the cat.", "the dog"], 2) == pytest.approx(3 / 4)
    assert distinct_n(["the the the the"], 2) == pytest.approx(1 / 3)
    assert distinct_n(["the the the the"], 1) == pytest.approx(1 / 4)
    assert distinct_n(["one"], 2) is None


def test_self_bleu_by_hand():
    """A vs B: unigram precision 5/6 (clipped 'the'), bigrams 3/5, trigrams 2/4, 4-grams 1/3,
    equal lengths (no brevity penalty); B vs A the same by symmetry here."""
    a, b = "the cat sat on the mat", "the cat sat on a mat"
    assert self_bleu([a, b], max_n=2) == pytest.approx(math.sqrt(5 / 6 * 3 / 5))
    assert self_bleu([a, b]) == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    assert self_bleu([a, a, a]) == pytest.approx(1.0)
    assert self_bleu([a]) is None


def test_yules_k_ttr_and_ratios_by_hand():
    tokens = "a a b b b c".split()  # V_1 = 1 (c), V_2 = 1 (a), V_3 = 1 (b), N = 6
    assert yules_k(tokens) == pytest.approx(1e4 * (1 + 4 + 9 - 6) / 36)
    assert type_token_ratio(tokens) == pytest.approx(3 / 6)
    assert yules_k([]) is None and type_token_ratio([]) is None
    assert function_word_ratio("the cat and the dog".split()) == pytest.approx(3 / 5)
    assert function_word_ratio("thou art and hath".split()) == pytest.approx(1.0)
    assert punctuation_density("a, b.") == pytest.approx(2 / 5)


def test_sentence_lengths_by_hand():
    assert sentence_lengths("One two. Three four five! Six? ...") == [2, 3, 1]
    dist = sentence_length_distribution(["One two. Three four five!", "Six?"])
    assert dist["sentences"] == 3 and dist["mean"] == pytest.approx(2.0)
    assert dist["median"] == 2 and dist["histogram"]["1-5"] == 3
    assert dist["p10"] == pytest.approx(1.2) and dist["p90"] == pytest.approx(2.8)


def test_readability_equals_textstat():
    textstat = pytest.importorskip("textstat")
    for text in TEXTS:
        got = style([text])
        assert got["flesch_kincaid_grade"] == textstat.flesch_kincaid_grade(text)
        assert got["gunning_fog"] == textstat.gunning_fog(text)
    joined = style(TEXTS)  # several texts: scored joined by newlines
    assert joined["gunning_fog"] == textstat.gunning_fog("\n".join(TEXTS))
    # the long words of the third text read harder than the first
    assert style([TEXTS[2]])["flesch_kincaid_grade"] > style([TEXTS[0]])["flesch_kincaid_grade"]


def test_style_distance_and_jaccard():
    reference = TEXTS * 2 + ["Is this a dagger which I see before me? Come, let me clutch."]
    assert style_distance(reference, reference) == pytest.approx(0.0)
    repetitive = ["the the the the the the the the the the"] * 4
    assert style_distance(repetitive, reference) > 1.0
    assert lexical_jaccard(["a b c"], ["b c d"]) == pytest.approx(2 / 4)


# ---------------------------------------------------------------- the judge

TOK = CharTokenizer.from_text("\nabcdefghij .")


def _judge(block: int = 8) -> Pretrained:
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=block,
                                    vocab_size=TOK.extended_vocab_size,
                                    mode="language_model")).eval()
    return Pretrained(model, TOK, None, {}, "judge")


def test_window_plan_covers_every_prediction_once_with_the_samplers_context():
    for T in (2, 5, 9, 10, 30, 31):
        seen = []
        for start, lo, hi in _window_plan(T, 8):
            for q in range(lo, hi + 1):
                assert context_start(q, 8) == start and q - start < 8
                seen.append(q)
        assert seen == list(range(T - 1))


def test_judge_nll_equals_a_naive_token_by_token_loop():
    judge = _judge()
    text = "abc defg hij.abc\nde fgh ij. abcd"  # 32 characters: past the 8-token context
    ids = torch.tensor([TOK.encode("\n" + text)])
    expected = 0.0
    with torch.no_grad():
        for p in range(1, ids.size(1)):  # predict token p from its sliding context
            start = context_start(p - 1, 8)
            logits = judge.model(ids[:, start:p])[0, -1, :TOK.vocab_size].double()
            expected -= float(logits.log_softmax(-1)[ids[0, p]])
    assert float(nll_sums(judge.model, ids, 1, TOK.vocab_size)[0]) == pytest.approx(
        expected, rel=1e-6)
    assert judge_text_nlls(judge, [text, "ab"])[0] == pytest.approx(expected, rel=1e-6)


def test_generative_report_sides_and_reference_passages(shakespeare):
    reference = reference_texts(shakespeare, 4, 50)
    assert len(reference) == 4 and all(len(t) == 50 for t in reference)
    assert reference == reference_texts(shakespeare, 4, 50)  # seeded
    report = generative_report(["the the the the the"] * 4, reference, known_words={"the"})
    assert report["samples"]["distinct_2"] < report["reference"]["distinct_2"]
    assert report["samples"]["word_validity"] == 1.0 and report["judge"] is None
    assert "judge_hint" in report
