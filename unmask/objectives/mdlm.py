"""MDLM: mask each token with probability t, score the continuous-time ELBO."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unmask.config.schema import RunConfig
from unmask.data.dataset import Dataset
from unmask.data.windows import contiguous_windows
from unmask.eval.likelihood import (
    VALIDATION_SEED,
    build_eval_set,
    bytes_per_token,
    score_eval_set,
)
from unmask.losses.likelihood import LOSS_WEIGHTINGS, masked_diffusion_loss
from unmask.noise.masking import drop_input_tokens, mask_tokens, sample_times
from unmask.noise.schedules import NOISE_SCHEDULES
from unmask.objectives.base import Batch, LossOutput, Objective

# Training validation scores eval_batches * batch_size // VALIDATION_T_POINTS windows at this
# many stratified times each: the same ELBO as `unmask eval --t-points 4 --max-windows N`.
VALIDATION_T_POINTS = 4


@dataclass
class DiffusionBatch(Batch):
    t: torch.Tensor  # (B,) diffusion time of each row
    masked: torch.Tensor  # (B, L) bool


class MDLMObjective(Objective):
    """MDLM: mask each token with probability t ~ U(0, 1), loss = ELBO (CE / t on masked)."""

    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device):
        super().__init__(cfg, dataset, device)
        windows = contiguous_windows(dataset.val, cfg.model.block_size,
                                     cfg.train.eval_batches * cfg.train.batch_size
                                     // VALIDATION_T_POINTS)
        self.eval_set = build_eval_set(windows, self.tokenizer.mask_id, VALIDATION_T_POINTS,
                                       VALIDATION_SEED)
        self.bytes_per_token = bytes_per_token(self.tokenizer, windows)
        self.schedule = NOISE_SCHEDULES[cfg.train.noise_schedule]
        self.weighting = LOSS_WEIGHTINGS[cfg.train.loss_weighting]

    def make_batch(self, x0: torch.Tensor, step: int) -> DiffusionBatch:
        x0 = x0.to(self.device)
        t = sample_times(x0.size(0), self.generator, self.cfg.train.antithetic, self.cfg.train.t_min)
        xt, masked = mask_tokens(x0, t, self.tokenizer.mask_id, self.generator, self.schedule)
        xt = drop_input_tokens(xt, self.cfg.train.input_dropout, self.tokenizer.mask_id,
                               self.generator)  # hides context only: `masked` is what is scored
        return DiffusionBatch(xt, x0, t, masked)

    def loss(self, logits, batch: DiffusionBatch) -> LossOutput:
        total, _ = masked_diffusion_loss(logits, batch.targets, batch.masked, batch.t,
                                         self.tokenizer.vocab_size, self.schedule, self.weighting)
        return LossOutput(total)

    def validate(self, model, amp_dtype):
        result = score_eval_set(model, self.eval_set, self.tokenizer.vocab_size,
                                batch_size=self.cfg.train.batch_size, amp_dtype=amp_dtype,
                                bytes_per_token=self.bytes_per_token)
        return {"val_loss": result["elbo_nats_per_char"], **result}
