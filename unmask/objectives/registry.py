"""The objectives by name: `train.objective` picks one, `auto` picks by model mode and data."""

from __future__ import annotations

from typing import Callable

import torch

from unmask.config.schema import RunConfig
from unmask.data.dataset import Dataset
from unmask.errors import UserError
from unmask.objectives.base import Task
from unmask.objectives.causal_lm import CausalLMTask
from unmask.objectives.classify import SequenceClassificationTask
from unmask.objectives.curriculum import CurriculumTask
from unmask.objectives.mdlm import MaskedDiffusionTask
from unmask.objectives.remask_binary import RemaskBinaryTask
from unmask.objectives.self_correction import SelfCorrectionTask

TASKS: dict[str, Callable[..., Task]] = {
    "mdlm": MaskedDiffusionTask,
    "causal_lm": CausalLMTask,
    "sequence_classification": SequenceClassificationTask,
    "self_correction": SelfCorrectionTask,
    "remask_binary": RemaskBinaryTask,
    "unmasking": CurriculumTask,
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
        raise UserError(f"unknown train.objective '{name}'; choose one of {', '.join(TASKS)}")
    return TASKS[name](cfg, dataset, device)
