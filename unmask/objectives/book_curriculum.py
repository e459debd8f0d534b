"""Seed 004's 3-stage book curriculum as a training objective (name "book_curriculum").

The stages and their items come from a dataset prepared by `unmask book` (data/book):
stage I sentences, stage II adjacent pairs `A [SEP] B`, stage III windows of running text that
start at a paragraph. Each stage has its own masking range: a row draws r ~ U(mask_min,
mask_max) and masks each of its tokens (never padding or [SEP]) with probability r, at least
one. The loss is cross-entropy on the masked tokens (label smoothing
`training.label_smoothing`), normalised by their count.

Schedule. Stage k is given `epochs` passes over its items (capped at `max_steps`), and ends at
the first validation after that budget; with `transition = validation` also after `patience`
validations without a new best stage loss. The last stage runs to `train.max_iters`. Within a
stage the learning rate warms up linearly for `warmup_steps` and decays by a cosine to the
stage's end, peaking at `optim.lr * lr_factor` (seed 004: 1.0 / 0.8 / 0.5): a warm restart
per stage.

Validation (no side effects): `val_loss` is the masked-diffusion ELBO of the validation
text, computed exactly as the `mdlm` objective and `unmask eval --t-points 4` do (so `best`
is the best generative model and compares across runs and tokenizers, bits per byte
included); each stage's own loss (`val_stage_<k>_loss`: masked cross-entropy on a fixed set of
its validation items at fixed masks) drives transitions and the stage-best checkpoints.

Trainer hooks (objectives/base.py), so `unmask book` and `unmask train
--train.objective=book_curriculum` train alike:
- `learning_rate(step, lr, min_lr, horizon)`: the stage's rate for `step`, replacing the
  trainer's schedule (the last stage decays to the trainer's horizon: `train.max_iters`, or
  the steps `train.max_minutes` holds);
- `checkpoints_to_save()`: names (`best_stage1` ...) to write after the current validation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

from unmask.config.schema import RunConfig
from unmask.data.book.stages import load_stages, planned_steps, stage_budgets
from unmask.data.dataset import Dataset
from unmask.data.windows import contiguous_windows
from unmask.errors import UserError
from unmask.eval.likelihood import (
    VALIDATION_SEED,
    build_eval_set,
    bytes_per_token,
    evaluating,
    score_eval_set,
)
from unmask.losses.likelihood import token_nll
from unmask.losses.unmasking import masked_token_loss
from unmask.objectives.base import Batch, LossOutput, Metrics, Objective
from unmask.runtime.device import autocast
from unmask.runtime.rng import derive_seed

VALIDATION_T_POINTS = 4  # as the mdlm objective: `unmask eval --t-points 4` reproduces val_loss


def stage_lr(step: int, peak: float, floor: float, warmup: int, length: int) -> float:
    """Linear warmup to `peak` over `warmup` steps, then cosine to `floor` at `length`
    (nanoGPT's schedule, restarted at each stage; `step` counts from the stage's start)."""
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    if step >= length:
        return floor
    progress = (step - warmup) / max(1, length - warmup)
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (peak - floor)


def mask_rows(tokens: torch.Tensor, maskable: torch.Tensor, low: float, high: float,
              generator: torch.Generator) -> torch.Tensor:
    """(B, T) bool: row b masks each maskable position with probability r_b ~ U(low, high),
    and at least one where it has any."""
    B, T = tokens.shape
    rate = low + (high - low) * torch.rand(B, generator=generator, device=tokens.device)
    draws = torch.rand(B, T, generator=generator, device=tokens.device)
    masked = (draws < rate[:, None]) & maskable
    fallback = torch.rand(B, T, generator=generator, device=tokens.device) * maskable
    pick = torch.arange(T, device=tokens.device)[None, :] == fallback.argmax(1, keepdim=True)
    empty = ~masked.any(1, keepdim=True) & maskable.any(1, keepdim=True)
    return masked | (empty & pick)


class BookLoader:
    """Items of the current stage, in a fresh shuffled order each epoch; the state (stage,
    epoch, position) makes resume exact and tells how far the stage has got."""

    def __init__(self, stages, batch_size: int, seed: int, current):
        self.stages, self.batch_size, self.seed, self.current = stages, batch_size, seed, current
        self.stage, self.epoch, self.position = current(), 0, 0
        self._order: tuple[tuple[int, int], torch.Tensor] | None = None

    def _permutation(self) -> torch.Tensor:
        key = (self.stage, self.epoch)
        if self._order is None or self._order[0] != key:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, "book", *key))
            self._order = (key, torch.randperm(len(self.stages[self.stage].train), generator=gen))
        return self._order[1]

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.current() != self.stage:  # the curriculum moved on: start the new stage
            self.stage, self.epoch, self.position = self.current(), 0, 0
        rows, picked = self.stages[self.stage].train, []
        need = self.batch_size
        while need:
            take = self._permutation()[self.position:self.position + need]
            picked.append(take)
            need -= len(take)
            self.position += len(take)
            if self.position >= len(rows):
                self.epoch, self.position = self.epoch + 1, 0
        index = torch.cat(picked)
        return rows.tokens[index], rows.lengths[index]

    def state_dict(self) -> dict:
        return {"stage": self.stage, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.stage, self.epoch = int(state["stage"]), int(state["epoch"])
        self.position = int(state["position"])


@dataclass
class BookBatch(Batch):
    masked: torch.Tensor  # (B, T) bool


@dataclass
class BookState:
    position: int = 0  # index into the active stages
    stage_start: int = 0  # step at which the current stage began
    best: float = math.inf  # best validation loss of the current stage
    stale: int = 0  # validations since `best` improved


class BookCurriculumObjective(Objective):
    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device, log=tqdm.write):
        super().__init__(cfg, dataset, device)
        if cfg.model.mode != "token_classifier" or cfg.model.binary_head:
            raise UserError("the book_curriculum objective trains a token_classifier with a "
                            f"vocabulary head; got model.mode={cfg.model.mode}")
        path = dataset.path / "curriculum.json"
        if not path.is_file():
            raise UserError(f"{dataset.path} is not a book dataset (no curriculum.json); "
                            "prepare and train it with `unmask book BOOK`")
        self.schedule = json.loads(path.read_text(encoding="utf-8"))
        self.log = log
        tok = self.tokenizer
        self.pad_id, self.sep_id = tok.special_id("pad"), tok.special_id("sep")
        self.stages = load_stages(dataset.path, self.pad_id)
        settings = self.schedule["stages"]
        if len(settings) != len(self.stages):
            raise UserError(f"{dataset.path}: curriculum.json and stages.json disagree; "
                            "prepare the book again")
        items_per_step = self.global_batch * cfg.train.grad_accum
        planned = [planned_steps(len(s.train), st["epochs"], st["max_steps"], items_per_step)
                   for s, st in zip(self.stages, settings)]
        self.active = [k for k, p in enumerate(planned) if p > 0]
        if not self.active:
            raise UserError(f"{dataset.path}: no curriculum stage has items and epochs")
        self.budgets = stage_budgets(planned, cfg.train.eval_interval)
        for k in self.active:
            if self.stages[k].row_length > cfg.model.block_size:
                raise UserError(f"stage {k + 1} rows are {self.stages[k].row_length} tokens, "
                                f"longer than model.block_size {cfg.model.block_size}")
        self.state = BookState()
        self.pending_checkpoints: list[str] = []
        self._build_validation()

    # ------------------------------------------------------------------ schedule
    @property
    def stage(self) -> int:
        """Index (into the configured stages) of the stage being trained."""
        return self.active[self.state.position]

    def settings(self, k: int) -> dict:
        return self.schedule["stages"][k]

    def learning_rate(self, step: int, lr: float, min_lr: float, horizon: int) -> float:
        """Trainer hook: the stage's warmup + cosine, scaled by its lr_factor."""
        st, a = self.settings(self.stage), self.state.position
        last = a == len(self.active) - 1
        length = max(1, horizon - self.state.stage_start) if last else self.budgets[a]
        f = st["lr_factor"]
        return stage_lr(step - self.state.stage_start, lr * f, min_lr * f, st["warmup_steps"],
                        length)

    def make_loader(self, seed: int) -> BookLoader:
        self.loader = BookLoader(self.stages, self.global_batch, seed, lambda: self.stage)
        return self.loader

    # ------------------------------------------------------------------ batches and loss
    def _mask(self, tokens, lengths, k, generator) -> torch.Tensor:
        st = self.settings(k)
        valid = torch.arange(tokens.size(1), device=tokens.device)[None, :] < lengths[:, None]
        return mask_rows(tokens, valid & (tokens != self.sep_id), st["mask_min"],
                         st["mask_max"], generator)

    def make_batch(self, item, step: int) -> BookBatch:
        tokens, lengths = (t.to(self.device) for t in item)
        masked = self._mask(tokens, lengths, self.stage, self.generator)
        inputs = torch.where(masked, torch.full_like(tokens, self.tokenizer.mask_id), tokens)
        targets = torch.where(masked, tokens, torch.zeros_like(tokens))
        return BookBatch(inputs, targets, masked)

    def normaliser(self, batch: BookBatch) -> torch.Tensor:
        return batch.masked.sum().float()

    def loss(self, logits: torch.Tensor, batch: BookBatch) -> LossOutput:
        total, _ = masked_token_loss(logits, batch.targets, batch.masked,
                                     self.tokenizer.vocab_size,
                                     uncertainty_factor=self.schedule["label_smoothing"])
        return LossOutput(total)

    # ------------------------------------------------------------------ validation
    def _build_validation(self) -> None:
        cfg = self.cfg.train
        windows = contiguous_windows(self.dataset.val, self.cfg.model.block_size,
                                     max(1, cfg.eval_batches * cfg.batch_size
                                         // VALIDATION_T_POINTS))
        self.eval_set = build_eval_set(windows, self.tokenizer.mask_id, VALIDATION_T_POINTS,
                                       VALIDATION_SEED)
        self.bytes_per_token = bytes_per_token(self.tokenizer, windows)
        self.val_sets = {}
        for k in self.active:
            rows = self.stages[k].val
            n = min(len(rows), cfg.eval_batches * cfg.batch_size)
            gen = torch.Generator().manual_seed(derive_seed(VALIDATION_SEED, "book-val", k))
            tokens, lengths = rows.tokens[:n], rows.lengths[:n]
            self.val_sets[k] = (tokens, self._mask(tokens, lengths, k, gen))

    def stage_scores(self, model, amp_dtype, k: int) -> tuple[float, float]:
        """Masked cross-entropy (no smoothing) and top-1 accuracy on stage k's fixed set."""
        tokens, masked = self.val_sets[k]
        vocab, mask_id, bs = self.tokenizer.vocab_size, self.tokenizer.mask_id, \
            self.cfg.train.batch_size
        nll, correct = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
        with evaluating(model):
            for i in range(0, len(tokens), bs):
                x0, m = tokens[i:i + bs].to(self.device), masked[i:i + bs].to(self.device)
                with autocast(self.device, amp_dtype):
                    logits = model(torch.where(m, torch.full_like(x0, mask_id), x0))
                target = torch.where(m, x0, torch.zeros_like(x0))
                nll += (token_nll(logits, target, vocab) * m).sum()
                correct += ((logits[..., :vocab].argmax(-1) == x0) & m).sum()
        count = max(1, int(masked.sum()))
        return float(nll) / count, float(correct) / count

    def validate(self, model, amp_dtype) -> Metrics:
        elbo = score_eval_set(model, self.eval_set, self.tokenizer.vocab_size,
                              batch_size=self.cfg.train.batch_size, amp_dtype=amp_dtype,
                              bytes_per_token=self.bytes_per_token)
        metrics = {"val_loss": elbo["elbo_nats_per_char"], **elbo}
        for k in self.active:
            loss, accuracy = self.stage_scores(model, amp_dtype, k)
            metrics[f"val_stage_{k + 1}_loss"] = loss
            metrics[f"val_stage_{k + 1}_accuracy"] = accuracy
        return metrics

    def after_validation(self, step: int, metrics: Metrics) -> Metrics:
        """Track the current stage's best loss (asking for its `best_stage<k>` checkpoint on a
        new best) and move to the next stage when its budget is spent (or, with validation
        transitions, after `patience` validations without a new best)."""
        s, k = self.state, self.stage
        loss = metrics[f"val_stage_{k + 1}_loss"]
        if loss < s.best:
            s.best, s.stale = loss, 0
            self.pending_checkpoints.append(f"best_stage{k + 1}")
        else:
            s.stale += 1
        steps = step - s.stage_start
        st = self.settings(k)
        last = s.position == len(self.active) - 1
        advance = not last and (steps >= self.budgets[s.position]
                                or (self.schedule["transition"] == "validation"
                                    and s.stale >= st["patience"]))
        report = {"book_stage": float(k + 1), "book_stage_loss": loss,
                  "book_stage_best": s.best, "book_stage_stale": float(s.stale),
                  "book_stage_steps": float(steps), "book_stage_advanced": float(advance)}
        if advance:
            self.state = BookState(position=s.position + 1, stage_start=step)
            nxt = self.settings(self.stage)
            self.log(f"stage {k + 1} ({st['name']}) done after {steps} steps, best stage loss "
                     f"{s.best:.4f}; stage {self.stage + 1} ({nxt['name']}, {nxt['format']}, "
                     f"masking {nxt['mask_min']:.2f}-{nxt['mask_max']:.2f}) begins")
        return report

    def checkpoints_to_save(self) -> list[str]:
        """Trainer hook: the stage-best checkpoints asked for since the last call."""
        names, self.pending_checkpoints = self.pending_checkpoints, []
        return names

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        s = self.state
        return {"generator": self.generator.get_state(),
                "book": {"position": s.position, "stage_start": s.stage_start,
                         "best": None if math.isinf(s.best) else s.best, "stale": s.stale}}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        b = state["book"]
        self.state = BookState(int(b["position"]), int(b["stage_start"]),
                               math.inf if b["best"] is None else float(b["best"]),
                               int(b["stale"]))
