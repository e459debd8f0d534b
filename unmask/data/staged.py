"""Curriculum datasets (seed 000): a dataset folder owns its stages, its fixed validation pools
and its pre-generated training samples; the trainer only loads them.

A folder such as data/shakespeare_char_diffusion/ holds `training_config.py` (UNMASKING_STAGES,
VALIDATION_STAGES, BLOCK_SIZE, ... read with `ast`, never executed) and a two-line
`prepare.py` that calls `prepare_staged_dataset`. Preparing writes, next to the config:

    train.bin, val.bin, tokenizer.json   tokens (unmask.data.prepare)
    meta.json                            seed 000's enhanced meta + a "curriculum" section
    cached_data/                         paragraph_boundaries.npy, valid_indices.npy (train
                                         split), val_paragraph_boundaries.npy,
                                         val_valid_indices.npy (validation split)
    validation/                          windows.safetensors (clean windows, shared by all
                                         stages), stage_XX.safetensors (fixed mask per stage),
                                         validation_meta.json
    prepared_batches/                    train_XXXXX.safetensors + index.json

Everything is a pure function of the config and SEED: preparing twice, anywhere, gives
byte-identical files, and preparing again with nothing changed does nothing.

The training stream. Samples are numbered i = 0, 1, 2, ... and drawn in chunks of
CHUNK_SIZE: chunk k takes its window starts and one stage-pick number u_i in [0, 1) per sample
from a generator seeded by (SEED, k), and its mask for training stage s from a generator
seeded by (SEED, s, k), for the whole chunk at once (vectorised). Chunk boundaries do not
depend on the batch size, so every batch size sees the same samples in the same order, with
no shuffling and no repeats; a batch may span chunks and prepared files.

Stages and prepared data. Which stage a sample is trained on depends on validation losses at
run time, which preparation cannot know. So we prepare, per sample, its window start, its u_i
and its mask for *every* training stage (bit-packed, one bit per token per stage); when the
sample is served, the stages active at that moment (0..current with
USE_ALL_STAGES_FOR_TRAINING, else just the current one) choose:
stage = active[floor(u_i * len(active))]. The on-the-fly pipeline computes the same values with
the same generators (only for the stages it needs), so a run that outlasts the
PREPARED_TRAINING_SAMPLES continues seamlessly and a run without prepared data is identical.
Masks are drawn with CPU generators in both pipelines, so the values do not depend on the
training device either.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from ..config_io import read_config_file
from ..curriculum import validate_stages
from ..masking import MASKING_STRATEGIES
from .prepare import prepare
from .text import CORPORA

FORMAT_VERSION = 1
TRAINING_CONFIG = "training_config.py"
CHUNK_SIZE = 64  # samples per random generator; fixed so that any batch size sees the same data
CACHE_DIR, VALIDATION_DIR, PREPARED_DIR = "cached_data", "validation", "prepared_batches"

# Generator domains: each kind of draw has its own stream, so adding one never shifts another.
_TRAIN_DRAWS, _TRAIN_MASK, _VAL_WINDOWS, _VAL_MASK = 0, 1, 2, 3


class StagedDataError(ValueError):
    """The curriculum dataset is missing, stale or does not fit the run."""


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class StagedConfig:
    """The names of a dataset's training_config.py, lower-cased (seed 000's "dataset-specific
    parameters, NOT training hyperparameters")."""

    unmasking_stages: list  # curriculum, easiest first (see unmask.curriculum)
    validation_stages: list  # fixed evaluation masks; val_loss_stale_count not needed
    block_size: int  # every window has exactly this many tokens; runs must match it
    text_source: str = "tinyshakespeare"  # shipped corpus name, or a file relative to the folder
    use_paragraph_boundaries: bool = False  # windows start only right after a blank line
    use_all_stages_for_training: bool = True  # mix stages 0..current (else only current)
    validation_samples_per_stage: int = 100
    prepared_training_samples: int = 4096  # rounded up to whole chunks; 0 = all on the fly
    prepared_samples_per_file: int = 4096  # rounded up to whole chunks
    batch_cache_size: int = 1024  # prepared samples the loader reads from disk at a time
    seed: int = 1337

    @classmethod
    def from_file(cls, path: Path) -> "StagedConfig":
        """Read training_config.py. `BASE_CONFIG = '../other/training_config.py'` (relative to
        this file) starts from another dataset's settings, so a variant states only what it
        changes (e.g. BLOCK_SIZE) and never copies the stage lists."""
        values = _read_with_base(Path(path))
        names = {f.name.upper(): f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in names:
                hint = difflib.get_close_matches(key, list(names), n=1, cutoff=0.5)
                raise StagedDataError(f"{path}: unknown setting {key!r}"
                                      + (f"; did you mean {hint[0]!r}?" if hint else
                                         f"; valid settings: {', '.join(names)}"))
            kwargs[names[key]] = value
        missing = [n for n in ("UNMASKING_STAGES", "VALIDATION_STAGES", "BLOCK_SIZE")
                   if names[n] not in kwargs]
        if missing:
            raise StagedDataError(f"{path}: missing {', '.join(missing)}")
        try:
            return cls(**kwargs)
        except ValueError as err:
            raise StagedDataError(f"{path}: {err}") from None

    def __post_init__(self) -> None:
        validate_stages(self.unmasking_stages)
        # Validation stages only describe masks; they never advance.
        validate_stages([{"val_loss_stale_count": 1, **s} if isinstance(s, dict) else s
                         for s in self.validation_stages])
        for name in ("block_size", "validation_samples_per_stage", "prepared_samples_per_file",
                     "batch_cache_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name.upper()} must be a positive int, got {value!r}")
        for name in ("prepared_training_samples", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name.upper()} must be an int >= 0, got {value!r}")
        for name in ("use_paragraph_boundaries", "use_all_stages_for_training"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name.upper()} must be True or False")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def n_prepared(self) -> int:
        return _round_up(self.prepared_training_samples, CHUNK_SIZE)

    def digest(self, source_sha256: str) -> str:
        """Identity of everything preparation writes: config, text, chunking, format, and the
        masking code itself (a probe mask per stage), so that prepared masks never silently
        disagree with the ones the on-the-fly pipeline would draw."""
        probe = hashlib.sha256()
        for i, stage in enumerate(self.unmasking_stages + self.validation_stages):
            probe.update(stage_mask(stage, 2, 16, _generator(0, i)).numpy().tobytes())
        blob = json.dumps({"format": FORMAT_VERSION, "chunk": CHUNK_SIZE, "config": self.to_dict(),
                           "source": source_sha256, "masking": probe.hexdigest()}, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _read_with_base(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise StagedDataError(f"{path}: BASE_CONFIG loops back to itself")
    values = read_config_file(path)  # AST literals only; lists of dicts stay lists
    base = values.pop("BASE_CONFIG", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise StagedDataError(f"{path}: BASE_CONFIG must be a path string")
    return {**_read_with_base(path.parent / base, seen + (path,)), **values}


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


# ----------------------------------------------------------------------------- randomness


def derive_seed(seed: int, *keys: int) -> int:
    """A well-mixed 63-bit seed for the stream named by `keys` (numpy's SeedSequence)."""
    state = np.random.SeedSequence(seed, spawn_key=keys).generate_state(1, dtype=np.uint64)[0]
    return int(state) & (2**63 - 1)


def _generator(seed: int, *keys: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


def stage_mask(stage: dict, rows: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """A bool (rows, length) mask as `stage` prescribes (masking.MASKING_STRATEGIES)."""
    return MASKING_STRATEGIES[stage["type"]]((rows, length), stage, generator, "cpu")


# ----------------------------------------------------------------------------- windows


def paragraph_starts(tokens: np.ndarray, newline_id: int | None) -> np.ndarray:
    """Positions that begin a paragraph: 0 and every position right after a blank line."""
    if newline_id is None:
        return np.zeros(1, dtype=np.int64)
    nl = tokens == newline_id
    after_blank = np.flatnonzero(nl[:-1] & nl[1:]) + 2
    starts = np.concatenate([[0], after_blank[after_blank < len(tokens)]])
    return np.unique(starts).astype(np.int64)


def valid_start_indices(n_tokens: int, block_size: int,
                        paragraphs: np.ndarray | None) -> np.ndarray:
    """Window starts whose block fits in the split: all of them, or paragraph starts only."""
    last = n_tokens - block_size
    if paragraphs is None:
        return np.arange(max(0, last + 1), dtype=np.int64)
    return paragraphs[paragraphs <= last].astype(np.int64)


def gather_windows(tokens: torch.Tensor, starts: torch.Tensor, block_size: int) -> torch.Tensor:
    """(n, L) windows of `tokens` at `starts`, in one indexing op."""
    return tokens[starts[:, None] + torch.arange(block_size)]


# ----------------------------------------------------------------------------- the stream


class SampleStream:
    """The training samples of a curriculum dataset as a pure function of (seed, i)."""

    def __init__(self, tokens: torch.Tensor, valid_starts: torch.Tensor, block_size: int,
                 stages: list[dict], seed: int, chunk_size: int = CHUNK_SIZE):
        if len(valid_starts) == 0:
            raise StagedDataError(f"no window of {block_size} tokens fits the training split; "
                                  "lower BLOCK_SIZE or turn off USE_PARAGRAPH_BOUNDARIES")
        self.tokens, self.valid_starts, self.block_size = tokens, valid_starts, block_size
        self.stages, self.seed, self.chunk_size = stages, seed, chunk_size

    def chunk_draws(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Window starts (C,) and stage-pick numbers u in [0, 1) (C,) of chunk k."""
        gen = _generator(self.seed, _TRAIN_DRAWS, k)
        idx = torch.randint(len(self.valid_starts), (self.chunk_size,), generator=gen)
        picks = torch.rand(self.chunk_size, dtype=torch.float64, generator=gen)
        return self.valid_starts[idx], picks

    def chunk_mask(self, k: int, s: int) -> torch.Tensor:
        """Mask (C, L) of every sample of chunk k for training stage s."""
        return stage_mask(self.stages[s], self.chunk_size, self.block_size,
                          _generator(self.seed, _TRAIN_MASK, s, k))

    def windows(self, starts: torch.Tensor) -> torch.Tensor:
        return gather_windows(self.tokens, starts, self.block_size)


def pick_stages(picks: torch.Tensor, active: Sequence[int]) -> torch.Tensor:
    """Stage of each sample: active[floor(u * len(active))], uniform over the active stages."""
    choice = (picks * len(active)).floor().long().clamp_(max=len(active) - 1)
    return torch.as_tensor(list(active), dtype=torch.long)[choice]


class PreparedSamples:
    """Read access to prepared_batches/: rows [start, stop) across files."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        index = json.loads((self.folder / "index.json").read_text(encoding="utf-8"))
        self.n_samples, self.files = int(index["samples"]), index["files"]

    def read(self, start: int, stop: int) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {"starts": [], "picks": [], "masks": []}
        for entry in self.files:
            lo, hi = max(start, entry["start"]), min(stop, entry["stop"])
            if lo >= hi:
                continue
            with safe_open(str(self.folder / entry["name"]), framework="np") as f:
                for key in parts:
                    parts[key].append(f.get_slice(key)[lo - entry["start"]:hi - entry["start"]])
        return {key: np.concatenate(value) for key, value in parts.items()}


class StagedLoader:
    """Serves samples start, start+1, ... `batch_size` at a time as (x0, masked, stage).

    `active_stages()` is asked at every batch, so a stage change takes effect at the next
    batch. Prepared rows come from disk (read `cache_size` at a time), later rows are computed
    on the fly; both give identical tensors.
    """

    def __init__(self, stream: SampleStream, batch_size: int,
                 active_stages: Callable[[], Sequence[int]],
                 prepared: PreparedSamples | None = None, cache_size: int = 1024):
        self.stream, self.batch_size, self.active_stages = stream, batch_size, active_stages
        self.prepared, self.cache_size = prepared, cache_size
        self.position = 0
        self._block: tuple[int, dict] | None = None  # (first row, arrays) of prepared rows
        self._chunk: tuple[int, tuple] | None = None  # (k, draws) of the on-the-fly chunk
        self._masks: dict[int, torch.Tensor] = {}  # stage -> mask of the on-the-fly chunk

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        start = self.position
        self.position += self.batch_size
        return self.samples(start, self.position)

    def samples(self, start: int, stop: int, active: Sequence[int] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        active = list(self.active_stages() if active is None else active)
        n_prepared = self.prepared.n_samples if self.prepared is not None else 0
        parts, i = [], start
        while i < stop:
            if i < n_prepared:
                j = min(stop, n_prepared, (i // self.cache_size + 1) * self.cache_size)
                parts.append(self._prepared_rows(i, j, active))
            else:
                j = min(stop, (i // self.stream.chunk_size + 1) * self.stream.chunk_size)
                parts.append(self._fresh_rows(i, j, active))
            i = j
        x0, masked, stage = (torch.cat(p) for p in zip(*parts))
        return x0, masked, stage

    def _prepared_rows(self, i: int, j: int, active: list[int]):
        first = i // self.cache_size * self.cache_size
        if self._block is None or self._block[0] != first:
            stop = min(first + self.cache_size, self.prepared.n_samples)
            self._block = (first, self.prepared.read(first, stop))
        block = self._block[1]
        rows = slice(i - first, j - first)
        starts = torch.from_numpy(block["starts"][rows])
        stage = pick_stages(torch.from_numpy(block["picks"][rows]), active)
        packed = block["masks"][rows][np.arange(j - i), stage.numpy()]  # (n, ceil(L/8))
        masked = np.unpackbits(packed, axis=1, count=self.stream.block_size).astype(bool)
        return self.stream.windows(starts), torch.from_numpy(masked), stage

    def _fresh_rows(self, i: int, j: int, active: list[int]):
        size = self.stream.chunk_size
        k = i // size
        if self._chunk is None or self._chunk[0] != k:
            self._chunk, self._masks = (k, self.stream.chunk_draws(k)), {}
        starts, picks = self._chunk[1]
        rows = slice(i - k * size, j - k * size)
        stage = pick_stages(picks[rows], active)
        masked = torch.zeros(j - i, self.stream.block_size, dtype=torch.bool)
        for s in stage.unique().tolist():  # a loop over stages (at most a few), not rows
            if s not in self._masks:
                self._masks[s] = self.stream.chunk_mask(k, s)
            rows_s = stage == s
            masked[rows_s] = self._masks[s][rows][rows_s]
        return self.stream.windows(starts[rows]), masked, stage

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])


# ----------------------------------------------------------------------------- preparation


def _atomic_json(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def _fresh_dir(folder: Path, name: str) -> Path:
    tmp = folder / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def _load_split(folder: Path, split: str) -> np.ndarray:
    return np.fromfile(folder / f"{split}.bin", dtype=np.uint16).astype(np.int64)


def _write_cached_data(folder: Path, cfg: StagedConfig, newline_id: int | None
                       ) -> dict[str, np.ndarray]:
    tmp = _fresh_dir(folder, CACHE_DIR)
    valid = {}
    for split, prefix in (("train", ""), ("val", "val_")):
        tokens = _load_split(folder, split)
        paragraphs = paragraph_starts(tokens, newline_id)
        valid[split] = valid_start_indices(len(tokens), cfg.block_size,
                                           paragraphs if cfg.use_paragraph_boundaries else None)
        np.save(tmp / f"{prefix}paragraph_boundaries.npy", paragraphs, allow_pickle=False)
        np.save(tmp / f"{prefix}valid_indices.npy", valid[split], allow_pickle=False)
    _replace_dir(tmp, folder / CACHE_DIR)
    return valid


def _write_validation(folder: Path, cfg: StagedConfig, valid: np.ndarray) -> None:
    """One pool of clean windows shared by every validation stage, plus one mask per stage:
    stage losses then differ only by how much (and how) the text is masked."""
    if len(valid) == 0:
        raise StagedDataError(f"no window of {cfg.block_size} tokens fits the validation split; "
                              "lower BLOCK_SIZE or turn off USE_PARAGRAPH_BOUNDARIES")
    n, length = cfg.validation_samples_per_stage, cfg.block_size
    gen = _generator(cfg.seed, _VAL_WINDOWS)
    if n <= len(valid):  # distinct windows when the split allows it
        idx = torch.randperm(len(valid), generator=gen)[:n].sort().values
    else:
        idx = torch.randint(len(valid), (n,), generator=gen).sort().values
    starts = torch.from_numpy(valid)[idx]
    tokens = torch.from_numpy(_load_split(folder, "val"))
    windows = gather_windows(tokens, starts, length).numpy().astype(np.uint16)
    tmp = _fresh_dir(folder, VALIDATION_DIR)
    save_file({"x0": windows, "starts": starts.numpy()}, str(tmp / "windows.safetensors"))
    for v, stage in enumerate(cfg.validation_stages):
        masked = stage_mask(stage, n, length, _generator(cfg.seed, _VAL_MASK, v)).numpy()
        save_file({"masked": masked}, str(tmp / f"stage_{v:02d}.safetensors"),
                  metadata={"stage": json.dumps(stage, sort_keys=True)})
    _atomic_json(tmp / "validation_meta.json", {
        "samples_per_stage": n, "block_size": length, "seed": cfg.seed,
        "stages": cfg.validation_stages,
        "files": ["windows.safetensors"] + [f"stage_{v:02d}.safetensors"
                                            for v in range(len(cfg.validation_stages))]})
    _replace_dir(tmp, folder / VALIDATION_DIR)


def _write_prepared(folder: Path, cfg: StagedConfig, stream: SampleStream, log) -> None:
    n, per_file = cfg.n_prepared, _round_up(cfg.prepared_samples_per_file, CHUNK_SIZE)
    tmp = _fresh_dir(folder, PREPARED_DIR)
    files = []
    for start in range(0, n, per_file):
        stop = min(n, start + per_file)
        starts, picks, masks = [], [], []
        for k in range(start // CHUNK_SIZE, stop // CHUNK_SIZE):
            s_k, p_k = stream.chunk_draws(k)
            m_k = torch.stack([stream.chunk_mask(k, s) for s in range(len(stream.stages))], 1)
            starts.append(s_k.numpy())
            picks.append(p_k.numpy())
            masks.append(np.packbits(m_k.numpy(), axis=2))  # (C, S, ceil(L/8))
        name = f"train_{len(files):05d}.safetensors"
        save_file({"starts": np.concatenate(starts), "picks": np.concatenate(picks),
                   "masks": np.concatenate(masks)}, str(tmp / name))
        files.append({"name": name, "start": start, "stop": stop})
        log(f"  prepared training samples {stop:,}/{n:,}")
    _atomic_json(tmp / "index.json", {"samples": n, "chunk_size": CHUNK_SIZE,
                                      "block_size": cfg.block_size,
                                      "stages": len(cfg.unmasking_stages), "files": files})
    _replace_dir(tmp, folder / PREPARED_DIR)


def enhanced_meta(meta: dict, cfg: StagedConfig, name: str, digest: str) -> dict:
    """Seed 000's enhanced meta: the base meta plus stage counts, model modes and data shapes,
    and a `curriculum` section the training side reads (stages travel with the data)."""
    return {
        **meta,
        "name": name,
        "supported_model_modes": ["token_classifier"],
        "training_stages": len(cfg.unmasking_stages),
        "validation_stages": len(cfg.validation_stages),
        "data_shapes": {
            "X": "(batch_size, block_size)",
            "Y": "(batch_size, block_size)",
            "mask": "(batch_size, block_size)",
            "description": "Token classification: X=masked_input, Y=original_targets, "
                           "mask=masking_pattern",
        },
        "curriculum": {
            "format_version": FORMAT_VERSION,
            "digest": digest,
            "chunk_size": CHUNK_SIZE,
            "prepared_samples": cfg.n_prepared,
            **cfg.to_dict(),
        },
    }


def _prepared_complete(folder: Path, meta: dict, cfg: StagedConfig, digest: str) -> bool:
    files = [folder / CACHE_DIR / "valid_indices.npy",
             folder / VALIDATION_DIR / "validation_meta.json"]
    if cfg.n_prepared:
        files.append(folder / PREPARED_DIR / "index.json")
    return meta.get("curriculum", {}).get("digest") == digest and all(f.is_file() for f in files)


def prepare_staged_dataset(folder: str | Path, log=print) -> Path:
    """Prepare a curriculum dataset folder from its training_config.py; return the folder.

    Idempotent: when the config and the text are unchanged and every output exists, nothing
    is written. meta.json is written last, so an interrupted preparation is redone next time.
    """
    folder = Path(folder).resolve()
    config_path = folder / TRAINING_CONFIG
    if not config_path.is_file():
        raise StagedDataError(f"{folder} has no {TRAINING_CONFIG}")
    cfg = StagedConfig.from_file(config_path)
    source = cfg.text_source if cfg.text_source in CORPORA else str(folder / cfg.text_source)
    prepare(source, folder, block_size=cfg.block_size)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    digest = cfg.digest(meta["source_sha256"])
    if _prepared_complete(folder, meta, cfg, digest):
        log(f"{folder.name}: already prepared (delete meta.json to force)")
        return folder
    from .tokenizer import CharTokenizer  # local: keeps this module's import light

    tokenizer = CharTokenizer.load(folder / "tokenizer.json")
    newline_id = tokenizer.stoi.get("\n")
    if cfg.use_paragraph_boundaries and newline_id is None:
        raise StagedDataError("USE_PARAGRAPH_BOUNDARIES needs newlines in the text")
    log(f"{folder.name}: {meta['train_tokens']:,} train / {meta['val_tokens']:,} val tokens, "
        f"block size {cfg.block_size}, seed {cfg.seed}")
    valid = _write_cached_data(folder, cfg, newline_id)
    log(f"  window starts: {len(valid['train']):,} train / {len(valid['val']):,} val"
        + (" (paragraph starts)" if cfg.use_paragraph_boundaries else ""))
    _write_validation(folder, cfg, valid["val"])
    log(f"  validation: {len(cfg.validation_stages)} stages x "
        f"{cfg.validation_samples_per_stage} fixed samples")
    if cfg.n_prepared:
        stream = SampleStream(torch.from_numpy(_load_split(folder, "train")),
                              torch.from_numpy(valid["train"]), cfg.block_size,
                              cfg.unmasking_stages, cfg.seed)
        _write_prepared(folder, cfg, stream, log)
    else:
        shutil.rmtree(folder / PREPARED_DIR, ignore_errors=True)
    _atomic_json(folder / "meta.json", enhanced_meta(meta, cfg, folder.name, digest))
    log(f"{folder.name}: prepared {len(cfg.unmasking_stages)} training stages, "
        f"{cfg.n_prepared:,} prepared training samples")
    return folder


# ----------------------------------------------------------------------------- training side


def prepare_command(folder: Path) -> str:
    """`python data/<name>/prepare.py`, relative to the working directory when possible."""
    script = Path(folder) / "prepare.py"
    try:
        script = script.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    return f"python {script}"


@dataclass
class ValidationStage:
    stage: dict
    x0: torch.Tensor  # (N, L) int64, shared by all stages
    masked: torch.Tensor  # (N, L) bool


@dataclass
class StagedData:
    """A prepared curriculum dataset, opened for training."""

    folder: Path
    name: str
    meta: dict
    settings: dict  # meta["curriculum"]
    stream: SampleStream
    prepared: PreparedSamples | None

    @property
    def block_size(self) -> int:
        return int(self.settings["block_size"])

    @property
    def unmasking_stages(self) -> list[dict]:
        return self.settings["unmasking_stages"]

    @property
    def validation_stages(self) -> list[dict]:
        return self.settings["validation_stages"]

    @property
    def use_all_stages(self) -> bool:
        return bool(self.settings["use_all_stages_for_training"])

    @classmethod
    def open(cls, folder: Path, meta: dict, train_tokens: torch.Tensor) -> "StagedData":
        folder = Path(folder)
        name = meta.get("name", folder.name)
        settings = meta.get("curriculum")
        if settings is None or not (folder / VALIDATION_DIR / "validation_meta.json").is_file():
            if (folder / "prepare.py").is_file():
                raise StagedDataError(f"dataset '{name}' has no prepared curriculum data "
                                      f"(validation sets, prepared batches); run "
                                      f"`{prepare_command(folder)}` first")
            raise StagedDataError(
                f"{folder} is not a curriculum dataset: the unmasking objective needs a folder "
                "with training_config.py and prepare.py, like data/shakespeare_char_diffusion")
        config_path = folder / TRAINING_CONFIG
        if config_path.is_file():
            current = StagedConfig.from_file(config_path).digest(meta["source_sha256"])
            if current != settings["digest"]:
                raise StagedDataError(f"{config_path} (or its BASE_CONFIG) changed since the data "
                                      f"was prepared; run `{prepare_command(folder)}` again")
        valid = np.load(folder / CACHE_DIR / "valid_indices.npy", allow_pickle=False)
        stream = SampleStream(train_tokens, torch.from_numpy(valid), int(settings["block_size"]),
                              settings["unmasking_stages"], int(settings["seed"]),
                              int(settings["chunk_size"]))
        prepared = None
        if settings.get("prepared_samples", 0):
            if not (folder / PREPARED_DIR / "index.json").is_file():
                raise StagedDataError(f"dataset '{name}' lacks {PREPARED_DIR}/; run "
                                      f"`{prepare_command(folder)}` again")
            prepared = PreparedSamples(folder / PREPARED_DIR)
        return cls(folder, name, meta, settings, stream, prepared)

    def loader(self, batch_size: int, active_stages: Callable[[], Sequence[int]],
               use_prepared: bool = True) -> StagedLoader:
        return StagedLoader(self.stream, batch_size, active_stages,
                            self.prepared if use_prepared else None,
                            int(self.settings.get("batch_cache_size", 1024)))

    def validation_sets(self) -> list[ValidationStage]:
        """The fixed pools written by preparation, never regenerated."""
        root = self.folder / VALIDATION_DIR
        x0 = torch.from_numpy(load_file(str(root / "windows.safetensors"))["x0"].astype(np.int64))
        sets = []
        for v, stage in enumerate(self.validation_stages):
            masked = load_file(str(root / f"stage_{v:02d}.safetensors"))["masked"]
            sets.append(ValidationStage(stage, x0, torch.from_numpy(masked)))
        return sets


def describe_stage(stage: dict) -> str:
    """Seed 001's one-line stage description, e.g. target_ratio=0.4, p1=0.2, p2=0.8."""
    if stage["type"] == "sticky":
        return (f"target_ratio={stage['target_masked_ratio']}, p1={stage['p1_probability']}, "
                f"p2={stage['p2_probability']}")
    if stage["type"] == "random":
        return f"max_ratio={stage['max_masked_ratio']}"
    return ", ".join(f"{k}={v}" for k, v in stage.items() if k != "type")


def uniform_loss(vocab_size: int) -> float:
    """Cross-entropy of a uniform guess over the real vocabulary: the `random` baseline."""
    return math.log(vocab_size)
