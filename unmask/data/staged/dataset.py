"""A prepared curriculum dataset, opened for training: sample stream + fixed validation pools."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from safetensors.numpy import load_file

from unmask.data.staged.config import (
    CACHE_DIR,
    PREPARED_DIR,
    TRAINING_CONFIG,
    VALIDATION_DIR,
    StagedConfig,
    StagedDataError,
)
from unmask.data.staged.prepare import prepare_command
from unmask.data.staged.stream import PreparedSamples, SampleStream, StagedLoader


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
