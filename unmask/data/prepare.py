"""Corpus -> dataset directory: train.bin / val.bin (uint16), tokenizer.json, meta.json.

The split is nanoGPT's: the first 90 % of characters train, the rest validate, so a loss on
this split compares directly with nanoGPT's shakespeare_char numbers. Preparing twice is a no-op
when the source text has not changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from unmask.errors import UserError
from unmask.text.reader import load_text
from unmask.text.tokenizers import CharTokenizer, Tokenizer

FORMAT_VERSION = 1

TRAIN_FRACTION = 0.9

DEFAULT_BLOCK_SIZE = 1024


def build_meta(tokenizer: Tokenizer, name: str, digest: str, n_train: int, n_val: int,
               block_size: int) -> dict:
    """meta.json, with the fields seed 001 lists plus provenance.

    Only a character vocabulary is spelled out (seed 001's itos/stoi); any other tokenizer's
    vocabulary lives in tokenizer.json alone, and `dataset_type` names its kind.
    """
    chars = isinstance(tokenizer, CharTokenizer)
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "source_sha256": digest,
        "vocab_size": tokenizer.vocab_size,
        **({"itos": {str(i): ch for i, ch in tokenizer.itos.items()},
            "stoi": tokenizer.stoi} if chars else {}),
        "extended_vocab_size": tokenizer.extended_vocab_size,
        "special_tokens": tokenizer.special_tokens,
        "dataset_type": "character" if chars else tokenizer.kind,
        "block_size": block_size,
        "supported_model_modes": ["language_model", "token_classifier"],
        "train_tokens": n_train,
        "val_tokens": n_val,
        "data_shapes": {
            "X": "(batch_size, block_size)",
            "Y": "(batch_size, block_size)",
            "mask": "(batch_size, block_size)",
            "description": "token_classifier: X = masked input, Y = original tokens, mask = "
                           "masked positions; language_model: X = input[:-1], Y = input[1:]",
        },
    }


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def prepare(source: str, out_dir: str | Path, block_size: int = DEFAULT_BLOCK_SIZE) -> Path:
    """Prepare `source` (a shipped corpus name or a text file) into `out_dir`; return out_dir."""
    out = Path(out_dir)
    name, text = load_text(source)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    meta_path = out / "meta.json"
    if meta_path.is_file() and (out / "train.bin").is_file() and (out / "val.bin").is_file():
        existing = json.loads(meta_path.read_text(encoding="utf-8"))
        if existing.get("source_sha256") == digest and existing.get("block_size") == block_size:
            return out
    tokenizer = CharTokenizer.from_text(text)
    if tokenizer.extended_vocab_size > np.iinfo(np.uint16).max:
        raise UserError(f"{source}: {tokenizer.vocab_size} distinct characters do not fit uint16")
    ids = np.array(tokenizer.encode(text), dtype=np.uint16)
    n_train = int(len(ids) * TRAIN_FRACTION)
    if len(ids) - n_train < 2:
        raise UserError(f"{source}: too short to hold out a validation split")
    out.mkdir(parents=True, exist_ok=True)
    # meta.json is the dataset's commit mark, written last: an interrupted (re-)prepare
    # leaves none, and `Dataset.load` refuses the dir until a prepare completes.
    meta_path.unlink(missing_ok=True)
    _write_atomic(out / "train.bin", ids[:n_train].tobytes())
    _write_atomic(out / "val.bin", ids[n_train:].tobytes())
    tokenizer.save(out / "tokenizer.json")
    meta = build_meta(tokenizer, name, digest, n_train, len(ids) - n_train, block_size)
    _write_atomic(meta_path, json.dumps(meta, ensure_ascii=False, indent=1).encode("utf-8"))
    return out
