"""Character-level Tiny Shakespeare for language modelling (seed 001's `shakespeare_char`).

    python data/shakespeare_char/prepare.py        (from the repository root or this folder)

Writes, next to this file: train.bin / val.bin (uint16 token ids, nanoGPT's 90 % / 10 % split),
tokenizer.json and meta.json (vocab_size, itos, stoi, block_size, supported_model_modes
['language_model'], data_shapes). The text is the Tiny Shakespeare shipped with unmask.
Running it again with nothing changed rewrites nothing.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # works from a fresh clone without `pip install -e .`

from unmask.data.prepare import prepare

BLOCK_SIZE = 1024  # longest context a run may use (language models accept any shorter one)


def main() -> None:
    prepare("tinyshakespeare", HERE, block_size=BLOCK_SIZE)
    meta_path = HERE / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    wanted = {
        **meta,
        "name": HERE.name,
        "supported_model_modes": ["language_model"],
        "data_shapes": {
            "X": "(batch_size, block_size)",
            "Y": "(batch_size, block_size)",
            "mask": "(batch_size, block_size)",
            "description": "Language modeling: windows of block_size + 1 tokens, "
                           "X=window[:-1], Y=window[1:], mask=all ones",
        },
    }
    if wanted != meta:
        meta_path.write_text(json.dumps(wanted, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"{HERE.name}: {meta['train_tokens']:,} train / {meta['val_tokens']:,} val tokens, "
          f"vocabulary {meta['vocab_size']}; train with "
          "`python train_run.py config/language_model.py`")


if __name__ == "__main__":
    main()
