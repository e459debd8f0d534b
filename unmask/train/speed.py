"""What makes the training step fast on this machine, decided before the loop starts: the
largest batch that fits, and (on CPU, measured) the thread count, the attention kernel and
torch.compile."""

from __future__ import annotations

import dataclasses

import torch

from unmask.config.schema import RunConfig, apply_overrides
from unmask.errors import UserError
from unmask.model import sizing
from unmask.runtime import cpu_compile
from unmask.runtime.distributed import is_distributed
from unmask.runtime.precision import ProbeShape
from unmask.train.attention_probe import choose_attention, kernel_candidates

QUIET_SOURCES = ("short-run", "device", "distributed")  # choices not worth a log line


def is_long_run(cfg: RunConfig, tokens_per_step: int) -> bool:
    """Enough training FLOPs that measuring threads and torch.compile can pay back
    (runtime.cpu_compile.LONG_RUN_FLOPS)."""
    work = sizing.flops_per_token(cfg.model) * tokens_per_step * cfg.train.max_iters
    return work >= cpu_compile.LONG_RUN_FLOPS


def cpu_probe_shape(cfg: RunConfig, device: torch.device, long_run: bool) -> ProbeShape:
    """The block the CPU probes (threads, precision) time for this run: its model and batch,
    with the attention kernels it may compute with."""
    kernels, _ = kernel_candidates(cfg, device, long_run, is_distributed())
    return dataclasses.replace(sizing.probe_shape(cfg.model, cfg.train.batch_size),
                               attention=kernels)


def set_attention_for_training(model, cfg: RunConfig, device: torch.device,
                               amp: torch.dtype | None, long_run: bool, log) -> None:
    """Compute `model`'s attention with the kernel train.attention names, or (auto) the one
    measured faster for a long CPU run (train.attention_probe). Before compiling: the graph
    keeps the choice."""
    choice = choose_attention(cfg, device, amp, long_run, is_distributed())
    model.set_attention_kernel(choice.kernel)
    if choice.source not in QUIET_SOURCES:
        log(choice.describe())


def compiled_for_training(model: torch.nn.Module, cfg: RunConfig, device: torch.device,
                          amp: torch.dtype | None, long_run: bool, steps_done: int,
                          log) -> torch.nn.Module:
    """The module the training step calls: `model`, compiled where it pays (CUDA; on CPU
    where measured faster for a long run, runtime.cpu_compile)."""
    choice = cpu_compile.undecided(cfg.train.compile, device, is_distributed(),
                                   long_run)
    if choice is None or choice.compile:
        # A backend that fails to compile (no C compiler, an unsupported op) runs the
        # model eagerly instead of stopping the run; dynamo logs what went wrong.
        torch._dynamo.config.suppress_errors = True
    if choice is None:  # a long CPU run: measured, or decided from this machine's cache
        tokens = torch.randint(0, cfg.model.vocab_size,
                               (cfg.train.batch_size, cfg.model.block_size),
                               generator=torch.Generator().manual_seed(0))
        choice, model = cpu_compile.cpu_compile(
            model, tokens, amp, cfg.train.max_iters - steps_done,
            f"{sizing.model_label(cfg.model, cfg.train.batch_size, amp)} attention "
            f"{model.attention_kernel}")  # the kernel changes the compiled graph too
    elif choice.compile:
        model = torch.compile(model)
    if choice.source not in QUIET_SOURCES:
        log(choice.describe())
    return model


def fit_batch_to_memory(cfg: RunConfig, device: torch.device, amp, log) -> RunConfig:
    """`--train.batch_size=auto`: the largest micro-batch whose estimated training memory fits
    the device's free memory, with gradient accumulation keeping the requested effective
    batch (batch_size x grad_accum): micro-batch = the largest divisor of it that fits."""
    effective = cfg.train.batch_size * cfg.train.grad_accum
    free = sizing.free_memory_bytes(device)
    fits = effective if free is None else sizing.max_batch_size(
        cfg.model, free, amp, device.type, optimizer=cfg.optim.name)
    if fits < 1:
        raise UserError(f"not even one sequence of {cfg.model.block_size} tokens fits the "
                        f"{free / 2**30:.1f} GiB free on {device}; lower model.block_size or "
                        "use activation checkpointing (model.activation_checkpointing=true)")
    micro = max(d for d in range(1, min(fits, effective) + 1) if effective % d == 0)
    log(f"batch size auto: micro-batch {micro} x {effective // micro} accumulation steps = "
        f"effective batch {effective} (largest micro-batch that fits: {fits})")
    return apply_overrides(cfg, {"train.batch_size": micro,
                                 "train.grad_accum": effective // micro,
                                 "train.auto_batch_size": False})
