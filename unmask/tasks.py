"""Training tasks: what a batch of clean windows becomes, which loss scores it, how to validate.

The trainer is task-agnostic: it asks the task for a batch, runs the model, asks the task for a
(loss sum, normaliser) pair, and asks it to validate. Each task owns its random generators and
its counters, and exposes them through state_dict() so resume is exact. A task is chosen once,
by name, from TASKS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .config import RunConfig
from .data.dataset import Dataset, WindowLoader, contiguous_windows
from .evaluate import build_eval_set, score_eval_set
from .masking import mask_tokens, sample_times
from .objectives import masked_diffusion_loss, token_nll
from .runtime import autocast

EVAL_SEED = 1234
EVAL_T_POINTS = 4


@dataclass
class Batch:
    inputs: torch.Tensor  # (B, L) what the model sees
    targets: torch.Tensor  # what the loss compares against
    extras: dict = field(default_factory=dict)  # task-specific tensors (t, masks, weights...)


class Task:
    """Base class: subclasses implement make_batch, loss and evaluate."""

    window_extra = 0  # extra tokens per window (1 for next-token prediction)

    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device):
        self.cfg, self.dataset, self.device = cfg, dataset, device
        self.tokenizer = dataset.tokenizer
        self.generator = torch.Generator(device=device).manual_seed(cfg.train.seed + 1)

    def make_loader(self, seed: int) -> WindowLoader:
        """Training windows; tasks over labelled data override this."""
        return WindowLoader(self.dataset.train, self.cfg.train.batch_size,
                            self.cfg.model.block_size + self.window_extra, seed=seed)

    def make_batch(self, x0: torch.Tensor, step: int) -> Batch:
        """Turn one loader item (already on the task's device or not) into model inputs."""
        raise NotImplementedError

    def normaliser(self, batch: Batch) -> torch.Tensor:
        """What this batch adds to the loss denominator (known before the forward pass, so a
        gradient-accumulation window is normalised by its total count)."""
        return torch.tensor(float(batch.targets.numel()), device=batch.targets.device)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Sum of the per-item losses; the trainer divides by the window's normaliser."""
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, amp_dtype) -> dict[str, float]:
        """Validation metrics; `val_loss` is the one that selects `best` (lower is better)."""
        raise NotImplementedError

    def after_step(self, step: int, diagnostics: dict) -> dict[str, float]:
        """Hook for feedback controllers; returns values to log."""
        return {}

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


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


TASKS: dict[str, Callable[..., Task]] = {
    "mdlm": MaskedDiffusionTask,
    "causal_lm": CausalLMTask,
}


def make_task(cfg: RunConfig, dataset: Dataset, device: torch.device) -> Task:
    name = cfg.train.objective
    if name == "auto" and cfg.model.binary_head:
        name = "remask_binary"  # a good/wrong head has one thing to learn
    if name == "auto":
        name = {"language_model": "causal_lm", "token_classifier": "mdlm",
                "sequence_classifier": "sequence_classification"}[cfg.model.mode]
        if name == "mdlm" and "curriculum" in dataset.meta:
            name = "unmasking"  # a dataset with curriculum stages trains through them
    if name not in TASKS:
        raise ValueError(f"unknown train.objective '{name}'; choose one of {', '.join(TASKS)}")
    return TASKS[name](cfg, dataset, device)


class PassageLoader:
    """Random (passage, label) batches with an explicit generator, for classification."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randint(0, len(self.y), (self.batch_size,), generator=self.generator)
        return self.x[rows], self.y[rows]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class SequenceClassificationTask(Task):
    """[CLS] + passage -> label; loss = CE per sequence, validation = accuracy on all val rows."""

    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device):
        super().__init__(cfg, dataset, device)
        from .data.authors import load_passages

        if not (dataset.path / "passages.safetensors").is_file():
            raise ValueError(f"{dataset.path} has no labelled passages; prepare a classification "
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


TASKS["sequence_classification"] = SequenceClassificationTask


def _lazy(module: str, name: str) -> Callable[..., Task]:
    """A TASKS entry for a task defined in a module that itself imports this one."""
    def build(cfg: RunConfig, dataset: Dataset, device: torch.device) -> Task:
        from importlib import import_module
        return getattr(import_module(module, __package__), name)(cfg, dataset, device)
    return build


TASKS["self_correction"] = _lazy(".self_correction_task", "SelfCorrectionTask")
TASKS["remask_binary"] = _lazy(".self_correction_task", "RemaskBinaryTask")
TASKS["unmasking"] = _lazy(".curriculum_task", "CurriculumTask")
