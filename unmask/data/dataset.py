"""A prepared dataset directory: meta, tokenizer and token windows for any batch size."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from unmask.data.prepare import FORMAT_VERSION, prepare
from unmask.errors import UserError
from unmask.text.tokenizers import Tokenizer, load_tokenizer_file


class DatasetError(UserError):
    """The dataset directory is missing or does not fit the run."""


@dataclass
class Dataset:
    """Token ids of both splits held as int64 tensors (a book fits in memory many times over)."""

    path: Path
    meta: dict
    tokenizer: Tokenizer
    train: torch.Tensor
    val: torch.Tensor

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        path = Path(path)
        missing = [f for f in ("meta.json", "tokenizer.json", "train.bin", "val.bin")
                   if not (path / f).is_file()]
        if missing:
            raise DatasetError(f"{path} is not a prepared dataset (missing "
                               f"{', '.join(missing)}); {_prepare_hint(path)}")
        meta = _read_meta(path)
        tokenizer = load_tokenizer_file(path / "tokenizer.json")
        splits = [torch.from_numpy(np.fromfile(path / f"{s}.bin", dtype=np.uint16).astype(np.int64))
                  for s in ("train", "val")]
        for name, split in zip(("train", "val"), splits):
            expected = meta.get(f"{name}_tokens")
            if expected is not None and expected != len(split):
                raise DatasetError(f"{path / (name + '.bin')} holds {len(split)} tokens where "
                                   f"meta.json says {expected} (an interrupted or mixed "
                                   f"prepare); {_prepare_hint(path)} again")
        return cls(path, meta, tokenizer, *splits)

    def split(self, name: str) -> torch.Tensor:
        return {"train": self.train, "val": self.val}[name]

    def split_bytes(self, name: str) -> int:
        """UTF-8 bytes of a split's text: nats/token * tokens / (bytes * ln 2) is bits/byte,
        the loss figure that compares across tokenizers."""
        table = torch.tensor(self.tokenizer.token_bytes(), dtype=torch.int64)
        return int(table[self.split(name)].sum())

    @cached_property
    def val_bytes(self) -> int:
        """UTF-8 bytes of the validation split (see `split_bytes`)."""
        return self.split_bytes("val")

    @property
    def val_bytes_per_token(self) -> float:
        """Mean UTF-8 bytes per validation token: bits/byte = nats/token / (this * ln 2)."""
        return self.val_bytes / len(self.val)

    def check_mode(self, mode: str) -> None:
        supported = self.meta.get("supported_model_modes", [])
        if mode not in supported:
            raise DatasetError(
                f"dataset {self.path} does not support model.mode={mode} (it supports "
                f"{', '.join(supported)}); pick one of those or another dataset"
            )

    def check_block_size(self, block_size: int) -> None:
        shortest = min(len(self.train), len(self.val))
        if block_size > shortest - 1:
            raise DatasetError(
                f"block_size {block_size} is longer than the {shortest}-token split of {self.path}; "
                "use a smaller model.block_size or a longer text"
            )


def _prepare_hint(path: Path) -> str:
    return (f"run `python {path / 'prepare.py'}`" if (path / "prepare.py").is_file()
            else f"run `unmask prepare SOURCE --out {path}`")


def _read_meta(path: Path) -> dict:
    """meta.json, refused when it is not ours to read: unparsable, or from a newer format."""
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise DatasetError(f"{path / 'meta.json'} is corrupt ({err}); "
                           f"{_prepare_hint(path)} again") from None
    version = meta.get("format_version", 0) if isinstance(meta, dict) else None
    if not isinstance(version, int):
        raise DatasetError(f"{path / 'meta.json'} is not a dataset meta file; "
                           f"{_prepare_hint(path)} again")
    if version > FORMAT_VERSION:
        raise DatasetError(f"{path} was written by a newer unmask (dataset format {version}, "
                           f"this one reads up to {FORMAT_VERSION}); update unmask, or "
                           f"{_prepare_hint(path)} again")
    return meta


def resolve_dataset(data: str, runs_root: Path = Path("data")) -> Dataset:
    """A prepared dir is used as is; a corpus name or text file is prepared on the fly."""
    path = Path(data)
    if (path / "meta.json").is_file():
        return Dataset.load(path)
    if path.is_dir():
        return Dataset.load(path)  # raises with the "run unmask prepare" hint
    if data == "authors":
        from unmask.data.authors import prepare_authors
        return Dataset.load(prepare_authors(runs_root / "authors"))
    target = runs_root / (path.stem if path.suffix else data)
    return Dataset.load(prepare(data, target))
