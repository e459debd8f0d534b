"""Author attribution: 256-character passages from the three shipped books, labelled by author.

Each book is cut into non-overlapping passages; the first 90 % of a book's passages train and
the last 10 % validate, so no character is in both splits. The same directory also holds
train.bin / val.bin (the training and validation regions of each book, concatenated) so an
unmasking model can be pretrained with the very same tokenizer before transfer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from unmask.data.prepare import TRAIN_FRACTION, build_meta
from unmask.text.reader import load_text
from unmask.text.tokenizers import CharTokenizer

AUTHORS = (("tinyshakespeare", "Shakespeare"), ("frankenstein", "Shelley"),
           ("pride_and_prejudice", "Austen"))

PASSAGE_LENGTH = 256


def prepare_authors(out_dir: str | Path, passage_length: int = PASSAGE_LENGTH) -> Path:
    out = Path(out_dir)
    if (out / "passages.safetensors").is_file() and (out / "meta.json").is_file():
        return out
    texts = [load_text(name)[1] for name, _ in AUTHORS]
    tokenizer = CharTokenizer.from_text("".join(texts))
    splits = {"train_x": [], "train_y": [], "val_x": [], "val_y": []}
    regions = {"train": [], "val": []}
    for label, text in enumerate(texts):
        ids = torch.tensor(tokenizer.encode(text), dtype=torch.int64)
        n = len(ids) // passage_length
        n_train = int(n * TRAIN_FRACTION)
        passages = ids[: n * passage_length].view(n, passage_length)
        for split, rows in (("train", passages[:n_train]), ("val", passages[n_train:])):
            splits[f"{split}_x"].append(rows)
            splits[f"{split}_y"].append(torch.full((len(rows),), label))
            regions[split].append(rows.flatten())
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.cat(v) for k, v in splits.items()}, str(out / "passages.safetensors"))
    for split, parts in regions.items():
        torch.cat(parts).numpy().astype(np.uint16).tofile(out / f"{split}.bin")
    tokenizer.save(out / "tokenizer.json")
    meta = build_meta(tokenizer, "authors", "", len(torch.cat(regions["train"])),
                      len(torch.cat(regions["val"])), passage_length + 1)
    meta.update({
        "supported_model_modes": ["sequence_classifier", "token_classifier", "language_model"],
        "num_classes": len(AUTHORS), "class_names": [author for _, author in AUTHORS],
        "passage_length": passage_length,
    })
    meta["data_shapes"]["sequence_classifier"] = "X = [CLS] + passage (B, 257), Y = author (B,)"
    (out / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1))
    return out


def load_passages(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.long() for k, v in load_file(str(Path(path) / "passages.safetensors")).items()}
