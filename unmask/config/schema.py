"""Run configuration: one small dataclass per concern, presets as functions, overrides.

A run is described by a `RunConfig` tree (model / optim / train / sample). It can be built
from a preset name, a config file (JSON, or a Python file of plain `key = value` assignments,
read with `ast`, never executed) and dot-path overrides such as `--optim.lr=3e-4`. Unknown keys
are rejected with the nearest valid one, so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from unmask.config.io import ConfigError, coerce, flatten, valid_keys

MODEL_MODES = ("token_classifier", "language_model", "sequence_classifier")

POOLINGS = ("mean", "cls", "layers")

OPTIMIZER_NAMES = ("adamw", "muon")  # train/optim.py's OPTIMIZERS
NOISE_SCHEDULE_NAMES = ("linear", "cosine", "loglinear")  # noise/schedules.py
LOSS_WEIGHTING_NAMES = ("elbo", "masked_ce")  # losses/likelihood.py

PARALLEL_MODES = ("ddp", "fsdp")  # train.parallel under torchrun (see train/parallel.py)


@dataclass
class ModelConfig:
    """Transformer shape. `vocab_size` is filled in from the dataset's meta.json."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 256
    dropout: float = 0.0
    vocab_size: int = 0  # extended vocabulary (real tokens + special tokens); 0 = from data
    mode: str = "token_classifier"  # token_classifier | language_model | sequence_classifier
    causal: bool = False  # causal attention: the autoregressive baseline (mode language_model)
    binary_head: bool = False  # per-token good/wrong head instead of the vocabulary (remasking)
    num_classes: int = 0  # sequence_classifier only; 0 = from the dataset's meta.json
    pooling: str = "mean"  # sequence_classifier summary: mean | cls | layers (Transformer.pooled)
    rope_theta: float = 10000.0
    mlp_hidden: int = 0  # SwiGLU hidden width; 0 = 8/3 * n_embd rounded up to a multiple of 64
    activation_checkpointing: bool = False  # recompute blocks in backward: less memory, ~1/3 slower
    qk_norm: bool = False  # RMS-normalise queries and keys per head (stable at higher lr)
    zero_init_proj: bool = False  # attention/MLP output projections start at 0: blocks = identity
    ngram_max: int = 0  # > 0: hashed n-gram embeddings, n = 3 .. ngram_max (model/ngram_embedding.py)
    ngram_buckets: int = 8192  # rows per (n, side) table of the hashed n-gram embeddings

    def __post_init__(self) -> None:
        if self.mode not in MODEL_MODES:
            raise ConfigError(f"model.mode must be one of {', '.join(MODEL_MODES)}, "
                              f"got {self.mode!r}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"model.pooling must be one of {', '.join(POOLINGS)}, "
                              f"got {self.pooling!r}")
        if self.causal and self.mode == "token_classifier":
            self.mode = "language_model"
        self.causal = self.mode == "language_model"
        if self.num_classes == 1 or self.num_classes < 0:
            raise ConfigError("model.num_classes must be >= 2 (or 0: from the dataset)")
        for name in ("n_layer", "n_head", "n_embd", "block_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})"
            )
        if (self.n_embd // self.n_head) % 2:
            raise ConfigError("model.n_embd / model.n_head must be even for rotary embeddings")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.ngram_max and (self.ngram_max < 3 or self.ngram_buckets <= 0):
            raise ConfigError("model.ngram_max must be 0 (off) or >= 3, with model.ngram_buckets "
                              f"> 0; got {self.ngram_max} and {self.ngram_buckets}")
        if self.ngram_max and self.causal:
            raise ConfigError("model.ngram_max needs a bidirectional model: its n-grams read the "
                              "tokens after each position; set it to 0 for a language_model")


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay to `min_lr` (nanoGPT's schedule)."""

    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int = 0  # 0 = train.max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    name: str = "adamw"  # adamw | muon (Muon on the blocks' matrices, AdamW on the rest)
    muon_momentum: float = 0.95

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZER_NAMES:
            raise ConfigError(f"optim.name must be one of {', '.join(OPTIMIZER_NAMES)}, "
                              f"got {self.name!r}")
        if not 0.0 <= self.muon_momentum < 1.0:
            raise ConfigError(f"optim.muon_momentum must be in [0, 1), got {self.muon_momentum}")
        if self.lr <= 0 or self.min_lr < 0:
            raise ConfigError("optim.lr must be > 0 and optim.min_lr >= 0")
        if self.warmup_iters < 0:
            raise ConfigError("optim.warmup_iters must be >= 0")


@dataclass
class TrainConfig:
    """The loop: how long, how big a batch, how often to evaluate, log and save."""

    max_iters: int = 1000
    max_minutes: float = 0.0  # > 0: stop when training time reaches it (train/time_budget.py)
    batch_size: int = 32  # per rank; `--train.batch_size=auto` keeps this x grad_accum as the
    grad_accum: int = 1  # effective batch and picks the largest micro-batch that fits memory
    auto_batch_size: bool = False  # set by `--train.batch_size=auto`
    eval_interval: int = 250
    eval_batches: int = 8  # fixed validation batches per evaluation
    log_interval: int = 10
    seed: int = 1337
    device: str = "auto"  # auto = cuda > mps > cpu
    dtype: str = "auto"  # auto = bf16 on CUDA, and on CPU where a measured probe finds it faster
    compile: str = "auto"  # auto: CUDA always; CPU where measured faster (runtime.cpu_compile)
    attention: str = "auto"  # sdpa | math | auto: CUDA sdpa, CPU measured (train.attention_probe)
    threads: int = 0  # CPU threads for torch; 0 = measured for long runs (runtime.threads)
    parallel: str = "ddp"  # several ranks: ddp (whole model per rank) | fsdp (FSDP2 shards it)
    objective: str = "auto"  # auto = causal_lm for a causal model, else mdlm (see objectives/registry.py)
    antithetic: bool = True  # stratified diffusion times across the batch (MDLM)
    t_min: float = 1e-3  # smallest diffusion time sampled in training
    noise_schedule: str = "linear"  # mdlm: linear | cosine | loglinear (noise/schedules.py)
    loss_weighting: str = "elbo"  # mdlm: elbo (1/t, a bound) | masked_ce (plain CE on masks)
    input_dropout: float = 0.0  # mdlm / causal_lm: visible input tokens -> [MASK] with this prob
    save_checkpoints: bool = True
    on_nan: str = "stop"  # non-finite loss/gradient: stop | skip (the step) | rollback (halve lr)
    max_rollbacks: int = 3  # on_nan=rollback: rollbacks before giving up
    keep_last_k: int = 1  # `latest` plus the K-1 checkpoints before it as step_<N>/ (and `best`)
    ema_decay: float = 0.0  # > 0 (e.g. 0.999): validate, pick `best` and save an EMA of weights
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "unmask"
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("max_iters", "batch_size", "grad_accum", "eval_interval", "eval_batches"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be positive, got {getattr(self, name)}")
        if not self.max_minutes >= 0:
            raise ConfigError(f"train.max_minutes must be >= 0 (0 = no time limit), "
                              f"got {self.max_minutes}")
        if self.compile not in ("auto", "true", "false"):
            raise ConfigError("train.compile must be one of auto, true, false")
        if self.attention not in ("auto", "sdpa", "math"):
            raise ConfigError("train.attention must be one of auto, sdpa, math")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError("train.dtype must be one of auto, float32, bfloat16, float16")
        if self.parallel not in PARALLEL_MODES:
            raise ConfigError(f"train.parallel must be one of {', '.join(PARALLEL_MODES)}, "
                              f"got {self.parallel!r}")
        if self.on_nan not in ("stop", "skip", "rollback"):
            raise ConfigError(f"train.on_nan must be stop, skip or rollback, got {self.on_nan!r}")
        if self.keep_last_k < 1:
            raise ConfigError(f"train.keep_last_k must be >= 1 (1 keeps `latest` alone), "
                              f"got {self.keep_last_k}")
        if self.max_rollbacks < 0:
            raise ConfigError(f"train.max_rollbacks must be >= 0, got {self.max_rollbacks}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        if not 0.0 <= self.t_min < 1.0:
            raise ConfigError("train.t_min must be in [0, 1)")
        if not 0.0 <= self.input_dropout < 1.0:
            raise ConfigError(f"train.input_dropout must be in [0, 1), got {self.input_dropout}")
        for name, choices in (("noise_schedule", NOISE_SCHEDULE_NAMES),
                              ("loss_weighting", LOSS_WEIGHTING_NAMES)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"train.{name} must be one of {', '.join(choices)}, "
                                  f"got {getattr(self, name)!r}")


@dataclass
class SampleConfig:
    """Defaults for `unmask sample` and for the samples `unmask eval` scores."""

    policy: str = "confidence"
    steps: int = 128
    length: int = 256
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    block_length: int = 0  # > 0: fill left to right in blocks of this many tokens (LLaDA)
    position_decay: float = 0.0  # `calibrated` policy: prefer the left by exp(-decay x position)
    num_samples: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.length <= 0 or self.num_samples <= 0:
            raise ConfigError("sample.steps, sample.length and sample.num_samples must be positive")
        if self.temperature < 0:
            raise ConfigError("sample.temperature must be >= 0 (0 = greedy)")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError("sample.top_p must be in (0, 1]")
        if self.position_decay < 0:
            raise ConfigError("sample.position_decay must be >= 0 (0: no preference for the left)")


REMASK_TARGETS = ("wrong", "mask")


@dataclass
class SelfCorrectionConfig:
    """Knobs of seeds 002/003, same names."""

    weight_unmask_task: float = 1.0  # loss weight where the input is [MASK] (fill in the blank)
    weight_remask_task: float = 1.0  # loss weight where a swapped token must be flagged
    weight_swap_fill: float = 0.0  # extra: at swapped tokens, also predict the original (see loss)
    penalty_mask_correct: float = 0.5  # final weight of flagging a correct token (discount)
    masking_warmup_iters: int = 1000  # iterations to ramp the penalty 0 -> penalty_mask_correct
    proofreading_warmup_iters: int = 2000  # iterations to ramp swapped tokens 0 -> full share
    guaranteed_correct_factor: float = 0.01  # total corruption rate is drawn below 1 - this
    remask_target: str = "wrong"  # "wrong": flag with [WRONG]; "mask": flag with [MASK]
    initial_mask_logit_bias: float = 3.5  # single-token variant: starting [MASK] logit bias
    bias_update_strength: float = 0.01  # controller gain (see MaskBiasController)
    target_mask_prob: float = 0.5  # controller set point: [MASK] prob on unmask positions

    def __post_init__(self) -> None:
        if self.remask_target not in REMASK_TARGETS:
            raise ConfigError("self_correction.remask_target must be one of "
                              f"{', '.join(REMASK_TARGETS)}, "
                              f"got {self.remask_target!r}")
        for name in ("weight_unmask_task", "weight_remask_task", "weight_swap_fill",
                     "penalty_mask_correct",
                     "masking_warmup_iters", "proofreading_warmup_iters", "bias_update_strength"):
            if getattr(self, name) < 0:
                raise ConfigError(f"self_correction.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.guaranteed_correct_factor < 1.0:
            raise ConfigError("self_correction.guaranteed_correct_factor must be in [0, 1), "
                              f"got {self.guaranteed_correct_factor}")
        if not 0.0 < self.target_mask_prob < 1.0:
            raise ConfigError("self_correction.target_mask_prob must be in (0, 1), "
                              f"got {self.target_mask_prob}")


@dataclass
class CurriculumConfig:
    """Loss options of the staged unmasking curriculum (seed 000's training-side knobs).

    The stages themselves belong to the dataset (its training_config.py), not to the run.
    """

    weight_loss_by_mask_ratio: bool = False  # weight each sequence by sqrt(1 / masked ratio)
    uncertainty_factor: float = 0.0  # label smoothing on masked positions
    enable_entropy_penalty: bool = False
    max_entropy_penalty: float = 0.5
    entropy_penalty_start_iter: int = 6000
    bert_corruption: bool = False  # 80/10/10 BERT corruption of the masked positions

    def __post_init__(self) -> None:
        if not 0.0 <= self.uncertainty_factor < 1.0:
            raise ConfigError("curriculum.uncertainty_factor must be in [0, 1)")
        if self.max_entropy_penalty < 0:
            raise ConfigError("curriculum.max_entropy_penalty must be >= 0")


@dataclass
class TransferConfig:
    """Start from another run's weights (seed 001's transfer learning)."""

    init_from: str = "scratch"  # scratch | resume (with pretrained_checkpoint_path: transfer)
    pretrained_checkpoint_path: str = ""
    transfer_learning_mode: str = "fine_tuning"  # fine_tuning | feature_extraction
    switch_to_binary: bool = False  # replace the vocabulary head by a good/wrong head

    def __post_init__(self) -> None:
        if self.init_from not in ("scratch", "resume", "pretrained"):
            raise ConfigError("transfer.init_from must be scratch, resume or pretrained")
        if self.transfer_learning_mode not in ("fine_tuning", "feature_extraction"):
            raise ConfigError("transfer.transfer_learning_mode must be fine_tuning or "
                              "feature_extraction")

    @property
    def enabled(self) -> bool:
        return self.init_from != "scratch" and bool(self.pretrained_checkpoint_path)


@dataclass
class RunConfig:
    """Everything a run needs; mirrors the object tree (model, optimizer, loop, sampler)."""

    data: str = "tinyshakespeare"  # corpus name, text file, or prepared dataset dir
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    self_correction: SelfCorrectionConfig = field(default_factory=SelfCorrectionConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        return apply_overrides(cls(), flatten(values))


# ----------------------------------------------------------------------------- overrides


def apply_overrides(config: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return a new config with dot-path overrides applied and every section re-validated."""
    keys = valid_keys(config)
    tree = config.to_dict()
    for key, value in overrides.items():
        if key not in keys:
            hint = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
            suggestion = (f"; did you mean '{hint[0]}'?" if hint
                          else f"; valid keys: {', '.join(keys)}")
            raise ConfigError(f"unknown config key {key!r}{suggestion}")
        if key == "train.batch_size" and str(value).strip().lower() == "auto":
            tree["train"]["auto_batch_size"] = True  # resolved by the trainer, on its device
            continue
        section, _, name = key.rpartition(".")
        node = tree
        for part in filter(None, section.split(".")):
            node = node[part]
        node[name] = coerce(key, value, node[name])
    return RunConfig(
        data=tree["data"],
        model=ModelConfig(**tree["model"]),
        optim=OptimConfig(**tree["optim"]),
        train=TrainConfig(**tree["train"]),
        sample=SampleConfig(**tree["sample"]),
        transfer=TransferConfig(**tree["transfer"]),
        curriculum=CurriculumConfig(**tree["curriculum"]),
        self_correction=SelfCorrectionConfig(**tree["self_correction"]),
    )
