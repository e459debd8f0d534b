"""Sequence classification: [CLS] + passage -> label, scored by accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unmask.config.schema import RunConfig
from unmask.data.authors import load_passages
from unmask.data.dataset import Dataset
from unmask.data.windows import PassageLoader
from unmask.errors import UserError
from unmask.eval.likelihood import classification_scores
from unmask.objectives.base import Batch, LossOutput, Objective


class ClassificationObjective(Objective):
    """[CLS] + passage -> label; loss = CE per sequence, validation = accuracy on all val rows."""

    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device):
        super().__init__(cfg, dataset, device)
        if cfg.train.batch_size < 2:
            raise UserError("a sequence_classifier standardises its pooled features over the "
                            "batch (BatchNorm) and needs train.batch_size >= 2 rows per "
                            f"micro-batch, got {cfg.train.batch_size}; train.grad_accum does "
                            "not add rows to a forward pass")
        if not (dataset.path / "passages.safetensors").is_file():
            raise UserError(f"{dataset.path} has no labelled passages; prepare a classification "
                            "dataset, e.g. `unmask prepare authors --out data/authors`")
        self.passages = load_passages(dataset.path)
        self.cls_id = self.tokenizer.special_id("cls")

    def make_loader(self, seed: int) -> PassageLoader:
        return PassageLoader(self.passages["train_x"], self.passages["train_y"],
                             self.global_batch, seed)

    def with_cls(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.full_like(x[:, :1], self.cls_id), x], dim=1)

    def make_batch(self, item, step: int) -> Batch:
        x, y = item
        return Batch(self.with_cls(x).to(self.device), y.to(self.device))

    def loss(self, logits, batch) -> LossOutput:
        return LossOutput(F.cross_entropy(logits.float(), batch.targets, reduction="sum"))

    def validate(self, model, amp_dtype):
        result = classification_scores(model, self.with_cls(self.passages["val_x"]),
                                       self.passages["val_y"], self.cfg.train.batch_size,
                                       amp_dtype)
        return {"val_loss": result["loss"], "val_accuracy": result["accuracy"]}
