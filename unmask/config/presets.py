"""Presets are functions returning a RunConfig; `resolve_config` = preset or file, then overrides."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Callable

from unmask.config.io import ConfigError, read_config_file
from unmask.config.schema import (
    ModelConfig,
    OptimConfig,
    RunConfig,
    SampleConfig,
    TrainConfig,
    apply_overrides,
)

# ----------------------------------------------------------------------------- presets


def preset_debug() -> RunConfig:
    """Seconds: a smoke run that exercises every block of the loop."""
    return RunConfig(
        model=ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=32),
        optim=OptimConfig(lr=3e-3, min_lr=3e-4, warmup_iters=5),
        train=TrainConfig(max_iters=40, batch_size=8, eval_interval=20, eval_batches=2,
                          log_interval=10),
        sample=SampleConfig(steps=16, length=64, num_samples=2),
    )


def preset_cpu_demo() -> RunConfig:
    """What `make demo` runs: about five minutes of training on two CPU cores.

    The `cpu-demo-adamw` model and schedule with issue 15's winning levers (BENCHMARKS.md,
    "Recipe levers"): Muon on the blocks' matrices, QK-norm and zero-initialised output
    projections, which together allow twice the learning rate, and the cosine noise schedule;
    validation ELBO 2.28 -> 1.87 nats/char at the same 800 steps. Samples are drawn in
    confidence order within blocks of 4 characters at temperature 1: the plain confidence order
    at 0.8 repeats itself ("the the the") on a model this good (BENCHMARKS.md, "The demo's
    sampler on the stronger model").
    """
    cfg = preset_cpu_demo_adamw()
    cfg.model.qk_norm = cfg.model.zero_init_proj = True
    cfg.optim.name, cfg.optim.lr, cfg.optim.min_lr = "muon", 4e-3, 4e-4
    cfg.train.noise_schedule = "cosine"
    cfg.sample.block_length, cfg.sample.temperature = 4, 1.0
    return cfg


def preset_cpu_demo_adamw() -> RunConfig:
    """The demo's model with AdamW at lr 2e-3 (the recipe before Muon): the baseline the recipe
    levers are measured against, and the recipe README's author-attribution, transfer and repair
    figures were measured with.

    Measured alternatives (BENCHMARKS.md): 4L/192 at context 128 and batch 48 learns faster
    per second than narrower or longer-context models at this budget; lr 2e-3 with a short
    warmup is stable here thanks to the stratified diffusion times and gradient clipping.
    """
    return RunConfig(
        model=ModelConfig(n_layer=4, n_head=4, n_embd=192, block_size=128, dropout=0.0),
        optim=OptimConfig(lr=2e-3, min_lr=2e-4, warmup_iters=50, weight_decay=0.1,
                          beta2=0.99, grad_clip=1.0),
        train=TrainConfig(max_iters=800, batch_size=48, eval_interval=200, eval_batches=8,
                          log_interval=25),
        sample=SampleConfig(steps=128, length=256, num_samples=4),
    )


def preset_shakespeare_char() -> RunConfig:
    """nanoGPT's baby-GPT dimensions, for a GPU: 6 layers, 6 heads, 384 wide, context 256,
    with the `cpu-demo` recipe (Muon, QK-norm, zero-init projections, cosine noise schedule)
    at twice nanoGPT's AdamW lr, as on the demo model. Not yet measured on a GPU (BENCHMARKS.md);
    `--optim.name=adamw --optim.lr=1e-3 --optim.min_lr=1e-4 --model.qk_norm=false
    --model.zero_init_proj=false --train.noise_schedule=linear` is the AdamW recipe it replaced.
    """
    return RunConfig(
        model=ModelConfig(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2,
                          qk_norm=True, zero_init_proj=True),
        optim=OptimConfig(name="muon", lr=2e-3, min_lr=2e-4, warmup_iters=100,
                          weight_decay=0.1, beta2=0.99, grad_clip=1.0),
        train=TrainConfig(max_iters=5000, batch_size=64, eval_interval=250, eval_batches=20,
                          log_interval=10, noise_schedule="cosine"),
        sample=SampleConfig(steps=256, length=256, block_length=4, temperature=1.0),
    )


def preset_nanogpt_cpu_lm() -> RunConfig:
    """The autoregressive baseline with nanoGPT's CPU recipe (4L/4H/128, context 64, batch 12)."""
    return RunConfig(
        model=ModelConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0,
                          mode="language_model"),
        optim=OptimConfig(lr=1e-3, min_lr=1e-4, warmup_iters=100, weight_decay=0.1,
                          beta2=0.99, grad_clip=1.0),
        train=TrainConfig(max_iters=2000, batch_size=12, eval_interval=250, eval_batches=20,
                          log_interval=50),
        sample=SampleConfig(length=256, temperature=0.8, top_k=200),
    )


PRESETS: dict[str, Callable[[], RunConfig]] = {
    "debug": preset_debug,
    "cpu-demo": preset_cpu_demo,
    "cpu-demo-adamw": preset_cpu_demo_adamw,
    "shakespeare-char": preset_shakespeare_char,
    "nanogpt-cpu-lm": preset_nanogpt_cpu_lm,
}


def resolve_config(source: str | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Preset name or config file, then overrides. A file may name a `preset` to start from."""
    overrides = dict(overrides or {})
    if source is None:
        config = PRESETS["cpu-demo"]()
    elif source in PRESETS:
        config = PRESETS[source]()
    elif Path(source).suffix in (".json", ".py") or Path(source).exists():
        values = read_config_file(Path(source))
        base = values.pop("preset", "cpu-demo")
        if base not in PRESETS:
            raise ConfigError(f"{source}: unknown preset '{base}'; "
                              f"choose one of {', '.join(PRESETS)}")
        config = apply_overrides(PRESETS[base](), values)
    else:
        hint = difflib.get_close_matches(source, list(PRESETS), n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        raise ConfigError(
            f"{source!r} is neither a preset ({', '.join(PRESETS)}) nor a config file{suggestion}"
        )
    return apply_overrides(config, overrides)
