import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unmask.data.dataset import Dataset
from unmask.data.prepare import prepare
from unmask.data.staged.config import StagedDataError
from unmask.data.staged.prepare import prepare_staged_dataset
from unmask.errors import UserError
from unmask.text.tokenizers import (
    SPECIAL_NAMES,
    TOKENIZERS,
    CharTokenizer,
    Tokenizer,
    load_tokenizer,
    load_tokenizer_file,
    single_token_id,
)

ALPHABET = "ab \nçé€—“”😀"  # 1-, 2-, 3- and 4-byte UTF-8 characters
TOK = CharTokenizer.from_text(ALPHABET)

# seed 000's meta.json keys, by the short names callers now use
LEGACY_KEYS = {"mask": "mask_token_id", "wrong": "wrong_token_id", "good": "remask_good_id",
               "bad": "remask_wrong_id", "pad": "pad_token_id", "cls": "cls_token_id",
               "sep": "sep_token_id"}


def test_char_tokenizer_satisfies_the_protocol():
    assert isinstance(TOK, Tokenizer)
    assert TOKENIZERS[TOK.kind] is CharTokenizer and TOK.to_json()["type"] == TOK.kind


def test_special_ids_by_name_equal_the_legacy_ids():
    assert set(SPECIAL_NAMES) == LEGACY_KEYS.keys()
    for name, key in LEGACY_KEYS.items():
        assert TOK.special_id(name) == TOK.special_tokens[key]
    assert TOK.special_id("mask") == TOK.mask_id == TOK.vocab_size
    ids = [TOK.special_id(n) for n in SPECIAL_NAMES]
    assert sorted(ids) == list(range(TOK.vocab_size, TOK.extended_vocab_size))
    with pytest.raises(ValueError, match="unknown special token 'cls_token_id'; known: mask"):
        TOK.special_id("cls_token_id")


def test_load_tokenizer_round_trips_to_json(tmp_path):
    data = json.loads(json.dumps(TOK.to_json()))  # through real JSON, as files and checkpoints
    assert load_tokenizer(data) == TOK
    TOK.save(tmp_path / "tokenizer.json")
    assert load_tokenizer_file(tmp_path / "tokenizer.json") == TOK


@pytest.mark.parametrize("data", [{"type": "wordpiece", "vocab": []}, {"chars": ["a"]}, []])
def test_unknown_type_is_a_one_line_user_error(data):
    with pytest.raises(UserError, match="unknown tokenizer type .*; known types: char") as err:
        load_tokenizer(data)
    assert "\n" not in str(err.value)


def test_unreadable_tokenizer_file_is_named(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="tokenizer.json"):
        load_tokenizer_file(path)
    path.write_text('{"type": "bpe9"}', encoding="utf-8")
    with pytest.raises(UserError, match=r"tokenizer.json: unknown tokenizer type 'bpe9'"):
        load_tokenizer_file(path)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=ALPHABET))
def test_byte_count_is_the_utf8_length(text):
    ids = TOK.encode(text)
    assert TOK.count_bytes(ids) == len(text.encode("utf-8"))
    table = TOK.token_bytes()
    assert len(table) == TOK.extended_vocab_size
    assert sum(table[i] for i in ids) == len(text.encode("utf-8"))
    assert TOK.count_bytes(ids + [TOK.mask_id, TOK.special_id("sep")]) == len(text.encode())


def test_dataset_reports_validation_bytes(tmp_path):
    src = tmp_path / "book.txt"
    src.write_text("Café “crème” — naïve 😀 façade.\n" * 60, encoding="utf-8")
    data = Dataset.load(prepare(str(src), tmp_path / "book"))
    val_text = data.tokenizer.decode(data.val.tolist())
    assert data.val_bytes == len(val_text.encode("utf-8")) == data.split_bytes("val")
    assert data.val_bytes_per_token == pytest.approx(data.val_bytes / len(data.val))
    assert data.val_bytes_per_token > 1  # multi-byte characters count more than one byte


def test_newline_lookup_for_paragraphs():
    assert single_token_id(TOK, "\n") == TOK.encode("\n")[0]
    assert single_token_id(CharTokenizer.from_text("no newline here"), "\n") is None
    assert single_token_id(TOK, "ab") is None  # two tokens: not a single structural token


def test_staged_prepare_needs_a_newline_token(tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    (folder / "input.txt").write_text("It was a dark and stormy night; " * 200, encoding="utf-8")
    (folder / "training_config.py").write_text(
        "TEXT_SOURCE = 'input.txt'\n"
        "UNMASKING_STAGES = [{'type': 'random', 'max_masked_ratio': 0.8, 'val_loss_stale_count': 2}]\n"
        "VALIDATION_STAGES = [{'type': 'random', 'max_masked_ratio': 1.0}]\n"
        "BLOCK_SIZE = 16\nUSE_PARAGRAPH_BOUNDARIES = True\n", encoding="utf-8")
    with pytest.raises(StagedDataError, match="newline that is one token"):
        prepare_staged_dataset(folder, log=lambda *_: None)
