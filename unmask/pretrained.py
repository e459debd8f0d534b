"""Rebuild a trained model (and its tokenizer and config) from a checkpoint or run directory."""

from __future__ import annotations

from dataclasses import dataclass

from .checkpoint import load_checkpoint, load_weights
from .config import RunConfig
from .data.tokenizer import CharTokenizer
from .model import Transformer
from .runtime import pick_device


@dataclass
class Pretrained:
    model: Transformer
    tokenizer: CharTokenizer
    config: RunConfig
    meta: dict
    path: str


def load_pretrained(path: str, device: str = "auto") -> Pretrained:
    loaded = load_checkpoint(path)
    values = {k: v for k, v in loaded["config"].items() if k != "format_version"}
    config = RunConfig.from_dict(values)
    model = Transformer(config.model)
    load_weights(model, loaded["weights"])
    model.to(pick_device(device)).eval()
    return Pretrained(model, CharTokenizer.from_json(loaded["tokenizer"]), config,
                      loaded["meta"], str(loaded["path"]))

