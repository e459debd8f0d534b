"""Random input never crashes the parsers with anything but their documented errors.

Each parser is driven by hypothesis with arbitrary bytes or strings; the only exception
allowed out of it is the project's UserError (one line, exit 2 in the CLI).
"""

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unmask.cli.errors import parse_overrides
from unmask.config.presets import resolve_config
from unmask.config.schema import RunConfig, apply_overrides
from unmask.errors import UserError
from unmask.sampling.infill import parse_infill
from unmask.text.reader import corpus_path, decode_utf8, load_text, strip_gutenberg
from unmask.text.tokenizers import load_tokenizer_file
from unmask.text.tokenizers.bpe import BPETokenizer
from unmask.text.tokenizers.char import CharTokenizer

FAST = settings(max_examples=300, deadline=None, derandomize=True,  # same cases every run
                suppress_health_check=[HealthCheck.function_scoped_fixture])
TOKENIZER = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz ABC,.!?'\n:;[]")
KEYS = ["optim.lr", "train.batch_size", "model.n_layer", "train.dtype", "model.dropout",
        "train.on_nan", "sample.top_p", "train.compile", "model.mode", "optim.lr_typo"]


@FAST
@given(st.binary(max_size=400))
def test_text_reader_decodes_or_names_the_bad_byte(raw):
    try:
        text = decode_utf8(raw, "book.txt")
    except UserError as err:
        assert "book.txt: not valid UTF-8 at byte offset" in str(err)
        return
    assert "\r\n" not in text and not text.startswith("\ufeff")
    stripped = strip_gutenberg(text)
    assert isinstance(stripped, str) and len(stripped) <= len(text) + 1


@FAST
@given(st.binary(max_size=3000))
def test_loading_any_file_is_a_text_or_a_user_error(tmp_path_factory, raw):
    path = Path(tmp_path_factory.mktemp("fuzz")) / "book.txt"
    path.write_bytes(raw)
    try:
        name, text = load_text(str(path))
    except UserError as err:
        assert "\n" not in str(err)  # one line
        return
    assert name == "book" and len(text) >= 1000


@FAST
@given(st.text(alphabet=st.sampled_from("abc []\\:MASK0123456789-"), max_size=60))
def test_infill_syntax_parses_or_says_why(text):
    try:
        ids, fixed = parse_infill(text, TOKENIZER)
    except UserError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert len(ids) == len(fixed)
    holes = [i for i, f in zip(ids, fixed) if not f]
    assert all(i == TOKENIZER.mask_id for i in holes)
    assert all(i < TOKENIZER.vocab_size for i, f in zip(ids, fixed) if f)


@FAST
@given(st.text(max_size=80))
def test_char_tokenizer_round_trips_its_alphabet_or_names_the_characters(text):
    try:
        ids = TOKENIZER.encode(text)
    except UserError as err:
        assert "not in the tokenizer's vocabulary" in str(err)
        return
    assert TOKENIZER.decode(ids) == text


@FAST
@given(st.lists(st.tuples(st.sampled_from(KEYS), st.text(max_size=12)), max_size=4),
       st.lists(st.text(max_size=15), max_size=2))
def test_overrides_apply_or_raise_a_config_error(pairs, junk):
    argv = [f"--{k}={v}" for k, v in pairs] + junk
    try:
        config = apply_overrides(RunConfig(), parse_overrides(argv))
    except UserError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert isinstance(config, RunConfig) and config.optim.lr > 0


@FAST
@given(st.text(max_size=30))
def test_any_preset_or_file_name_resolves_or_names_the_choices(name):
    try:
        resolve_config(name or None)
    except UserError as err:
        assert "\n" not in str(err)


# ------------------------------------------------------------------ the BPE tokenizer

BOOK = corpus_path("frankenstein").read_text(encoding="utf-8")[:30000] + " café — “naïve” ½\n"
BPE = BPETokenizer.train(BOOK, min_vocab=300, max_vocab=600)


@FAST
@given(st.text(max_size=120))
def test_bpe_round_trips_any_text_with_text_ids_only(text):
    ids = BPE.encode(text)
    assert all(0 <= i < BPE.vocab_size for i in ids)  # never a special id, whatever the text
    assert BPE.decode(ids) == text
    assert BPE.count_bytes(ids) == len(text.encode("utf-8"))


@FAST
@given(st.lists(st.text(max_size=40), max_size=5))
def test_bpe_batched_encoding_equals_one_by_one(texts):
    assert BPE.encode_many(texts) == [BPE.encode(t) for t in texts]


@FAST
@given(st.lists(st.integers(-3, BPE.extended_vocab_size + 3), max_size=30))
def test_bpe_decodes_any_id_list_or_names_the_bad_id(ids):
    try:
        text = BPE.decode(ids)
    except UserError as err:
        assert any(not 0 <= i < BPE.extended_vocab_size for i in ids)
        assert "outside the vocabulary" in str(err)
        return
    assert all(0 <= i < BPE.extended_vocab_size for i in ids)
    assert isinstance(text, str) and text.count("[MASK]") >= ids.count(BPE.mask_id)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)


@FAST
@given(data=st.dictionaries(st.sampled_from(["type", "tokenizer", "info", "model", "vocab",
                                             "chars"]), JSON, max_size=4),
       kind=st.sampled_from(["as is", "bpe", "char"]))
def test_any_tokenizer_json_loads_or_raises_a_user_error(tmp_path_factory, data, kind):
    """Junk, a real BPE spec with junk mixed in, or a character list of anything."""
    if kind == "bpe":
        data = {**data, "type": "bpe", "tokenizer": {**BPE.spec, **data}}
    elif kind == "char":
        data = {**data, "type": "char"}
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    try:
        tokenizer = load_tokenizer_file(path)
    except UserError as err:
        assert str(path) in str(err)
        return
    ids = list(range(tokenizer.vocab_size))
    text = tokenizer.decode(ids)
    if kind == "char":  # a character vocabulary round-trips itself
        assert tokenizer.encode(text) == ids
    assert tokenizer.decode([tokenizer.mask_id]) == "[MASK]"
