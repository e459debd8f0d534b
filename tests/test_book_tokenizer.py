"""The byte-level BPE trained on a book (unmask/text/tokenizers/bpe.py)."""

import json

import pytest

from unmask.text.reader import corpus_path, load_text
from unmask.text.tokenizers import SPECIAL_NAMES, Tokenizer, load_tokenizer, load_tokenizer_file
from unmask.text.tokenizers.bpe import (
    BPETokenizer,
    bytes_to_token,
    coverage_size,
    pretokens,
    token_to_bytes,
)

pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def frankenstein():
    return load_text("frankenstein")[1]


@pytest.fixture(scope="module")
def tok(frankenstein):
    return BPETokenizer.train(frankenstein, target_coverage=0.8)


def test_round_trips_the_whole_book_exactly(tok, frankenstein):
    ids = tok.encode(frankenstein)
    assert tok.decode(ids) == frankenstein
    raw = corpus_path("frankenstein").read_text(encoding="utf-8")  # header, footer and all
    assert tok.decode(tok.encode(raw)) == raw
    assert tok.count_bytes(ids) == len(frankenstein.encode("utf-8"))
    assert len(frankenstein) / len(ids) > 3  # characters per token: a real compression


def test_other_text_round_trips_too(tok):
    text = "Ünïcødé 日本語 🙂 tabs\tand\r\nnewlines — and [MASK] as plain text"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert max(ids) < tok.vocab_size  # "[MASK]" in text is text, never the special


def test_no_token_of_the_encoded_book_is_a_piece_of_a_character(tok, frankenstein):
    """Curly quotes and dashes are whole tokens: a sampled id sequence cannot split them."""
    for i in set(tok.encode(frankenstein)):
        tok.token_text(i).decode("utf-8")  # raises on a fragment
    for ch in "“”’—‘æêôéè":
        assert len(tok.encode(ch)) == 1


def test_specials_follow_the_text_vocabulary(tok):
    assert isinstance(tok, Tokenizer)
    V = tok.vocab_size
    assert [tok.special_id(n) for n in SPECIAL_NAMES] == list(range(V, V + len(SPECIAL_NAMES)))
    assert tok.mask_id == V and tok.extended_vocab_size == V + len(SPECIAL_NAMES)
    assert tok.decode([*tok.encode("Hi"), tok.special_id("sep"), tok.mask_id]) == "Hi[SEP][MASK]"
    table = tok.token_bytes()
    assert len(table) == tok.extended_vocab_size and table[V:] == [0] * len(SPECIAL_NAMES)
    with pytest.raises(ValueError, match="unknown special"):
        tok.special_id("nope")


def test_saved_and_loaded_through_the_registry(tok, frankenstein, tmp_path):
    data = json.loads(json.dumps(tok.to_json()))
    again = load_tokenizer(data)
    assert isinstance(again, BPETokenizer) and again.kind == "bpe"
    sample = frankenstein[:5000]
    assert again.encode(sample) == tok.encode(sample)
    tok.save(tmp_path / "tokenizer.json")
    assert load_tokenizer_file(tmp_path / "tokenizer.json").vocab_size == tok.vocab_size


def test_vocabulary_is_sized_by_coverage(frankenstein):
    words = pretokens(frankenstein)
    total = sum(words.values())
    sizes = {}
    for target in (0.6, 0.8, 0.9):
        t = BPETokenizer.train(frankenstein, target_coverage=target)
        vocab = t.spec["model"]["vocab"]
        covered = sum(n for w, n in words.items() if w in vocab) / total
        assert covered >= target - 0.002 and t.info["coverage"] == pytest.approx(covered)
        sizes[target] = t.vocab_size
    assert sizes[0.6] < sizes[0.8] < sizes[0.9]


def test_coverage_size_by_hand():
    vocab = {"a": 0, "b": 1, "Ġthe": 300, "Ġcat": 400}
    words = {"Ġthe": 6, "Ġcat": 3, "Ġdog": 1}  # 10 occurrences
    assert coverage_size(vocab, words, 0.6, 257) == 301  # "Ġthe" alone covers 60 %
    assert coverage_size(vocab, words, 0.9, 257) == 401
    assert coverage_size(vocab, words, 0.95, 257) == 401  # never reached: everything
    assert coverage_size(vocab, words, 0.1, 512) == 512  # the lower bound


def test_byte_alphabet_is_reversible():
    data = bytes(range(256))
    assert token_to_bytes(bytes_to_token(data)) == data
    assert bytes_to_token(b" the") == "Ġthe"
