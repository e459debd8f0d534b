"""`unmask book`'s configuration (seed 004): one dataclass per concern, presets as functions,
dot-path overrides with list indices (`curriculum.stages[0].epochs=100`) from the command line
and from a file, every value validated, unknown keys rejected with the nearest valid one.

The tree mirrors seed 004's names (`model.d_model`, `training.label_smoothing`,
`data.sequence_length`, ...). `to_run_config` turns it into the `RunConfig` the trainer,
`unmask sample` and `unmask eval` read; the curriculum itself travels with the prepared
dataset (curriculum.json), as the seed 000/001 curriculum's stages do.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

from unmask.config.io import ConfigError, coerce
from unmask.config.paths import parse_path, read_override_file, tree_keys
from unmask.config.schema import (
    OPTIMIZER_NAMES,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SampleConfig,
    TrainConfig,
)

FORMATS = ("sentences", "pairs", "paragraphs")
TRANSITIONS = ("epochs", "validation")
TOKENIZER_KINDS = ("bpe", "char")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass
class BookModelConfig:
    """Bidirectional transformer (RoPE, RMSNorm, SwiGLU of width ceil(8d/3/64)*64, tied
    embeddings): the model every unmask run trains."""

    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    dropout: float = 0.1
    gradient_checkpointing: bool = False  # recompute blocks in backward: less memory
    rope_theta: float = 10000.0
    qk_norm: bool = False  # recipe levers of the unmask model (config/schema.py ModelConfig)
    zero_init_proj: bool = False

    def __post_init__(self) -> None:
        _check(min(self.d_model, self.n_layers, self.n_heads) > 0,
               "model.d_model, model.n_layers and model.n_heads must be positive")
        _check(self.d_model % self.n_heads == 0 and (self.d_model // self.n_heads) % 2 == 0,
               f"model.d_model ({self.d_model}) / model.n_heads ({self.n_heads}) must be an "
               "even whole number (rotary embeddings rotate pairs)")
        _check(0.0 <= self.dropout < 1.0, "model.dropout must be in [0, 1)")


@dataclass
class BookDataConfig:
    """Text -> dataset: segmentation, the split, the tokenizer."""

    sequence_length: int = 512  # tokens per training window (the model's context)
    tokenizer: str = "bpe"  # bpe (byte-level, trained on the book) | char
    target_coverage: float = 0.9  # bpe: share of the book's words that are one token
    min_vocab: int = 512  # bpe: vocabulary bounds around the coverage choice
    max_vocab: int = 16384
    val_fraction: float = 0.1  # the last paragraphs (by characters) validate
    min_sentence_words: int = 3  # sentences outside [min, max] words skip stages I and II
    max_sentence_words: int = 60

    def __post_init__(self) -> None:
        _check(self.sequence_length >= 8, "data.sequence_length must be >= 8")
        _check(self.tokenizer in TOKENIZER_KINDS,
               f"data.tokenizer must be one of {', '.join(TOKENIZER_KINDS)}")
        _check(0.0 < self.target_coverage <= 1.0, "data.target_coverage must be in (0, 1]")
        _check(256 < self.min_vocab <= self.max_vocab < 65000,
               "data.min_vocab / data.max_vocab need 256 < min_vocab <= max_vocab < 65000")
        _check(0.0 < self.val_fraction < 0.5, "data.val_fraction must be in (0, 0.5)")
        _check(1 <= self.min_sentence_words <= self.max_sentence_words,
               "data.min_sentence_words must be in [1, data.max_sentence_words]")


@dataclass
class ScoringConfig:
    """Difficulty of a sentence: a weighted mean of percentile ranks (see data/book/scoring)."""

    lexical_weight: float = 0.3  # IDF rarity against the other shipped books
    syntactic_weight: float = 0.4  # length, clause markers, Flesch-Kincaid grade
    richness_weight: float = 0.1  # vocabulary richness (low Yule's K)
    centrality_weight: float = 0.2  # off-theme (low TF-IDF/SVD/k-means centrality)
    n_clusters: int = 8
    svd_components: int = 64

    def __post_init__(self) -> None:
        weights = (self.lexical_weight, self.syntactic_weight, self.richness_weight,
                   self.centrality_weight)
        _check(min(weights) >= 0 and sum(weights) > 0,
               "scoring weights must be >= 0 and not all 0")
        _check(self.n_clusters >= 1 and self.svd_components >= 1,
               "scoring.n_clusters and scoring.svd_components must be >= 1")


@dataclass
class StageConfig:
    """One curriculum stage: what it trains on, how hard it masks, how long, how fast."""

    name: str = "stage"
    format: str = "paragraphs"  # sentences | pairs (`A [SEP] B`) | paragraphs (windows)
    epochs: int = 1  # passes over the stage's items; 0 skips the stage
    max_steps: int = 0  # cap on the stage's optimizer steps (0 = epochs alone)
    mask_min: float = 0.05  # each row masks a rate r ~ U(mask_min, mask_max) of its tokens
    mask_max: float = 0.2
    lr_factor: float = 1.0  # the stage's peak lr = training.learning_rate * lr_factor
    warmup_steps: int = 100  # linear warmup, then cosine to the stage's end
    max_difficulty_percentile: float = 100.0  # keep items at or below this difficulty
    min_centrality_percentile: float = 0.0  # ... and at or above this centrality
    patience: int = 3  # validation transitions: evaluations without a new stage best

    def __post_init__(self) -> None:
        where = f"curriculum stage '{self.name}'"
        _check(self.format in FORMATS, f"{where}: format must be one of {', '.join(FORMATS)}")
        _check(self.epochs >= 0 and self.max_steps >= 0 and self.warmup_steps >= 0,
               f"{where}: epochs, max_steps and warmup_steps must be >= 0")
        _check(0.0 <= self.mask_min <= self.mask_max <= 1.0 and self.mask_max > 0,
               f"{where}: need 0 <= mask_min <= mask_max <= 1 (got {self.mask_min}, "
               f"{self.mask_max})")
        _check(self.lr_factor > 0, f"{where}: lr_factor must be > 0")
        _check(0 < self.max_difficulty_percentile <= 100
               and 0 <= self.min_centrality_percentile < 100,
               f"{where}: percentiles must be in (0, 100] / [0, 100)")
        _check(self.patience >= 1, f"{where}: patience must be >= 1")


def seed_stages() -> list[StageConfig]:
    """Seed 004's curriculum: epochs 75/150/300, masking 75-90 % / 40-60 % / 5-20 %, lr
    factors 1.0/0.8/0.5; stage I the easy third of sentences from the central third, stage
    II adjacent pairs from the easier two thirds, stage III every paragraph."""
    return [
        StageConfig("foundational", "sentences", 75, 0, 0.75, 0.90, 1.0, 1500, 33.0, 67.0),
        StageConfig("structural", "pairs", 150, 0, 0.40, 0.60, 0.8, 300, 66.0, 0.0),
        StageConfig("refinement", "paragraphs", 300, 0, 0.05, 0.20, 0.5, 300, 100.0, 0.0),
    ]


@dataclass
class BookCurriculumConfig:
    transition: str = "epochs"  # epochs: a stage ends at the first validation after its
    # budget; validation: also after `patience` validations without a new stage best
    min_stage_samples: int = 64  # relax a stage's percentile filters until it has this many
    stages: list[StageConfig] = field(default_factory=seed_stages)

    def __post_init__(self) -> None:
        _check(self.transition in TRANSITIONS,
               f"curriculum.transition must be one of {', '.join(TRANSITIONS)}")
        _check(len(self.stages) >= 1, "curriculum.stages must hold at least one stage")
        _check(self.min_stage_samples >= 1, "curriculum.min_stage_samples must be >= 1")
        _check(any(s.epochs > 0 for s in self.stages), "every curriculum stage has 0 epochs")


@dataclass
class BookTrainingConfig:
    batch_size: int = 8
    gradient_accumulation_steps: int = 2
    learning_rate: float = 1e-4
    min_lr_ratio: float = 0.1  # each stage's cosine ends at its peak lr times this
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    eval_interval: int = 500  # optimizer steps between validations (and stage checks)
    eval_batches: int = 8
    log_interval: int = 50
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16 (seed's mixed precision)
    compile: str = "auto"
    threads: int = 0
    progress: bool = True
    optimizer: str = "adamw"  # adamw | muon (OptimConfig.name)
    ema_decay: float = 0.0  # > 0: validate, keep and sample an average of the weights

    def __post_init__(self) -> None:
        _check(min(self.batch_size, self.gradient_accumulation_steps, self.eval_interval,
                   self.eval_batches, self.log_interval) > 0,
               "training.batch_size, gradient_accumulation_steps, eval_interval, "
               "eval_batches and log_interval must be positive")
        _check(self.learning_rate > 0 and 0 <= self.min_lr_ratio <= 1,
               "training.learning_rate must be > 0 and training.min_lr_ratio in [0, 1]")
        _check(0 <= self.label_smoothing < 1, "training.label_smoothing must be in [0, 1)")
        _check(self.optimizer in OPTIMIZER_NAMES, f"training.optimizer must be one of "
               f"{', '.join(OPTIMIZER_NAMES)}, got {self.optimizer!r}")
        _check(0 <= self.ema_decay < 1, "training.ema_decay must be in [0, 1) (0 = off)")


@dataclass
class GenerationConfig:
    """Defaults `unmask sample` and `unmask eval` read from the checkpoint."""

    policy: str = "confidence"
    steps: int = 25
    length: int = 0  # tokens; 0 = data.sequence_length
    temperature: float = 0.6
    top_k: int = 20
    top_p: float = 0.85
    num_samples: int = 4

    def __post_init__(self) -> None:
        _check(self.steps > 0 and self.length >= 0 and self.num_samples > 0,
               "generation.steps and generation.num_samples must be > 0, length >= 0")
        _check(self.temperature >= 0 and 0 < self.top_p <= 1 and self.top_k >= 0,
               "generation: temperature >= 0, top_k >= 0 and top_p in (0, 1]")


@dataclass
class BookConfig:
    preset: str = "default"
    model: BookModelConfig = field(default_factory=BookModelConfig)
    data: BookDataConfig = field(default_factory=BookDataConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    curriculum: BookCurriculumConfig = field(default_factory=BookCurriculumConfig)
    training: BookTrainingConfig = field(default_factory=BookTrainingConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, tree: dict[str, Any]) -> BookConfig:
        """Rebuild (and validate) a config from `to_dict()` output."""
        c = tree["curriculum"]
        return cls(
            preset=tree["preset"], model=BookModelConfig(**tree["model"]),
            data=BookDataConfig(**tree["data"]), scoring=ScoringConfig(**tree["scoring"]),
            curriculum=BookCurriculumConfig(c["transition"], c["min_stage_samples"],
                                            [StageConfig(**s) for s in c["stages"]]),
            training=BookTrainingConfig(**tree["training"]),
            generation=GenerationConfig(**tree["generation"]))

    def override(self, values: dict[str, Any]) -> BookConfig:
        return apply_book_overrides(self, values)


# ----------------------------------------------------------------------------- presets


def preset_default() -> BookConfig:
    """Seed 004's numbers: 12 x 768, context 512, batch 8, lr 1e-4, curriculum 75/150/300."""
    return BookConfig()


