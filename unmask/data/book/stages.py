"""The three curriculum stages as token rows: selection, step budgets, files on disk.

Stage items are token rows: a sentence (format `sentences`), two adjacent sentences of one
paragraph joined by [SEP] (`pairs`), or a window of `sequence_length` tokens of the running
text starting at a paragraph (`paragraphs`). A stage keeps the items whose difficulty
percentile is at most `max_difficulty_percentile` and whose centrality percentile is at least
`min_centrality_percentile` (a pair: both sentences; a window: the mean over its paragraph's
sentences). When that leaves fewer than `min_stage_samples` training items, both bounds are
relaxed 5 points at a time (seed 004's "data rebalancing"); the bounds used are recorded.

On disk (in the dataset directory): `stages.json` (per stage: format, row length, bounds,
item counts, lengths and segment ids per split) and `stages/<k>_<split>.bin` (the items'
tokens, uint16, concatenated).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unmask.errors import UserError

STAGES_FILE = "stages.json"
STAGES_DIR = "stages"
RELAX_STEP = 5.0


@dataclass
class Candidate:
    """One possible item: its tokens, the segment ids it came from, its percentiles."""

    tokens: list[int]
    segments: list[int]
    difficulty_pct: float
    centrality_pct: float


def select(candidates: list[Candidate], max_difficulty: float, min_centrality: float
           ) -> list[Candidate]:
    """Items within the bounds (percentiles on a 0-100 scale)."""
    return [c for c in candidates if 100 * c.difficulty_pct <= max_difficulty + 1e-9
            and 100 * c.centrality_pct >= min_centrality - 1e-9]


def select_rebalanced(candidates: list[Candidate], max_difficulty: float,
                      min_centrality: float, min_items: int
                      ) -> tuple[list[Candidate], float, float]:
    """`select`, relaxing both bounds by RELAX_STEP until `min_items` remain (or nothing is
    left to relax); returns the items and the bounds used."""
    while True:
        chosen = select(candidates, max_difficulty, min_centrality)
        if len(chosen) >= min_items or (max_difficulty >= 100 and min_centrality <= 0):
            return chosen, max_difficulty, min_centrality
        max_difficulty = min(100.0, max_difficulty + RELAX_STEP)
        min_centrality = max(0.0, min_centrality - RELAX_STEP)


def row_length(items: list[list[int]], fmt: str, sequence_length: int) -> int:
    """Row length of a stage: the sequence length for windows, else the longest item rounded
    up to a multiple of 8 (short rows make stage I cheap; one length keeps every batch of the
    stage the same shape)."""
    if fmt == "paragraphs" or not items:
        return sequence_length
    longest = max(len(t) for t in items)
    return min(sequence_length, 8 * math.ceil(longest / 8))


def planned_steps(n_items: int, epochs: int, max_steps: int, items_per_step: int) -> int:
    """Optimizer steps a stage is given: `epochs` passes over its items, capped at
    `max_steps` when that is > 0. A stage with 0 epochs is skipped (0 steps)."""
    if epochs <= 0 or n_items <= 0:
        return 0
    steps = epochs * math.ceil(n_items / items_per_step)
    return min(steps, max_steps) if max_steps > 0 else steps


def stage_budgets(planned: list[int], eval_interval: int) -> list[int]:
    """Steps each active stage runs with epoch transitions: a stage ends at the first
    validation at or after its budget, so every stage but the last is rounded up to a
    multiple of `eval_interval` (and gets at least one validation: its best checkpoint)."""
    active = [p for p in planned if p > 0]
    return [eval_interval * math.ceil(p / eval_interval) for p in active[:-1]] + active[-1:]


def write_stages(folder: Path, stages: list[dict], items: list[dict[str, list[Candidate]]]
                 ) -> None:
    """Write stages.json and the token files; `stages[k]` holds the stage's description,
    `items[k]` its candidates chosen per split."""
    (folder / STAGES_DIR).mkdir(parents=True, exist_ok=True)
    described = []
    for k, (stage, chosen) in enumerate(zip(stages, items)):
        entry = dict(stage)
        for split, rows in chosen.items():
            tokens = np.array([t for c in rows for t in c.tokens], dtype=np.uint16)
            tokens.tofile(folder / STAGES_DIR / f"{k}_{split}.bin")
            entry[split] = {"items": len(rows), "tokens": int(tokens.size),
                            "lengths": [len(c.tokens) for c in rows],
                            "segments": [c.segments for c in rows]}
        described.append(entry)
    (folder / STAGES_FILE).write_text(json.dumps({"stages": described}), encoding="utf-8")


@dataclass
class StageRows:
    """One stage's items for one split, padded: tokens (N, row_length), lengths (N,)."""

    tokens: torch.Tensor
    lengths: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.size(0)

    @property
    def valid(self) -> torch.Tensor:
        """(N, row_length) bool: the positions that hold the item (not padding)."""
        return torch.arange(self.tokens.size(1))[None, :] < self.lengths[:, None]


