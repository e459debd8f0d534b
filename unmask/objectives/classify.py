"""Sequence classification: [CLS] + passage -> label, scored by accuracy."""

from __future__ import annotations

import torch

from unmask.config.schema import RunConfig
from unmask.data.dataset import Dataset
from unmask.data.windows import PassageLoader
from unmask.errors import UserError
from unmask.objectives.base import Batch, Task
from unmask.runtime.device import autocast


class SequenceClassificationTask(Task):
    """[CLS] + passage -> label; loss = CE per sequence, validation = accuracy on all val rows."""

    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device):
        super().__init__(cfg, dataset, device)
        from unmask.data.authors import load_passages

        if not (dataset.path / "passages.safetensors").is_file():
            raise UserError(f"{dataset.path} has no labelled passages; prepare a classification "
                             "dataset, e.g. `unmask prepare authors --out data/authors`")
        self.passages = load_passages(dataset.path)
        self.cls_id = self.tokenizer.special_tokens["cls_token_id"]

    def make_loader(self, seed: int) -> PassageLoader:
        return PassageLoader(self.passages["train_x"], self.passages["train_y"],
                             self.cfg.train.batch_size, seed)

    def _with_cls(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.full_like(x[:, :1], self.cls_id), x], dim=1)

    def make_batch(self, item, step: int) -> Batch:
        x, y = item
        return Batch(self._with_cls(x).to(self.device), y.to(self.device))

    def normaliser(self, batch: Batch) -> torch.Tensor:
        return torch.tensor(float(batch.targets.numel()), device=batch.targets.device)

    def loss(self, logits, batch):
        return torch.nn.functional.cross_entropy(logits.float(), batch.targets, reduction="sum")

    @torch.no_grad()
    def evaluate(self, model, amp_dtype):
        was_training = model.training
        model.eval()
        x, y = self.passages["val_x"], self.passages["val_y"]
        loss, correct = 0.0, 0
        for i in range(0, len(y), self.cfg.train.batch_size):
            batch = self.make_batch((x[i:i + self.cfg.train.batch_size],
                                     y[i:i + self.cfg.train.batch_size]), 0)
            with autocast(self.device, amp_dtype):
                logits = model(batch.inputs).float()
            loss += float(torch.nn.functional.cross_entropy(logits, batch.targets, reduction="sum"))
            correct += int((logits.argmax(-1) == batch.targets).sum())
        model.train(was_training)
        return {"val_loss": loss / len(y), "val_accuracy": correct / len(y)}