def preset_memory_efficient() -> BookConfig:
    """Seed 004's 8 GB-GPU setting: 8 x 512, batch 4 x 4 accumulated, activation checkpoints."""
    cfg = BookConfig(preset="memory_efficient")
    cfg.model = BookModelConfig(d_model=512, n_layers=8, n_heads=8, gradient_checkpointing=True)
    cfg.training.batch_size, cfg.training.gradient_accumulation_steps = 4, 4
    return cfg


def preset_debug() -> BookConfig:
    """Minutes on two CPU cores: a 2 x 128 model, context 128 BPE tokens, 900 steps, Muon.

    Stage budgets are capped in steps (100 / 100 / 700, a validation every 50) so the cost
    does not grow with the book. A BPE model first sits on the unigram plateau (it predicts
    the book's token frequencies whatever the context) and only then learns to read context:
    with AdamW a 2 x 128 model left it near step 650 of 1,500 (2.26 bits/byte at the end);
    with the `cpu-demo` recipe's levers (Muon on the blocks' matrices, QK-norm, zero-initialised
    output projections) it leaves it by step 250 and is best near step 700 (2.04 bits/byte;
    longer runs overfit the book), in 5-6 minutes for the whole command (BENCHMARKS.md).
    Departures from seed 004: stage III masks 5-100 % (not 5-20 %), because generation
    starts from an all-[MASK] row, which a model last trained at 5-20 % masking has never
    seen; stage III keeps the full learning rate (factor 1.0, not 0.5), which leaves the
    plateau sooner; and samples are drawn in MDLM's ancestral (random) order at temperature
    1, which keeps the model's word distribution, where the confidence order fills in the
    most frequent tokens first (on an undertrained run it produced rows of ", , , the the"),
    with nucleus 0.8 (word validity 0.86 on three sample seeds, 0.83-0.86 at 0.9).
    """
    cfg = BookConfig(preset="debug")
    cfg.model = BookModelConfig(d_model=128, n_layers=2, n_heads=4, dropout=0.0,
                                qk_norm=True, zero_init_proj=True)
    cfg.data = BookDataConfig(sequence_length=128, target_coverage=0.8)
    cfg.curriculum = BookCurriculumConfig(stages=[
        StageConfig("foundational", "sentences", 10, 100, 0.75, 0.90, 1.0, 30, 33.0, 67.0),
        StageConfig("structural", "pairs", 10, 100, 0.40, 0.60, 0.8, 20, 66.0, 0.0),
        StageConfig("refinement", "paragraphs", 100, 700, 0.05, 1.0, 1.0, 20, 100.0, 0.0),
    ])
    cfg.training = BookTrainingConfig(batch_size=32, gradient_accumulation_steps=1,
                                      learning_rate=3e-3, weight_decay=0.1,
                                      label_smoothing=0.0, eval_interval=50, eval_batches=4,
                                      log_interval=20, dtype="float32", optimizer="muon")
    cfg.generation = GenerationConfig(policy="random", steps=128, length=128,
                                      temperature=1.0, top_k=0, top_p=0.8, num_samples=4)
    return cfg


