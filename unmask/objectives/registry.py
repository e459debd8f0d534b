"""The objectives by name: `train.objective` picks one; `auto` picks by model mode and data."""

from __future__ import annotations

from typing import Callable

import torch

from unmask.config.schema import RunConfig
from unmask.data.dataset import Dataset
from unmask.errors import UserError
from unmask.objectives.base import Objective
from unmask.objectives.book_curriculum import BookCurriculumObjective
from unmask.objectives.causal_lm import CausalLMObjective
from unmask.objectives.classify import ClassificationObjective
from unmask.objectives.curriculum import CurriculumObjective
from unmask.objectives.mdlm import MDLMObjective
from unmask.objectives.remask_binary import RemaskBinaryObjective
from unmask.objectives.self_correction import SelfCorrectionObjective

OBJECTIVES: dict[str, Callable[..., Objective]] = {
    "mdlm": MDLMObjective,
    "causal_lm": CausalLMObjective,
    "sequence_classification": ClassificationObjective,
    "self_correction": SelfCorrectionObjective,
    "remask_binary": RemaskBinaryObjective,
    "unmasking": CurriculumObjective,
    "book_curriculum": BookCurriculumObjective,
}

# Diffusion objectives: their likelihood is the masked-diffusion ELBO.
DIFFUSION_OBJECTIVES = ("mdlm", "unmasking", "self_correction", "book_curriculum")


def objective_name(cfg: RunConfig, dataset_meta: dict) -> str:
    """The objective a config trains: train.objective, or by model mode for `auto`."""
    name = cfg.train.objective
    if name == "auto" and cfg.model.binary_head:
        return "remask_binary"  # a good/wrong head has one thing to learn
    if name == "auto":
        name = {"language_model": "causal_lm", "token_classifier": "mdlm",
                "sequence_classifier": "sequence_classification"}[cfg.model.mode]
        if name == "mdlm" and "curriculum" in dataset_meta:
            name = "unmasking"  # a dataset with curriculum stages trains through them
    if name not in OBJECTIVES:
        raise UserError(f"unknown train.objective '{name}'; choose one of "
                        f"{', '.join(OBJECTIVES)}")
    return name


def make_objective(cfg: RunConfig, dataset: Dataset, device: torch.device) -> Objective:
    return OBJECTIVES[objective_name(cfg, dataset.meta)](cfg, dataset, device)
