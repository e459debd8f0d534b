import pytest

from unmask.text.reader import TextError, load_text, strip_gutenberg
from unmask.text.tokenizers.char import SPECIAL_TOKENS, CharTokenizer


def test_round_trip_and_special_ids():
    text = "To be, or not to be: that is the question.\n"
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text
    assert tok.mask_id == tok.vocab_size == len(set(text))
    assert tok.special_tokens["wrong_token_id"] == tok.vocab_size + 1
    assert tok.extended_vocab_size == tok.vocab_size + len(SPECIAL_TOKENS)
    assert tok.decode([tok.mask_id]) == "[MASK]"


def test_save_load_json(tmp_path):
    tok = CharTokenizer.from_text("héllo wörld — “quotes”")
    tok.save(tmp_path / "tokenizer.json")
    assert CharTokenizer.load(tmp_path / "tokenizer.json") == tok
    assert (tmp_path / "tokenizer.json").read_text(encoding="utf-8").startswith("{")


def test_unknown_character_is_a_clear_error():
    with pytest.raises(ValueError, match="not in the tokenizer's vocabulary"):
        CharTokenizer.from_text("abc").encode("abz")


def test_bad_utf8_names_byte_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"a" * 1500 + b"\xff" + b"b" * 10)
    with pytest.raises(TextError, match="byte offset 1500"):
        load_text(str(path))


def test_empty_and_short_texts_rejected(tmp_path):
    (tmp_path / "empty.txt").write_text("   \n")
    with pytest.raises(TextError, match="empty"):
        load_text(str(tmp_path / "empty.txt"))
    (tmp_path / "short.txt").write_text("too short")
    with pytest.raises(TextError, match="at least"):
        load_text(str(tmp_path / "short.txt"))


def test_missing_file_is_named():
    with pytest.raises(TextError, match="nope.txt"):
        load_text("nope.txt")


def test_gutenberg_header_and_footer_stripped():
    _, text = load_text("frankenstein")
    assert "Project Gutenberg" not in text[:2000]
    assert "*** END OF" not in text and "*** START OF" not in text
    assert "Frankenstein" in text[:500]
    raw = "header\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nbody\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence"
    assert strip_gutenberg(raw) == "body\n"


def test_text_without_markers_untouched():
    _, text = load_text("tinyshakespeare")
    assert text.startswith("First Citizen:") and len(text) == 1115394
