"""Tokenizers behind one protocol (see base.py); `load_tokenizer` picks one from its JSON."""

from unmask.text.tokenizers.base import SPECIAL_NAMES, Tokenizer, single_token_id
from unmask.text.tokenizers.char import CharTokenizer
from unmask.text.tokenizers.registry import (
           TOKENIZERS,
           load_tokenizer,
           load_tokenizer_file,
)

__all__ = ["SPECIAL_NAMES", "TOKENIZERS", "CharTokenizer", "Tokenizer", "load_tokenizer",
           "load_tokenizer_file", "single_token_id"]
