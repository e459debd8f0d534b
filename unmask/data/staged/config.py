"""A curriculum dataset's training_config.py (seed 000), read without executing it."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from unmask.config.io import read_config_file
from unmask.errors import UserError
from unmask.noise.stages import stage_mask, validate_stages
from unmask.runtime.rng import seeded_generator

FORMAT_VERSION = 1

TRAINING_CONFIG = "training_config.py"

CHUNK_SIZE = 64  # samples per random generator; fixed so that any batch size sees the same data
CACHE_DIR, VALIDATION_DIR, PREPARED_DIR = "cached_data", "validation", "prepared_batches"

# Generator domains: each kind of draw has its own stream, so adding one never shifts another.
_TRAIN_DRAWS, _TRAIN_MASK, _VAL_WINDOWS, _VAL_MASK = 0, 1, 2, 3


class StagedDataError(UserError):
    """The curriculum dataset is missing, stale or does not fit the run."""


# ----------------------------------------------------------------------------- config


def _check_easiest_first(stages: list[dict]) -> None:
    """The curriculum only moves forward, so a stage must not be easier than an earlier stage
    of its type: sticky stages by target_masked_ratio, random ones by max_masked_ratio. (A
    random stage after the sticky ones, covering every ratio, is the seed's design.)"""
    last: dict[str, tuple[int, float]] = {}
    for i, stage in enumerate(stages):
        kind = stage["type"]
        ratio = stage.get("target_masked_ratio", stage.get("max_masked_ratio"))
        if kind in last and ratio < last[kind][1]:
            j, before = last[kind]
            raise StagedDataError(
                f"UNMASKING_STAGES are out of order: {kind} stage {i} masks {ratio} after "
                f"{kind} stage {j}'s {before}; list the stages easiest first")
        last[kind] = (i, ratio)


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
        _check_easiest_first(self.unmasking_stages)
        # Validation stages only describe masks; they never advance.
        validate_stages([{"val_loss_stale_count": 1, **s} if isinstance(s, dict) else s
                         for s in self.validation_stages])
        for name in ("block_size", "validation_samples_per_stage", "prepared_samples_per_file",
                     "batch_cache_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name.upper()} must be a positive int, got {value!r}")
        for name in ("prepared_training_samples", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UserError(f"{name.upper()} must be an int >= 0, got {value!r}")
        for name in ("use_paragraph_boundaries", "use_all_stages_for_training"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{name.upper()} must be True or False")

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
            probe.update(stage_mask(stage, 2, 16, seeded_generator(0, i)).numpy().tobytes())
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
