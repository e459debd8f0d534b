"""Curriculum datasets (seed 000): a dataset folder owns its stages, its fixed validation pools
and its pre-generated training samples; the trainer only loads them.

A folder such as data/shakespeare_char_diffusion/ holds `training_config.py` (UNMASKING_STAGES,
VALIDATION_STAGES, BLOCK_SIZE, ... read with `ast`, never executed) and a two-line
`prepare.py` that calls `prepare_staged_dataset`. Preparing writes, next to the config:

    train.bin, val.bin, tokenizer.json   tokens (unmask.data.prepare)
    meta.json                            seed 000's enhanced meta + a "curriculum" section
    cached_data/                         paragraph_boundaries.npy, valid_indices.npy (train
                                         split), val_paragraph_boundaries.npy,
                                         val_valid_indices.npy (validation split)
    validation/                          windows.safetensors (clean windows, shared by all
                                         stages), stage_XX.safetensors (fixed mask per stage),
                                         validation_meta.json
    prepared_batches/                    train_XXXXX.safetensors + index.json

Everything is a pure function of the config and SEED: preparing twice, anywhere, gives
byte-identical files, and preparing again with nothing changed does nothing.

The training stream. Samples are numbered i = 0, 1, 2, ... and drawn in chunks of
CHUNK_SIZE: chunk k takes its window starts and one stage-pick number u_i in [0, 1) per sample
from a generator seeded by (SEED, k), and its mask for training stage s from a generator
seeded by (SEED, s, k), for the whole chunk at once (vectorised). Chunk boundaries do not
depend on the batch size, so every batch size sees the same samples in the same order, with
no shuffling and no repeats; a batch may span chunks and prepared files.

Stages and prepared data. Which stage a sample is trained on depends on validation losses at
run time, which preparation cannot know. So we prepare, per sample, its window start, its u_i
and its mask for *every* training stage (bit-packed, one bit per token per stage); when the
sample is served, the stages active at that moment (0..current with
USE_ALL_STAGES_FOR_TRAINING, else just the current one) choose:
stage = active[floor(u_i * len(active))]. The on-the-fly pipeline computes the same values with
the same generators (only for the stages it needs), so a run that outlasts the
PREPARED_TRAINING_SAMPLES continues seamlessly and a run without prepared data is identical.
Masks are drawn with CPU generators in both pipelines, so the values do not depend on the
training device either.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from safetensors import safe_open

from unmask.data.staged.config import (
    _TRAIN_DRAWS,
    _TRAIN_MASK,
    CHUNK_SIZE,
    StagedDataError,
)
from unmask.noise.stages import stage_mask
from unmask.runtime.rng import seeded_generator

# ----------------------------------------------------------------------------- windows


def paragraph_starts(tokens: np.ndarray, newline_id: int | None) -> np.ndarray:
    """Positions that begin a paragraph: 0 and every position right after a blank line."""
    if newline_id is None:
        return np.zeros(1, dtype=np.int64)
    nl = tokens == newline_id
    after_blank = np.flatnonzero(nl[:-1] & nl[1:]) + 2
    starts = np.concatenate([[0], after_blank[after_blank < len(tokens)]])
    return np.unique(starts).astype(np.int64)


def valid_start_indices(n_tokens: int, block_size: int,
                        paragraphs: np.ndarray | None) -> np.ndarray:
    """Window starts whose block fits in the split: all of them, or paragraph starts only."""
    last = n_tokens - block_size
    if paragraphs is None:
        return np.arange(max(0, last + 1), dtype=np.int64)
    return paragraphs[paragraphs <= last].astype(np.int64)


def gather_windows(tokens: torch.Tensor, starts: torch.Tensor, block_size: int) -> torch.Tensor:
    """(n, L) windows of `tokens` at `starts`, in one indexing op."""
    return tokens[starts[:, None] + torch.arange(block_size)]


# ----------------------------------------------------------------------------- the stream


class SampleStream:
    """The training samples of a curriculum dataset as a pure function of (seed, i)."""

    def __init__(self, tokens: torch.Tensor, valid_starts: torch.Tensor, block_size: int,
                 stages: list[dict], seed: int, chunk_size: int = CHUNK_SIZE):
        if len(valid_starts) == 0:
            raise StagedDataError(f"no window of {block_size} tokens fits the training split; "
                                  "lower BLOCK_SIZE or turn off USE_PARAGRAPH_BOUNDARIES")
        self.tokens, self.valid_starts, self.block_size = tokens, valid_starts, block_size
        self.stages, self.seed, self.chunk_size = stages, seed, chunk_size

    def chunk_draws(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Window starts (C,) and stage-pick numbers u in [0, 1) (C,) of chunk k."""
        gen = seeded_generator(self.seed, _TRAIN_DRAWS, k)
        idx = torch.randint(len(self.valid_starts), (self.chunk_size,), generator=gen)
        picks = torch.rand(self.chunk_size, dtype=torch.float64, generator=gen)
        return self.valid_starts[idx], picks

    def chunk_mask(self, k: int, s: int) -> torch.Tensor:
        """Mask (C, L) of every sample of chunk k for training stage s."""
        return stage_mask(self.stages[s], self.chunk_size, self.block_size,
                          seeded_generator(self.seed, _TRAIN_MASK, s, k))

    def windows(self, starts: torch.Tensor) -> torch.Tensor:
        return gather_windows(self.tokens, starts, self.block_size)


