"""Training tasks for self-correction (seeds 002/003) and binary remasking (seeds 000/001).

`SelfCorrectionObjective` (objective "self_correction"): a batch is corrupt()ed with the remask ratio
of the curriculum (get_corruption_scheduler), scored by task_weighted_loss with the scheduled
destructive-edit penalty. In the single-token variant (`remask_target="mask"`) a
MaskBiasController adds a bias to the [MASK] logit and steers it once per optimizer step in
after_step(), on the device (no host sync); the trainer logs what after_step returns.

`RemaskBinaryObjective` (objective "remask_binary"): every input token is real, some swapped for a
random other one; each position is classified good (0) / wrong (1), with the binary head
(`model.binary_head`, or `transfer.switch_to_binary` on a pretrained unmasking model), or
without it from the [GOOD]/[BAD] columns of the vocabulary head.

Where the bias lives: the controller state (bias, running average) is part of the task's
state_dict, which the trainer writes into every checkpoint's state.json; resume restores it.
Sampling and evaluation read the final bias back with `checkpoint_mask_logit_bias`, a plain
JSON read of state.json (no tensors are loaded). A checkpoint without training state falls
back to `initial_mask_logit_bias`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unmask.config.schema import RunConfig
from unmask.data.dataset import Dataset
from unmask.errors import UserError
from unmask.eval.likelihood import VALIDATION_SEED, evaluating
from unmask.eval.repair_metrics import detection_scores
from unmask.losses.self_correction import task_weighted_loss
from unmask.model.readout import flag_from_logits
from unmask.noise.corruption import (
    Corruption,
    corrupt,
    get_corruption_scheduler,
    remask_id_for,
)
from unmask.objectives.base import Batch, LossOutput, Objective, _val_windows
from unmask.objectives.self_correction_controller import MaskBiasController
from unmask.runtime.device import autocast
from unmask.runtime.rng import derive_seed

# The fixed validation corruption of both self-correction objectives.
VALIDATION_CORRUPTION_SEED = derive_seed(VALIDATION_SEED, "corruption")


def _slice(c: Corruption, i: int, j: int, device: torch.device) -> Corruption:
    return Corruption(c.inputs[i:j].to(device), c.targets[i:j].to(device),
                      c.mask_positions[i:j].to(device), c.replaced_positions[i:j].to(device),
                      c.corruption_rate[i:j].to(device),
                      None if c.originals is None else c.originals[i:j].to(device))


@dataclass
class SelfCorrectionBatch(Batch):
    corruption: Corruption
    penalty: float  # destructive-edit penalty at this step (curriculum)
    remask_ratio: float  # share of swapped tokens at this step (curriculum)


class SelfCorrectionObjective(Objective):
    """[MASK]/[WRONG] corruption, task-weighted loss, curriculum, and the [MASK] bias controller.

    validate(): `val_loss` is the task-weighted loss per token on a fixed validation set
    (VALIDATION_CORRUPTION_SEED, built once, at the full remask ratio and the full penalty, so values are
    comparable across the run); `detect_precision/recall/f1` score the flags (argmax over real
    tokens + remask id, with the current bias) against the swapped positions of that set;
    `fill_accuracy` is the argmax accuracy over real tokens at its [MASK] positions.
    """

    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device):
        super().__init__(cfg, dataset, device)
        if cfg.model.binary_head or cfg.model.mode != "token_classifier":
            raise UserError("train.objective=self_correction needs a token_classifier with the "
                             "vocabulary head; for a good/wrong head use "
                             "train.objective=remask_binary")
        self.sc = cfg.self_correction
        tok = self.tokenizer
        self.V, self.mask_id = tok.vocab_size, tok.mask_id
        self.wrong_id = tok.special_id("wrong")
        self.remask_id = remask_id_for(self.sc.remask_target, self.mask_id, self.wrong_id)
        self.controller = None
        if self.sc.remask_target == "mask":
            self.controller = MaskBiasController.from_config(self.sc)
            self._controller_to_device()
        windows = _val_windows(cfg, dataset)
        self.eval_set = corrupt(windows, 1.0, self.sc, self.V, self.mask_id, self.wrong_id,
                                torch.Generator().manual_seed(VALIDATION_CORRUPTION_SEED))

    # -------------------------------------------------------------- bias
    def _controller_to_device(self) -> None:
        # Tensor state: updates stay on the device, and continuing and resumed runs do the
        # same float32 arithmetic, so resume is exact.
        c = self.controller
        c.bias = torch.tensor(float(c.bias), dtype=torch.float32, device=self.device)
        c.running_avg = torch.tensor(float(c.running_avg), dtype=torch.float32,
                                     device=self.device)

    @property
    def mask_logit_bias(self) -> float | torch.Tensor:
        return self.controller.bias if self.controller is not None else 0.0

    # -------------------------------------------------------------- training
    def make_batch(self, x0: torch.Tensor, step: int) -> SelfCorrectionBatch:
        x0 = x0.to(self.device)
        penalty, ratio = get_corruption_scheduler(step, self.sc)
        c = corrupt(x0, ratio, self.sc, self.V, self.mask_id, self.wrong_id, self.generator)
        return SelfCorrectionBatch(c.inputs, c.targets, c, penalty, ratio)

    def loss(self, logits, batch: SelfCorrectionBatch) -> LossOutput:
        total, _, diag = task_weighted_loss(logits, batch.corruption, self.mask_id,
                                            self.wrong_id, batch.penalty, self.sc,
                                            self.mask_logit_bias, vocab_size=self.V)
        # the curriculum values this batch trained with, logged by after_step
        schedule = {"remask_ratio": batch.remask_ratio, "penalty_mask_correct": batch.penalty}
        return LossOutput(total, {**diag, **schedule})

    def after_step(self, step: int, diagnostics: list[dict]) -> dict:
        """Feed the window's [MASK]/[WRONG] probability on unmask positions to the controller.

        Values may be 0-dim tensors; the trainer converts them only when it logs.
        """
        if not diagnostics:
            return {}
        pending = diagnostics
        out = {k: pending[-1][k] for k in ("remask_ratio", "penalty_mask_correct")}
        n = sum(d["n_unmask"] for d in pending)
        prob = sum(d["avg_mask_prob"] * d["n_unmask"] for d in pending) / n.clamp_min(1)
        if self.controller is None:
            return {**out, "avg_wrong_prob": prob}
        prob = torch.where(n > 0, prob, torch.full_like(prob, self.controller.target))
        bias = self.controller.update(prob)
        return {**out, "mask_logit_bias": bias, "avg_mask_prob": prob}

    # -------------------------------------------------------------- validation
    def validate(self, model, amp_dtype):
        penalty = self.sc.penalty_mask_correct
        bias = float(self.mask_logit_bias)
        total, count, correct, n_masked = 0.0, 0, 0, 0
        flags, truth = [], []
        N, bs = self.eval_set.inputs.size(0), self.cfg.train.batch_size
        with evaluating(model):
            for i in range(0, N, bs):
                c = _slice(self.eval_set, i, i + bs, self.device)
                with autocast(self.device, amp_dtype):
                    logits = model(c.inputs)
                s, n, _ = task_weighted_loss(logits, c, self.mask_id, self.wrong_id, penalty,
                                             self.sc, bias, vocab_size=self.V)
                total, count = total + float(s), count + n
                visible = ~c.mask_positions
                flags.append((flag_from_logits(logits, self.V, self.remask_id, bias)
                              & visible).cpu())
                truth.append(c.replaced_positions.cpu())
                fills = logits[..., :self.V].argmax(-1)
                correct += int(((fills == c.targets) & c.mask_positions).sum())
                n_masked += int(c.mask_positions.sum())
        d = detection_scores(torch.cat(flags), torch.cat(truth))
        out = {"val_loss": total / max(count, 1), "detect_precision": d["precision"],
               "detect_recall": d["recall"], "detect_f1": d["f1"],
               "fill_accuracy": correct / max(n_masked, 1)}
        if self.controller is not None:
            out["mask_logit_bias"] = bias
        return out

    # -------------------------------------------------------------- state
    def state_dict(self) -> dict:
        state = super().state_dict()
        if self.controller is not None:
            state["bias_controller"] = self.controller.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if self.controller is not None and "bias_controller" in state:
            self.controller.load_state_dict(state["bias_controller"])
            self._controller_to_device()
