"""Counters saved with every checkpoint, and the metrics log (JSONL, TensorBoard, wandb)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from unmask.config.schema import RunConfig
from unmask.errors import UserError


@dataclass
class Counters:
    step: int = 0
    best_val: float = math.inf
    tokens_seen: int = 0
    lr_scale: float = 1.0  # halved by each NaN rollback
    rollbacks: int = 0
    skipped_steps: int = 0  # on_nan=skip: steps whose update was dropped
    train_seconds: float = 0.0  # train.max_minutes: the time spent, over resumed sessions

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        self.step, self.best_val = int(state["step"]), float(state["best_val"])
        self.tokens_seen = int(state["tokens_seen"])
        self.lr_scale = float(state.get("lr_scale", 1.0))  # older checkpoints lack these
        self.rollbacks = int(state.get("rollbacks", 0))
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.train_seconds = float(state.get("train_seconds", 0.0))


class MetricsLog:
    """JSONL metrics file, plus TensorBoard / wandb when enabled (imported only then)."""

    def __init__(self, out_dir: Path, cfg: RunConfig):
        self.file = open(out_dir / "metrics.jsonl", "a", encoding="utf-8")
        self.tb = self.wandb = None
        if cfg.train.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(out_dir / "tensorboard"))
        if cfg.train.wandb:
            import wandb
            self.wandb = wandb.init(project=cfg.train.wandb_project, config=cfg.to_dict())

    def write(self, step: int, **values) -> None:
        self.file.write(json.dumps({"step": step, "time": round(time.time(), 3), **values}) + "\n")
        self.file.flush()
        for key, value in values.items():
            if self.tb and isinstance(value, (int, float)):
                self.tb.add_scalar(key, value, step)
        if self.wandb:
            self.wandb.log(values, step=step)

    def close(self) -> None:
        self.file.close()
        if self.tb:
            self.tb.close()
        if self.wandb:
            self.wandb.finish()


class TrainingDiverged(UserError):
    """The loss or gradients became non-finite and the on_nan policy gave up."""


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process: allocated tensors on CUDA, resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
