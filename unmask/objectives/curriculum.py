"""The staged unmasking curriculum as a training task (objective name "unmasking", seed 000/001).

Batches come from a curriculum dataset (unmask.data.staged): samples in prepared order, each
masked for a stage drawn from the active ones (0..current with USE_ALL_STAGES_FOR_TRAINING,
else the current one). The loss is cross-entropy on masked positions only, with the
curriculum section's options (mask-ratio weighting, label smoothing, entropy penalty).

Every evaluation scores the fixed validation pool of every validation stage, prints seed 001's
per-stage report, and feeds the mean loss to `curriculum.advance`: after a stage's
`val_loss_stale_count` evaluations without a new best, training moves to the next stage.
The curriculum state (stage, best, stale count) is part of the task's state_dict, so a
resumed run continues in the same stage with the same counters.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

from unmask.config.schema import RunConfig
from unmask.data.dataset import Dataset
from unmask.data.staged.dataset import StagedData
from unmask.errors import UserError
from unmask.eval.likelihood import evaluating
from unmask.losses.likelihood import token_nll
from unmask.losses.unmasking import entropy_penalty_at, masked_token_loss
from unmask.noise.stages import bert_corruption, describe_stage
from unmask.objectives.base import Batch, LossOutput, Metrics, Objective
from unmask.runtime.device import autocast


@dataclass
class CurriculumState:
    """Where training is in the curriculum; saved in checkpoints for exact resume."""

    stage: int = 0
    best_val_loss: float = math.inf  # best validation loss seen in the current stage
    stale_count: int = 0  # evaluations since best_val_loss last improved

    def state_dict(self) -> dict:
        """JSON-friendly: infinity (no evaluation yet in this stage) is stored as None."""
        best = None if math.isinf(self.best_val_loss) else float(self.best_val_loss)
        return {"stage": self.stage, "best_val_loss": best, "stale_count": self.stale_count}

    def load_state_dict(self, state: dict) -> None:
        self.stage = int(state["stage"])
        best = state["best_val_loss"]
        self.best_val_loss = math.inf if best is None else float(best)
        self.stale_count = int(state["stale_count"])


def advance(state: CurriculumState, val_loss: float,
            stages: list[dict]) -> tuple[CurriculumState, bool]:
    """Record one validation loss; return (new state, whether the stage advanced).

    A loss below the stage's best resets the stale count; anything else (including NaN) adds
    one. After the current stage's `val_loss_stale_count` stale evaluations in a row, training
    moves to the next stage with best reset to infinity: the new stage masks more, so its
    losses are higher and not comparable with the old stage's best. The last stage never
    advances; it just keeps counting.
    """
    if val_loss < state.best_val_loss:
        return dataclasses.replace(state, best_val_loss=float(val_loss), stale_count=0), False
    stale = state.stale_count + 1
    last = state.stage >= len(stages) - 1
    if not last and stale >= stages[state.stage]["val_loss_stale_count"]:
        return CurriculumState(stage=state.stage + 1), True
    return dataclasses.replace(state, stale_count=stale), False


def stages_for_training(stages: list[dict], current: int, use_all_stages: bool) -> list[dict]:
    """The stages training batches draw from: 0..current when mixing (USE_ALL_STAGES_FOR_TRAINING,
    which keeps earlier stages from being forgotten), else only the current one."""
    if not 0 <= current < len(stages):
        raise ValueError(f"current stage {current} out of range for {len(stages)} stages")
    return list(stages[: current + 1]) if use_all_stages else [stages[current]]


def check_block_size(name: str, required: int, got: int) -> None:
    """Seed 000's constraint: a curriculum dataset serves windows of exactly one length."""
    if required != got:
        raise UserError(f"Block size mismatch: dataset '{name}' requires block_size={required}, "
                         f"got {got}")


@dataclass
class CurriculumBatch(Batch):
    masked: torch.Tensor  # (B, L) bool
    stage: torch.Tensor  # (B,) training stage each row was masked by
    entropy_penalty: float  # multiplier at this step (curriculum option)


