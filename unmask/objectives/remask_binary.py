"""Binary remasking (seeds 000/001): classify every visible token as good or wrong."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unmask.config.schema import RunConfig
from unmask.data.dataset import Dataset
from unmask.errors import UserError
from unmask.eval.likelihood import evaluating
from unmask.eval.repair_metrics import detection_scores
from unmask.noise.corruption import binary_corruption
from unmask.objectives.base import Batch, LossOutput, Objective, _val_windows
from unmask.objectives.self_correction import VALIDATION_CORRUPTION_SEED
from unmask.runtime.device import autocast


class RemaskBinaryObjective(Objective):
    """Per-token good (0) / wrong (1) classification of text with swapped tokens.

    Inputs: binary_corruption() (all real tokens; a row's swap rate is c * u as in the
    two-token task). Loss: cross-entropy per position, weight_remask_task on wrong positions.
    validate(): mean weighted CE (`val_loss`), detection precision/recall/F1 and accuracy on a
    fixed validation set (VALIDATION_CORRUPTION_SEED).
    """

    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device):
        super().__init__(cfg, dataset, device)
        if cfg.model.mode != "token_classifier":
            raise UserError("train.objective=remask_binary needs model.mode=token_classifier")
        self.sc = cfg.self_correction
        tok = self.tokenizer
        self.V, self.mask_id = tok.vocab_size, tok.mask_id
        self.wrong_id = tok.special_id("wrong")
        # Without the binary head, the [GOOD]/[BAD] columns of the vocabulary head are the
        # two classes (seed 000's remask_good_id / remask_wrong_id targets).
        self.columns = None if cfg.model.binary_head else [tok.special_id("good"),
                                                           tok.special_id("bad")]
        inputs, wrong = binary_corruption(_val_windows(cfg, dataset), self.sc, self.V,
                                          self.mask_id, self.wrong_id,
                                          torch.Generator().manual_seed(VALIDATION_CORRUPTION_SEED))
        self.eval_inputs, self.eval_targets = inputs, wrong.long()

    def class_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, L, 2) good/wrong logits, from either head."""
        return (logits if self.columns is None else logits[..., self.columns]).float()

    def make_batch(self, x0: torch.Tensor, step: int) -> Batch:
        inputs, wrong = binary_corruption(x0.to(self.device), self.sc, self.V, self.mask_id,
                                          self.wrong_id, self.generator)
        return Batch(inputs, wrong.long())

    def _weighted_ce(self, logits, targets) -> torch.Tensor:
        ce = F.cross_entropy(self.class_logits(logits).flatten(0, 1), targets.flatten(),
                             reduction="none").view_as(targets)
        return ce * torch.where(targets == 1, self.sc.weight_remask_task, 1.0)

    def loss(self, logits, batch) -> LossOutput:
        return LossOutput(self._weighted_ce(logits, batch.targets).sum())

    def validate(self, model, amp_dtype):
        total, preds = 0.0, []
        bs = self.cfg.train.batch_size
        with evaluating(model):
            for i in range(0, self.eval_inputs.size(0), bs):
                x = self.eval_inputs[i:i + bs].to(self.device)
                y = self.eval_targets[i:i + bs].to(self.device)
                with autocast(self.device, amp_dtype):
                    logits = model(x)
                total += float(self._weighted_ce(logits, y).sum())
                preds.append(self.class_logits(logits).argmax(-1).cpu())
        pred, truth = torch.cat(preds).bool(), self.eval_targets.bool()
        d = detection_scores(pred, truth)
        return {"val_loss": total / truth.numel(), "detect_precision": d["precision"],
                "detect_recall": d["recall"], "detect_f1": d["f1"],
                "accuracy": float((pred == truth).float().mean())}
