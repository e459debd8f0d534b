"""The Objective protocol: what a clean batch becomes, which loss scores it, how to validate.

The trainer is objective-agnostic. Per step it asks the objective for batches
(`make_batch`), their loss denominators (`normaliser`, known before the forward pass so a
gradient-accumulation window is normalised by its total), and a `LossOutput` per micro-batch:
the loss sum plus diagnostics (device tensors). It then calls `after_step` with the window's
diagnostics, so feedback controllers live in an explicit hook, not in state the loss leaves
behind. Every `eval_interval` it calls `before_validation` (refresh validation-only state such
as BatchNorm statistics), `validate` (no side effects: calling it twice gives the same numbers
and changes nothing) and then `after_validation` (the one place an objective may
react to a validation, e.g. the curriculum advancing a stage). Random draws come from the
objective's own generator, saved in `state_dict` so resume is exact. Objectives are chosen
once, by name, in registry.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from unmask.config.schema import RunConfig
from unmask.data.dataset import Dataset
from unmask.data.windows import WindowLoader, contiguous_windows
from unmask.runtime.distributed import world_size
from unmask.runtime.rng import seeded_generator

Metrics = dict[str, float]  # validation figures; `val_loss` (lower is better) selects `best`

def _val_windows(cfg: RunConfig, dataset: Dataset) -> torch.Tensor:
    """The first eval_batches * batch_size non-overlapping windows of the validation split."""
    return contiguous_windows(dataset.val, cfg.model.block_size,
                              cfg.train.eval_batches * cfg.train.batch_size)


@dataclass
class Batch:
    """What the model sees and what the loss compares against; objectives subclass it to add
    their own typed fields (diffusion times, masks, corruption)."""

    inputs: torch.Tensor  # (B, L)
    targets: torch.Tensor


@dataclass
class LossOutput:
    total: torch.Tensor  # 0-dim loss sum over the batch; the trainer divides by the normaliser
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)  # for after_step


class Objective:
    """Base class: subclasses implement make_batch, loss and validate."""

    window_extra = 0  # extra tokens per window (1 for next-token prediction)

    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device):
        self.cfg, self.dataset, self.device = cfg, dataset, device
        self.tokenizer = dataset.tokenizer
        # The objective's own stream (masks, times, corruption). Every rank draws the same
        # global batch from it and keeps its own rows (shard_rows), so N ranks of batch B
        # train exactly what one process of batch N * B would.
        self.generator = seeded_generator(cfg.train.seed, "noise", device=device)
        self.global_batch = cfg.train.batch_size * world_size()

    def make_loader(self, seed: int) -> WindowLoader:
        """Training windows; objectives over labelled data override this."""
        return WindowLoader(self.dataset.train, self.global_batch,
                            self.cfg.model.block_size + self.window_extra, seed=seed)

    def make_batch(self, item, step: int) -> Batch:
        """Turn one loader item (on the objective's device or not) into model inputs."""
        raise NotImplementedError

    def normaliser(self, batch: Batch) -> torch.Tensor:
        """What this batch adds to the loss denominator: a device tensor, so it can be summed
        over micro-batches (and over ranks) without a host sync."""
        return torch.tensor(float(batch.targets.numel()), device=batch.targets.device)

    def loss(self, logits: torch.Tensor, batch: Batch) -> LossOutput:
        """Loss sum of the batch and its diagnostics; no state is kept between calls."""
        raise NotImplementedError

    def after_step(self, step: int, diagnostics: list[dict[str, torch.Tensor]]
                   ) -> dict[str, float | torch.Tensor]:
        """Called once per optimizer step with each micro-batch's diagnostics; returns values
        to log (device tensors are converted only when logged)."""
        return {}

    def before_validation(self, model: torch.nn.Module, amp_dtype) -> None:
        """Bring what validation reads but training does not keep current up to date with the
        weights (a classifier's BatchNorm population statistics); the checkpoint saved after
        the validation holds it. Never touches weights, optimizer or generators."""

    def validate(self, model: torch.nn.Module, amp_dtype) -> Metrics:
        """Validation figures; must not change any state."""
        raise NotImplementedError

    def after_validation(self, step: int, metrics: Metrics) -> Metrics:
        """React to a validation (curriculum stages); returns extra figures to log."""
        return {}

    def checkpoints_to_save(self) -> list[str]:
        """Checkpoint names to write besides latest/best after the current validation."""
        return []

    def learning_rate(self, step: int, lr: float, min_lr: float, horizon: int) -> float | None:
        """The learning rate for `step` when the objective schedules its own, else None (the
        trainer's warmup + cosine from `lr` to `min_lr` at step `horizon`)."""
        return None

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def shard_rows(batch, rank: int, world: int):
    """This rank's rows of a global batch: every tensor whose first dimension is the global
    batch is sliced to rows [rank * B, (rank + 1) * B); nested dataclasses likewise, other
    values (schedule floats) pass through. The identity for one process."""
    if world == 1:
        return batch
    rows = batch.inputs.size(0)
    if rows % world:
        raise ValueError(f"global batch {rows} is not divisible by {world} ranks")
    per = rows // world
    keep = slice(rank * per, (rank + 1) * per)

    def cut(value):
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.size(0) == rows:
            return value[keep]
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.replace(value, **{f.name: cut(getattr(value, f.name))
                                                 for f in dataclasses.fields(value)})
        return value

    return cut(batch)