def preset_test_integration() -> BookConfig:
    """The whole pipeline in well under two minutes on a CPU: a 2 x 64 model, 20 steps a stage."""
    cfg = BookConfig(preset="test_integration")
    cfg.model = BookModelConfig(d_model=64, n_layers=2, n_heads=2, dropout=0.0)
    cfg.data = BookDataConfig(sequence_length=64, target_coverage=0.6)
    cfg.scoring = ScoringConfig(n_clusters=4, svd_components=16)
    cfg.curriculum = BookCurriculumConfig(min_stage_samples=16, stages=[
        StageConfig("foundational", "sentences", 1, 20, 0.75, 0.90, 1.0, 5, 33.0, 67.0),
        StageConfig("structural", "pairs", 1, 20, 0.40, 0.60, 0.8, 5, 66.0, 0.0),
        StageConfig("refinement", "paragraphs", 1, 20, 0.05, 1.0, 0.5, 5, 100.0, 0.0),
    ])
    cfg.training = BookTrainingConfig(batch_size=16, gradient_accumulation_steps=1,
                                      learning_rate=3e-3, eval_interval=10,
                                      eval_batches=2, log_interval=10, dtype="float32",
                                      compile="false")
    cfg.generation = GenerationConfig(steps=16, length=64, num_samples=2)
    return cfg


