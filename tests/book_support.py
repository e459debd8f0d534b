"""A small book (the first ~60,000 characters of Frankenstein) for the book tests."""

from __future__ import annotations

from pathlib import Path

from unmask.text.reader import load_text

SMALL_BOOK_CHARS = 60_000


def write_small_book(folder: Path, chars: int = SMALL_BOOK_CHARS) -> Path:
    """A plain UTF-8 file of whole paragraphs from the start of Frankenstein."""
    text = load_text("frankenstein")[1]
    cut = text.rfind("\n\n", 0, chars)
    path = Path(folder) / "small_frankenstein.txt"
    path.write_text(text[:cut] + "\n", encoding="utf-8")
    return path


# The test_integration preset, shorter still: what the unit tests train.
FAST = {"curriculum.stages[0].max_steps": "4", "curriculum.stages[1].max_steps": "4",
        "curriculum.stages[2].max_steps": "4", "training.eval_interval": "4",
        "training.batch_size": "8", "training.progress": "false",
        "generation.steps": "8", "generation.length": "32"}


def make_book_dataset(folder: Path) -> Path:
    """A tiny prepared book for the every-objective tests (tests/objective_runs.py): context
    32, stages of 2 steps each, so a run of 8 steps with a validation every 2 walks all three
    stages."""
    from unmask.config.book import resolve_book_config
    from unmask.data.book.pipeline import prepare_book

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = resolve_book_config("test_integration", overrides={
        "data.sequence_length": "32", "curriculum.min_stage_samples": "8",
        **{f"curriculum.stages[{k}].max_steps": "2" for k in range(3)}})
    return prepare_book(str(write_small_book(folder, 30_000)), folder / "data", cfg,
                        log=lambda *_: None)
