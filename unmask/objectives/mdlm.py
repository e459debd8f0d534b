"""MDLM: mask each token with probability t, score the continuous-time ELBO."""

from __future__ import annotations

import torch

from unmask.config.schema import RunConfig
from unmask.data.dataset import Dataset
from unmask.data.windows import contiguous_windows
from unmask.eval.likelihood import build_eval_set, score_eval_set
from unmask.noise.masking import mask_tokens, sample_times
from unmask.objectives.base import EVAL_SEED, EVAL_T_POINTS, Batch, Task
from unmask.objectives.losses import masked_diffusion_loss


class MaskedDiffusionTask(Task):
    """MDLM: mask each token with probability t ~ U(0, 1), loss = ELBO (CE / t on masked)."""

    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device):
        super().__init__(cfg, dataset, device)
        windows = contiguous_windows(dataset.val, cfg.model.block_size,
                                     cfg.train.eval_batches * cfg.train.batch_size // EVAL_T_POINTS)
        self.eval_set = build_eval_set(windows, self.tokenizer.mask_id, EVAL_T_POINTS, EVAL_SEED)

    def make_batch(self, x0: torch.Tensor, step: int) -> Batch:
        x0 = x0.to(self.device)
        t = sample_times(x0.size(0), self.generator, self.cfg.train.antithetic, self.cfg.train.t_min)
        xt, masked = mask_tokens(x0, t, self.tokenizer.mask_id, self.generator)
        return Batch(xt, x0, {"t": t, "masked": masked})

    def loss(self, logits, batch):
        return masked_diffusion_loss(logits, batch.targets, batch.extras["masked"],
                                     batch.extras["t"], self.tokenizer.vocab_size)[0]

    def evaluate(self, model, amp_dtype):
        result = score_eval_set(model, self.eval_set, self.tokenizer.vocab_size,
                                batch_size=self.cfg.train.batch_size, amp_dtype=amp_dtype)
        return {"val_loss": result["elbo_nats_per_char"], **result}
