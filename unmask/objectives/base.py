"""Training tasks: what a batch of clean windows becomes, which loss scores it, how to validate.

The trainer is task-agnostic: it asks the task for a batch, runs the model, asks the task for a
(loss sum, normaliser) pair, and asks it to validate. Each task owns its random generators and
its counters, and exposes them through state_dict() so resume is exact. A task is chosen once,
by name, from TASKS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from unmask.config.schema import RunConfig
from unmask.data.dataset import Dataset
from unmask.data.windows import WindowLoader, contiguous_windows


def _val_windows(cfg: RunConfig, dataset: Dataset) -> torch.Tensor:
    """The first eval_batches * batch_size non-overlapping windows of the validation split."""
    return contiguous_windows(dataset.val, cfg.model.block_size,
                              cfg.train.eval_batches * cfg.train.batch_size)

EVAL_SEED = 1234

EVAL_T_POINTS = 4


@dataclass
class Batch:
    inputs: torch.Tensor  # (B, L) what the model sees
    targets: torch.Tensor  # what the loss compares against
    extras: dict = field(default_factory=dict)  # task-specific tensors (t, masks, weights...)


class Task:
    """Base class: subclasses implement make_batch, loss and evaluate."""

    window_extra = 0  # extra tokens per window (1 for next-token prediction)

    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device):
        self.cfg, self.dataset, self.device = cfg, dataset, device
        self.tokenizer = dataset.tokenizer
        self.generator = torch.Generator(device=device).manual_seed(cfg.train.seed + 1)

    def make_loader(self, seed: int) -> WindowLoader:
        """Training windows; tasks over labelled data override this."""
        return WindowLoader(self.dataset.train, self.cfg.train.batch_size,
                            self.cfg.model.block_size + self.window_extra, seed=seed)

    def make_batch(self, x0: torch.Tensor, step: int) -> Batch:
        """Turn one loader item (already on the task's device or not) into model inputs."""
        raise NotImplementedError

    def normaliser(self, batch: Batch) -> torch.Tensor:
        """What this batch adds to the loss denominator (known before the forward pass, so a
        gradient-accumulation window is normalised by its total count)."""
        return torch.tensor(float(batch.targets.numel()), device=batch.targets.device)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Sum of the per-item losses; the trainer divides by the window's normaliser."""
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, amp_dtype) -> dict[str, float]:
        """Validation metrics; `val_loss` is the one that selects `best` (lower is better)."""
        raise NotImplementedError

    def after_step(self, step: int, diagnostics: dict) -> dict[str, float]:
        """Hook for feedback controllers; returns values to log."""
        return {}

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