@dataclass
class StageData:
    index: int  # position in the configured stage list (best_stage{index + 1})
    info: dict  # the stages.json entry
    train: StageRows
    val: StageRows

    @property
    def row_length(self) -> int:
        return int(self.info["row_length"])


def _rows(folder: Path, k: int, split: str, entry: dict, pad_id: int) -> StageRows:
    lengths = entry[split]["lengths"]
    flat = np.fromfile(folder / STAGES_DIR / f"{k}_{split}.bin", dtype=np.uint16)
    if flat.size != sum(lengths):
        raise UserError(f"{folder / STAGES_DIR / f'{k}_{split}.bin'} does not match "
                        f"{STAGES_FILE}; prepare the book again")
    width = int(entry["row_length"])
    tokens = torch.full((len(lengths), width), pad_id, dtype=torch.int64)
    flat_t = torch.from_numpy(flat.astype(np.int64))
    lens = torch.tensor(lengths, dtype=torch.int64)
    if len(lengths):
        starts = torch.cumsum(lens, 0) - lens
        pos = torch.arange(width)[None, :]
        inside = pos < lens[:, None]
        tokens[inside] = flat_t[(starts[:, None] + pos)[inside]]
    return StageRows(tokens, lens)


def load_stages(folder: str | Path, pad_id: int) -> list[StageData]:
    """Every stage of a prepared book dataset, rows padded with `pad_id`."""
    folder = Path(folder)
    path = folder / STAGES_FILE
    if not path.is_file():
        raise UserError(f"{folder} is not a prepared book dataset (no {STAGES_FILE}); "
                        "prepare it with `unmask book BOOK`")
    stages = json.loads(path.read_text(encoding="utf-8"))["stages"]
    return [StageData(k, entry, _rows(folder, k, "train", entry, pad_id),
                      _rows(folder, k, "val", entry, pad_id))
            for k, entry in enumerate(stages)]


def read_schedule(folder: str | Path) -> tuple[list[dict], dict]:
    """(stages.json entries, curriculum.json) of a prepared book dataset."""
    folder = Path(folder)
    stages = json.loads((folder / STAGES_FILE).read_text(encoding="utf-8"))["stages"]
    return stages, json.loads((folder / "curriculum.json").read_text(encoding="utf-8"))


def run_steps(folder: str | Path, items_per_step: int, eval_interval: int
              ) -> tuple[list[int], list[int]]:
    """(planned steps of every configured stage, budgets of the active ones); the run's
    train.max_iters is the sum of the budgets (see `stage_budgets`)."""
    stages, curriculum = read_schedule(folder)
    planned = [planned_steps(s["train"]["items"], c["epochs"], c["max_steps"], items_per_step)
               for s, c in zip(stages, curriculum["stages"])]
    return planned, stage_budgets(planned, eval_interval)