class CurriculumObjective(Objective):
    """Stage-curriculum unmasking on a prepared curriculum dataset."""

    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device, log=tqdm.write):
        super().__init__(cfg, dataset, device)
        self.data = StagedData.open(dataset.path, dataset.meta, dataset.train)
        check_block_size(self.data.name, self.data.block_size, cfg.model.block_size)
        if cfg.model.mode != "token_classifier" or cfg.model.binary_head:
            raise UserError("the unmasking objective trains a token_classifier with a vocabulary "
                            f"head; got model.mode={cfg.model.mode}"
                            + (" with a binary head" if cfg.model.binary_head else ""))
        self.stages = self.data.unmasking_stages
        self.validation = self.data.validation_sets()
        self.state = CurriculumState()
        self.log = log

    # ------------------------------------------------------------------ training batches
    def active_stages(self) -> list[int]:
        """Stages training draws from now (stages_for_training, as indices)."""
        current = self.state.stage
        return list(range(current + 1)) if self.data.use_all_stages else [current]

    def make_loader(self, seed: int):
        # The sample stream is seeded by the dataset's SEED (so prepared data fits any run);
        # train.seed still drives initialisation, dropout and BERT corruption.
        return self.data.loader(self.global_batch, self.active_stages)

    def make_batch(self, item, step: int) -> CurriculumBatch:
        x0, masked, stage = (t.to(self.device, non_blocking=True) for t in item)
        mask_id = self.tokenizer.mask_id
        if self.cfg.curriculum.bert_corruption:
            inputs = bert_corruption(x0, masked, mask_id, self.tokenizer.vocab_size, self.generator)
        else:
            inputs = torch.where(masked, torch.full_like(x0, mask_id), x0)
        c = self.cfg.curriculum
        penalty = (entropy_penalty_at(step, c.entropy_penalty_start_iter, c.max_entropy_penalty,
                                      self.cfg.train.max_iters)
                   if c.enable_entropy_penalty else 0.0)
        return CurriculumBatch(inputs, x0, masked, stage, penalty)

    def normaliser(self, batch: CurriculumBatch) -> torch.Tensor:
        """Masked tokens in the batch (the loss is a sum over them); stays on the device."""
        return batch.masked.sum().float()

    def loss(self, logits: torch.Tensor, batch: CurriculumBatch) -> LossOutput:
        c = self.cfg.curriculum
        total, _ = masked_token_loss(logits, batch.targets, batch.masked,
                                     self.tokenizer.vocab_size,
                                     weight_loss_by_mask_ratio=c.weight_loss_by_mask_ratio,
                                     uncertainty_factor=c.uncertainty_factor,
                                     entropy_penalty=batch.entropy_penalty)
        return LossOutput(total)

    # ------------------------------------------------------------------ validation
    def stage_scores(self, model: torch.nn.Module, amp_dtype) -> list[dict[str, float]]:
        """Plain masked cross-entropy, top-1 accuracy and achieved masked ratio per validation
        stage, on the first min(pool, eval_batches * batch_size) samples of its fixed pool."""
        vocab, mask_id = self.tokenizer.vocab_size, self.tokenizer.mask_id
        batch_size = self.cfg.train.batch_size
        results = []
        with evaluating(model):
            for val in self.validation:
                n = min(len(val.x0), self.cfg.train.eval_batches * batch_size)
                nll_sum = torch.zeros((), device=self.device)
                correct = torch.zeros((), device=self.device)
                count = torch.zeros((), device=self.device)
                for i in range(0, n, batch_size):
                    x0 = val.x0[i:min(n, i + batch_size)].to(self.device)
                    masked = val.masked[i:min(n, i + batch_size)].to(self.device)
                    with autocast(self.device, amp_dtype):
                        logits = model(torch.where(masked, torch.full_like(x0, mask_id), x0))
                    nll_sum += (token_nll(logits, x0, vocab) * masked).sum()
                    correct += ((logits[..., :vocab].argmax(-1) == x0) & masked).sum()
                    count += masked.sum()
                masked_count = max(1.0, float(count))
                results.append({"loss": float(nll_sum) / masked_count,
                                "accuracy": float(correct) / masked_count,
                                "masked_ratio": float(count) / (n * val.x0.size(1))})
        return results

    def validate(self, model: torch.nn.Module, amp_dtype) -> Metrics:
        """Every validation stage's figures and their means; `val_loss` is the mean loss."""
        per_stage = self.stage_scores(model, amp_dtype)
        val_loss = sum(r["loss"] for r in per_stage) / len(per_stage)
        random_loss = uniform_loss(self.tokenizer.vocab_size)
        metrics = {
            "val_loss": val_loss,
            "val_model_vs_random": random_loss / val_loss if val_loss > 0 else math.inf,
            "val_most_likely_accuracy": sum(r["accuracy"] for r in per_stage) / len(per_stage),
            "val_masked_token_ratio": sum(r["masked_ratio"] for r in per_stage) / len(per_stage),
        }
        for v, r in enumerate(per_stage):
            metrics.update({f"val_stage_{v}_{k}": value for k, value in r.items()})
        return metrics

    def after_validation(self, step: int, metrics: Metrics) -> Metrics:
        """One curriculum observation: advance on the mean loss, print seed 001's report.

        The returned stage / best / stale count describe the stage trained since the last
        validation, this one included; when it triggers an advance, `curriculum_advanced` is 1
        and the next steps train on the next stage.
        """
        val_loss = metrics["val_loss"]
        before = self.state
        improved = val_loss < before.best_val_loss
        best = val_loss if improved else before.best_val_loss
        stale = 0 if improved else before.stale_count + 1
        self.state, advanced = advance(before, val_loss, self.stages)
        self._report(before.stage, stale, best, metrics, advanced)
        return {"curriculum_stage": float(before.stage),
                "curriculum_best_val_loss": best if math.isfinite(best) else val_loss,
                "curriculum_stale_count": float(stale),
                "curriculum_advanced": float(advanced)}

    def _report(self, stage: int, stale: int, best: float, metrics: Metrics,
                advanced: bool) -> None:
        """Seed 001's log block (Training Logs Example), one line per validation stage."""
        vocab = self.tokenizer.vocab_size
        random_loss = uniform_loss(vocab)
        accuracy = metrics["val_most_likely_accuracy"]
        s = self.stages[stage]
        lines = [
            f"Stage {stage} ({s['type']}): {describe_stage(s)}, stale_count={stale}, "
            f"best val loss {best:.4f}",
            f"  val model vs random: {random_loss / metrics['val_loss']:.2f}x better",
            f"  val accuracy: {accuracy:.4f} (random baseline: {1 / vocab:.4f})",
            f"  Most likely guess correct P %: {100 * accuracy:.1f}%",
            "Per-stage validation losses:",
        ]
        for v, val in enumerate(self.validation):
            loss = metrics[f"val_stage_{v}_loss"]
            lines.append(f"  Stage {v} ({val.stage['type']}): loss {loss:.4f}, model vs "
                         f"random {random_loss / loss:.2f}x, accuracy "
                         f"{metrics[f'val_stage_{v}_accuracy']:.3f}, "
                         f"masked {metrics[f'val_stage_{v}_masked_ratio']:.3f}")
        if advanced:
            nxt = self.stages[self.state.stage]
            lines.append(f"Advancing to stage {self.state.stage} ({nxt['type']}): "
                         f"{describe_stage(nxt)} after {stale} evaluations without improvement")
        self.log("\n".join(lines))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "curriculum": self.state.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.state = CurriculumState()
        self.state.load_state_dict(state["curriculum"])


def uniform_loss(vocab_size: int) -> float:
    """Cross-entropy of a uniform guess over the real vocabulary: the `random` baseline."""
    return math.log(vocab_size)
