"""Prepare the 256-token variant of the Shakespeare character diffusion dataset (CPU runs).

    python data/shakespeare_char_diffusion_256/prepare.py     (from the repository root or here)

Reads training_config.py (stages, BLOCK_SIZE, SEED, ...; parsed, never executed) and writes,
next to this file: train.bin / val.bin, tokenizer.json, the enhanced meta.json, cached_data/
(paragraph boundaries, valid window starts), validation/ (a fixed pool per validation stage)
and prepared_batches/ (pre-generated training samples). Deterministic from SEED; running it
again with nothing changed does nothing. See unmask/data/staged/ for the file formats.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # works from a fresh clone without `pip install -e .`

from unmask.data.staged.prepare import prepare_staged_dataset

if __name__ == "__main__":
    try:
        prepare_staged_dataset(HERE)
    except ValueError as err:  # a mistake in training_config.py or the text
        print(f"prepare.py: error: {err}", file=sys.stderr)
        sys.exit(2)
