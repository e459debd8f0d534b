"""Tokenizer kinds by name, and loading any of them from the JSON it saved.

A checkpoint or dataset records its tokenizer's `to_json()`; its `"type"` picks the class
here, so callers never name a concrete tokenizer to load one.
"""

from __future__ import annotations

import json
from pathlib import Path

from unmask.errors import UserError
from unmask.text.tokenizers.base import Tokenizer
from unmask.text.tokenizers.bpe import BPETokenizer
from unmask.text.tokenizers.char import CharTokenizer

# `tokenizers` (Hugging Face) is imported only when a BPE tokenizer is built or loaded.
TOKENIZERS: dict[str, type] = {"char": CharTokenizer, "bpe": BPETokenizer}


def load_tokenizer(data: dict) -> Tokenizer:
    """Rebuild a tokenizer from its `to_json()` dict, dispatching on `"type"`."""
    kind = data.get("type") if isinstance(data, dict) else None
    if not isinstance(kind, str) or kind not in TOKENIZERS:
        raise UserError(f"unknown tokenizer type {kind!r}; known types: {', '.join(TOKENIZERS)}")
    return TOKENIZERS[kind].from_json(data)


def load_tokenizer_file(path: str | Path) -> Tokenizer:
    """`load_tokenizer` on a saved tokenizer.json."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read tokenizer {path}: {err}") from None
    try:
        return load_tokenizer(data)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
