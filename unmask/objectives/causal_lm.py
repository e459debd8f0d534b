"""Next-token prediction: the autoregressive baseline on the same network."""

from __future__ import annotations

import torch

from unmask.config.schema import RunConfig
from unmask.data.dataset import Dataset
from unmask.data.windows import contiguous_windows
from unmask.eval.likelihood import bytes_per_token, causal_nll
from unmask.losses.likelihood import token_nll
from unmask.noise.masking import drop_input_tokens
from unmask.objectives.base import Batch, LossOutput, Objective


class CausalLMObjective(Objective):
    """Next-token prediction (the autoregressive baseline): X = w[:-1], Y = w[1:]."""

    window_extra = 1

    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device):
        super().__init__(cfg, dataset, device)
        n = cfg.train.eval_batches * cfg.train.batch_size
        self.eval_windows = contiguous_windows(dataset.val, cfg.model.block_size + 1, n)
        self.bytes_per_token = bytes_per_token(self.tokenizer, self.eval_windows[:, 1:])

    def make_batch(self, x0: torch.Tensor, step: int) -> Batch:
        x0 = x0.to(self.device)
        inputs = drop_input_tokens(x0[:, :-1], self.cfg.train.input_dropout,
                                   self.tokenizer.mask_id, self.generator)
        return Batch(inputs, x0[:, 1:])

    def loss(self, logits, batch) -> LossOutput:
        return LossOutput(token_nll(logits, batch.targets, self.tokenizer.vocab_size).sum())

    def validate(self, model, amp_dtype):
        result = causal_nll(model, self.eval_windows, self.tokenizer.vocab_size,
                            batch_size=self.cfg.train.batch_size, amp_dtype=amp_dtype,
                            bytes_per_token=self.bytes_per_token)
        return {"val_loss": result["nll_nats_per_char"], **result}
