"""Next-token prediction: the autoregressive baseline on the same network."""

from __future__ import annotations

import torch

from unmask.config.schema import RunConfig
from unmask.data.dataset import Dataset
from unmask.data.windows import contiguous_windows
from unmask.objectives.base import Batch, Task
from unmask.objectives.losses import token_nll
from unmask.runtime.device import autocast


class CausalLMTask(Task):
    """Next-token prediction (the autoregressive baseline): X = w[:-1], Y = w[1:]."""

    window_extra = 1

    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device):
        super().__init__(cfg, dataset, device)
        n = cfg.train.eval_batches * cfg.train.batch_size
        self.eval_windows = contiguous_windows(dataset.val, cfg.model.block_size + 1, n)

    def make_batch(self, x0: torch.Tensor, step: int) -> Batch:
        x0 = x0.to(self.device)
        return Batch(x0[:, :-1], x0[:, 1:])

    def loss(self, logits, batch):
        return token_nll(logits, batch.targets, self.tokenizer.vocab_size).sum()

    @torch.no_grad()
    def evaluate(self, model, amp_dtype):
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for i in range(0, self.eval_windows.size(0), self.cfg.train.batch_size):
            w = self.eval_windows[i:i + self.cfg.train.batch_size].to(self.device)
            with autocast(self.device, amp_dtype):
                logits = model(w[:, :-1])
            nll = token_nll(logits, w[:, 1:], self.tokenizer.vocab_size)
            total, count = total + float(nll.sum()), count + nll.numel()
        model.train(was_training)
        return {"val_loss": total / count, "val_nll_nats_per_char": total / count}