BOOK_PRESETS: dict[str, Callable[[], BookConfig]] = {
    "default": preset_default,
    "debug": preset_debug,
    "memory_efficient": preset_memory_efficient,
    "test_integration": preset_test_integration,
}


# ----------------------------------------------------------------------------- overrides


def apply_book_overrides(cfg: BookConfig, overrides: dict[str, Any]) -> BookConfig:
    """A new config with dot-path overrides applied (typed like the field they replace) and
    every section validated again. An unknown path names the nearest valid one."""
    tree = cfg.to_dict()
    keys = [k for k in tree_keys(tree) if k != "preset"]  # the preset is chosen by name
    for key, value in overrides.items():
        key = key.strip()
        if key not in keys:
            parse_path(key)  # a malformed key gets its own message
            hint = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
            raise ConfigError(f"unknown config key {key!r}"
                              + (f"; did you mean '{hint[0]}'?" if hint
                                 else f"; valid keys include {', '.join(keys[:12])}, ..."))
        *path, leaf = parse_path(key)
        node = tree
        for part in path:
            node = node[part]
        node[leaf] = coerce(key, value, node[leaf])
    return BookConfig.from_dict(tree)


def resolve_book_config(preset: str | None = None, files: list[str] | None = None,
                        overrides: dict[str, Any] | None = None) -> BookConfig:
    """Preset (a file's `preset` key wins over the default), then files, then overrides."""
    from_files: dict[str, Any] = {}
    for f in files or []:
        from_files.update(read_override_file(f))
    name = preset or str(from_files.pop("preset", "default"))
    from_files.pop("preset", None)
    if name not in BOOK_PRESETS:
        hint = difflib.get_close_matches(name, list(BOOK_PRESETS), n=1)
        raise ConfigError(f"unknown book preset {name!r}; choose one of "
                          f"{', '.join(BOOK_PRESETS)}"
                          + (f" (did you mean '{hint[0]}'?)" if hint else ""))
    return apply_book_overrides(BOOK_PRESETS[name](), {**from_files, **(overrides or {})})