def pick_stages(picks: torch.Tensor, active: Sequence[int]) -> torch.Tensor:
    """Stage of each sample: active[floor(u * len(active))], uniform over the active stages."""
    choice = (picks * len(active)).floor().long().clamp_(max=len(active) - 1)
    return torch.as_tensor(list(active), dtype=torch.long)[choice]


class PreparedSamples:
    """Read access to prepared_batches/: rows [start, stop) across files."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        index = json.loads((self.folder / "index.json").read_text(encoding="utf-8"))
        self.n_samples, self.files = int(index["samples"]), index["files"]

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {"starts": [], "picks": [], "masks": []}
        for entry in self.files:
            lo, hi = max(start, entry["start"]), min(stop, entry["stop"])
            if lo >= hi:
                continue
            with safe_open(str(self.folder / entry["name"]), framework="np") as f:
                for key in parts:
                    parts[key].append(f.get_slice(key)[lo - entry["start"]:hi - entry["start"]])
        return {key: np.concatenate(value) for key, value in parts.items()}


class StagedLoader:
    """Serves samples start, start+1, ... `batch_size` at a time as (x0, masked, stage).

    `active_stages()` is asked at every batch, so a stage change takes effect at the next
    batch. Prepared rows come from disk (read `cache_size` at a time), later rows are computed
    on the fly; both give identical tensors.
    """

    def __init__(self, stream: SampleStream, batch_size: int,
                 active_stages: Callable[[], Sequence[int]],
                 prepared: PreparedSamples | None = None, cache_size: int = 1024):
        self.stream, self.batch_size, self.active_stages = stream, batch_size, active_stages
        self.prepared, self.cache_size = prepared, cache_size
        self.position = 0
        self._block: tuple[int, dict] | None = None  # (first row, arrays) of prepared rows
        self._chunk: tuple[int, tuple] | None = None  # (k, draws) of the on-the-fly chunk
        self._masks: dict[int, torch.Tensor] = {}  # stage -> mask of the on-the-fly chunk

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        start = self.position
        self.position += self.batch_size
        return self.samples(start, self.position)

    def samples(self, start: int, stop: int, active: Sequence[int] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        active = list(self.active_stages() if active is None else active)
        n_prepared = self.prepared.n_samples if self.prepared is not None else 0
        parts, i = [], start
        while i < stop:
            if i < n_prepared:
                j = min(stop, n_prepared, (i // self.cache_size + 1) * self.cache_size)
                parts.append(self._prepared_rows(i, j, active))
            else:
                j = min(stop, (i // self.stream.chunk_size + 1) * self.stream.chunk_size)
                parts.append(self._fresh_rows(i, j, active))
            i = j
        x0, masked, stage = (torch.cat(p) for p in zip(*parts))
        return x0, masked, stage

    def _prepared_rows(self, i: int, j: int, active: list[int]):
        first = i // self.cache_size * self.cache_size
        if self._block is None or self._block[0] != first:
            stop = min(first + self.cache_size, self.prepared.n_samples)
            self._block = (first, self.prepared.read(first, stop))
        block = self._block[1]
        rows = slice(i - first, j - first)
        starts = torch.from_numpy(block["starts"][rows])
        stage = pick_stages(torch.from_numpy(block["picks"][rows]), active)
        packed = block["masks"][rows][np.arange(j - i), stage.numpy()]  # (n, ceil(L/8))
        masked = np.unpackbits(packed, axis=1, count=self.stream.block_size).astype(bool)
        return self.stream.windows(starts), torch.from_numpy(masked), stage

    def _fresh_rows(self, i: int, j: int, active: list[int]):
        size = self.stream.chunk_size
        k = i // size
        if self._chunk is None or self._chunk[0] != k:
            self._chunk, self._masks = (k, self.stream.chunk_draws(k)), {}
        starts, picks = self._chunk[1]
        rows = slice(i - k * size, j - k * size)
        stage = pick_stages(picks[rows], active)
        masked = torch.zeros(j - i, self.stream.block_size, dtype=torch.bool)
        for s in stage.unique().tolist():  # a loop over stages (at most a few), not rows
            if s not in self._masks:
                self._masks[s] = self.stream.chunk_mask(k, s)
            rows_s = stage == s
            masked[rows_s] = self._masks[s][rows][rows_s]
        return self.stream.windows(starts[rows]), masked, stage

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])
