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
from unmask.model.precise_bn import recompute_batchnorm_statistics
from unmask.objectives.base import Batch, LossOutput, Objective

PRECISE_BN_ROWS = 1024  # training passages whose statistics the pooled BatchNorm evaluates with


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

    def precise_bn_batches(self):
        """PRECISE_BN_ROWS training passages evenly spaced over the split (every class, every
        part of each book), in batches of train.batch_size; the same rows on every call and
        every rank, so the statistics depend on the weights alone."""
        train_x = self.passages["train_x"]
        rows = torch.linspace(0, len(train_x) - 1, min(PRECISE_BN_ROWS, len(train_x))).long()
        for chunk in rows.split(self.cfg.train.batch_size):
            if len(chunk) >= 2:  # BatchNorm needs two rows to have a variance
                yield self.with_cls(train_x[chunk])

    def before_validation(self, model, amp_dtype) -> None:
        # The running averages lag a backbone that still moves fast (precise_bn's docstring).
        recompute_batchnorm_statistics(model, self.precise_bn_batches(), amp_dtype)

    def validate(self, model, amp_dtype):
        result = classification_scores(model, self.with_cls(self.passages["val_x"]),
                                       self.passages["val_y"], self.cfg.train.batch_size,
                                       amp_dtype)
        return {"val_loss": result["loss"], "val_accuracy": result["accuracy"]}