def to_run_config(cfg: BookConfig, max_iters: int, data: str = "") -> RunConfig:
    """The trainer's RunConfig for this book run (objective `book_curriculum`)."""
    m, t, g = cfg.model, cfg.training, cfg.generation
    first = next(s for s in cfg.curriculum.stages if s.epochs > 0)
    return RunConfig(
        data=data,
        model=ModelConfig(n_layer=m.n_layers, n_head=m.n_heads, n_embd=m.d_model,
                          block_size=cfg.data.sequence_length, dropout=m.dropout,
                          rope_theta=m.rope_theta, qk_norm=m.qk_norm,
                          zero_init_proj=m.zero_init_proj,
                          activation_checkpointing=m.gradient_checkpointing),
        optim=OptimConfig(lr=t.learning_rate, min_lr=t.learning_rate * t.min_lr_ratio,
                          warmup_iters=first.warmup_steps, weight_decay=t.weight_decay,
                          beta1=t.beta1, beta2=t.beta2, grad_clip=t.grad_clip,
                          name=t.optimizer),
        train=TrainConfig(max_iters=max_iters, batch_size=t.batch_size,
                          grad_accum=t.gradient_accumulation_steps,
                          eval_interval=t.eval_interval, eval_batches=t.eval_batches,
                          log_interval=t.log_interval, seed=t.seed, device=t.device,
                          dtype=t.dtype, compile=t.compile, threads=t.threads,
                          objective="book_curriculum", progress=t.progress,
                          ema_decay=t.ema_decay),
        sample=SampleConfig(policy=g.policy, steps=g.steps,
                            length=g.length or cfg.data.sequence_length,
                            temperature=g.temperature, top_k=g.top_k, top_p=g.top_p,
                            num_samples=g.num_samples))
