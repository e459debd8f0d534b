"""A prepared dataset directory: meta, tokenizer and token windows for any batch size."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .prepare import prepare
from .tokenizer import CharTokenizer


class DatasetError(ValueError):
    """The dataset directory is missing or does not fit the run."""


@dataclass
class Dataset:
    """Token ids of both splits held as int64 tensors (a book fits in memory many times over)."""

    path: Path
    meta: dict
    tokenizer: CharTokenizer
    train: torch.Tensor
    val: torch.Tensor

    @classmethod
    def load(cls, path: str | Path) -> "Dataset":
        path = Path(path)
        missing = [f for f in ("meta.json", "tokenizer.json", "train.bin", "val.bin")
                   if not (path / f).is_file()]
        if missing:
            fix = (f"run `python {path / 'prepare.py'}`" if (path / "prepare.py").is_file()
                   else f"run `unmask prepare SOURCE --out {path}`")
            raise DatasetError(f"{path} is not a prepared dataset (missing "
                               f"{', '.join(missing)}); {fix}")
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        tokenizer = CharTokenizer.load(path / "tokenizer.json")
        splits = [torch.from_numpy(np.fromfile(path / f"{s}.bin", dtype=np.uint16).astype(np.int64))
                  for s in ("train", "val")]
        return cls(path, meta, tokenizer, *splits)

    def split(self, name: str) -> torch.Tensor:
        return {"train": self.train, "val": self.val}[name]

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


def resolve_dataset(data: str, runs_root: Path = Path("data")) -> Dataset:
    """A prepared dir is used as is; a corpus name or text file is prepared on the fly."""
    path = Path(data)
    if (path / "meta.json").is_file():
        return Dataset.load(path)
    if path.is_dir():
        return Dataset.load(path)  # raises with the "run unmask prepare" hint
    if data == "authors":
        from .authors import prepare_authors
        return Dataset.load(prepare_authors(runs_root / "authors"))
    target = runs_root / (path.stem if path.suffix else data)
    return Dataset.load(prepare(data, target))


def random_windows(tokens: torch.Tensor, batch_size: int, block_size: int,
                   generator: torch.Generator) -> torch.Tensor:
    """(B, L) windows at uniformly random offsets, gathered in one indexing op."""
    starts = torch.randint(0, len(tokens) - block_size, (batch_size,), generator=generator)
    return tokens[starts[:, None] + torch.arange(block_size)]


def contiguous_windows(tokens: torch.Tensor, block_size: int, max_windows: int | None = None
                       ) -> torch.Tensor:
    """Non-overlapping (N, L) windows from the start of a split: a fixed evaluation set."""
    n = len(tokens) // block_size
    if max_windows is not None:
        n = min(n, max_windows)
    return tokens[: n * block_size].view(n, block_size)


class WindowLoader:
    """Random training windows with an explicit generator, so resume continues the stream."""

    def __init__(self, tokens: torch.Tensor, batch_size: int, block_size: int, seed: int):
        self.tokens, self.batch_size, self.block_size = tokens, batch_size, block_size
        self.generator = torch.Generator().manual_seed(seed)

    def next_batch(self) -> torch.Tensor:
        return random_windows(self.tokens, self.batch_size, self.block_size, self.generator)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
