"""`unmask train ... --dry-run`: resolve the config, build everything, time a few steps and
print what the run would cost, without writing anything."""

from __future__ import annotations

import time

import torch

from unmask.model import sizing
from unmask.model.transformer import describe
from unmask.train.metrics import peak_memory_bytes
from unmask.train.trainer import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dry_run(trainer: Trainer, steps: int = 3, warmup: int = 1) -> dict:
    """Time `steps` training steps (after `warmup`) and one validation; estimate the run."""
    cfg = trainer.cfg.train
    trainer.model.train()
    for _ in range(warmup):
        trainer.train_step()
    _sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        loss, _ = trainer.train_step()
    float(loss)  # wait for the device
    _sync(trainer.device)
    step_s = (time.perf_counter() - start) / steps
    start = time.perf_counter()
    trainer.evaluate()
    eval_s = time.perf_counter() - start
    remaining = cfg.max_iters - trainer.counters.step
    evals = remaining // cfg.eval_interval + (remaining % cfg.eval_interval > 0)
    run_s = remaining * step_s + evals * eval_s
    budget = trainer.budget
    budget_s = budget.seconds - budget.spent_before
    if budget.enabled and run_s > budget_s:  # train.max_minutes ends it first
        run_s = max(0.0, budget_s)
        remaining = int(run_s / (step_s + eval_s / cfg.eval_interval))
    model_cfg, per_rank_batch = trainer.cfg.model, trainer.cfg.train.batch_size
    estimate = sizing.training_memory_estimate(model_cfg, per_rank_batch, trainer.amp,
                                               trainer.device.type, trainer.cfg.optim.name)
    tokens_per_second = trainer.tokens_per_step / step_s
    peak = sizing.device_peak_flops(trainer.device)
    return {
        "model": describe(trainer.model),
        "parameter_breakdown": sizing.parameter_breakdown(model_cfg),
        "flops_per_token": sizing.flops_per_token(model_cfg),
        "mfu": None if not peak else round(sizing.mfu(tokens_per_second, model_cfg, peak), 4),
        "memory_estimate_mb": {k: round(v / 2**20, 1) for k, v in estimate.items()},
        "measured_peak_memory_mb": round(peak_memory_bytes(trainer.device) / 2**20, 1),
        "device": str(trainer.device),
        "precision": str(trainer.amp or torch.float32).replace("torch.", ""),
        "compiled": hasattr(trainer.step_model, "_orig_mod"),  # torch.compile's wrapper
        "attention": trainer.model.attention_kernel,
        "threads": torch.get_num_threads() if trainer.device.type == "cpu" else None,
        "parameters": trainer.model.num_parameters(),
        "tokens_per_step": trainer.tokens_per_step,
        "seconds_per_step": round(step_s, 4),
        "tokens_per_second": round(tokens_per_second),
        "seconds_per_validation": round(eval_s, 3),
        "estimated_run_seconds": round(run_s, 1),
        "steps_remaining": remaining,
    }
