"""Sentence, paragraph and chapter segmentation (unmask/text/segment.py)."""

import pytest

from unmask.text.reader import load_text
from unmask.text.segment import (
    is_heading,
    normalise,
    paragraph_spans,
    segment_book,
    sentence_spans,
    split_sentences,
)


@pytest.mark.parametrize("text, expected", [
    ("Mr. Darcy bowed. Mrs. Bennet did not.", ["Mr. Darcy bowed.", "Mrs. Bennet did not."]),
    ("Dr. Frankenstein met J. Smith in St. Petersburgh. It was cold.",
     ["Dr. Frankenstein met J. Smith in St. Petersburgh.", "It was cold."]),
    ("St. Petersburgh, Dec. 11th, 17—. You will rejoice.",
     ["St. Petersburgh, Dec. 11th, 17—.", "You will rejoice."]),
    ("We met Messrs. Hurst and Bingley, i.e. the gentlemen. They left.",
     ["We met Messrs. Hurst and Bingley, i.e. the gentlemen.", "They left."]),
    ("He paused... and went on. Then he stopped.",
     ["He paused... and went on.", "Then he stopped."]),
    ("It was 3 p.m. on Sunday. Nobody came.", ["It was 3 p.m. on Sunday.", "Nobody came."]),
])
def test_abbreviations_and_initials_do_not_end_a_sentence(text, expected):
    assert split_sentences(text) == expected


@pytest.mark.parametrize("text, expected", [
    # a question or exclamation inside quotes, followed by its attribution: one sentence
    ("“Is that his design in settling here?” said she. He laughed.",
     ["“Is that his design in settling here?” said she.", "He laughed."]),
    ("“I am sick of Mr. Bingley,” cried his wife.",
     ["“I am sick of Mr. Bingley,” cried his wife."]),
    ("“Oh! Single, my dear, to be sure!” replied Mrs. Bennet.",
     ["“Oh!", "Single, my dear, to be sure!” replied Mrs. Bennet."]),
    # a closed quotation followed by a new one: two sentences
    ("“Go away.” “I will not.”", ["“Go away.”", "“I will not.”"]),
    ('"Stop!" he cried. "Why?"', ['"Stop!" he cried.', '"Why?"']),
    ("‘You must come,’ said she. ‘Yes.’", ["‘You must come,’ said she.", "‘Yes.’"]),
    ("He said: _Never._ Then silence.", ["He said: _Never._", "Then silence."]),
])
def test_dialogue_keeps_its_attribution(text, expected):
    assert split_sentences(text) == expected


def test_offsets_point_at_the_original_text_with_its_line_wraps():
    text = "First line of a\nwrapped sentence. Second\none here!\n\nNew paragraph."
    paragraphs = paragraph_spans(text)
    assert [p.text for p in paragraphs] == [
        "First line of a wrapped sentence. Second one here!", "New paragraph."]
    first = paragraphs[0]
    sentences = sentence_spans(text[first.start:first.end], first.start)
    assert [s.text for s in sentences] == ["First line of a wrapped sentence.",
                                           "Second one here!"]
    for s in sentences + paragraphs:
        assert normalise(text[s.start:s.end]) == s.text


def test_headings_and_markup():
    for heading in ("CHAPTER IV.", "Chapter 12", "Letter 3", "Chapter the First", "XII."):
        assert is_heading(heading)
    for prose in ("It was the chapter he liked.", "I. was not there", "Volumes of text"):
        assert not is_heading(prose)
    book = ("Title page\n\nCHAPTER I.\n\n[Illustration: a house]\n\nIt began. It went on.\n\n"
            "CHAPTER II.\n\nThe end.")
    paragraphs = segment_book(book)
    assert [(p.kind, p.chapter, p.span.text) for p in paragraphs] == [
        ("text", 0, "Title page"), ("heading", 1, "CHAPTER I."),
        ("text", 1, "It began. It went on."), ("heading", 2, "CHAPTER II."),
        ("text", 2, "The end.")]
    assert [s.text for s in paragraphs[2].sentences] == ["It began.", "It went on."]


@pytest.mark.parametrize("name, chapters", [("frankenstein", 28), ("pride_and_prejudice", 61)])
def test_shipped_books_segment_with_exact_offsets(name, chapters):
    _, text = load_text(name)
    paragraphs = segment_book(text)
    assert max(p.chapter for p in paragraphs) == chapters  # Letters 1-4 + Chapters 1-24
    sentences = [s for p in paragraphs for s in p.sentences]
    assert len(sentences) > 3000
    assert all(normalise(text[s.start:s.end]) == s.text for s in sentences)
    assert all(a.end <= b.start for a, b in zip(sentences, sentences[1:]))
    texts = {s.text for s in sentences}
    assert not any(t.endswith((" Mr.", " Mrs.", " Dr.", " St.")) for t in texts)
