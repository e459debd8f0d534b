"""Tiny runs of every training objective, shared by the accumulation and resume tests.

One case per objective (and per variant that keeps state of its own: the [MASK]-bias
controller of single-token self-correction, the binary good/wrong head), each on the smallest
dataset it trains on: 1 layer, 16 wide, float32, no compile, no progress bar.
"""

from __future__ import annotations

from pathlib import Path

from tests.book_support import make_book_dataset
from tests.test_curriculum_task import make_tiny_dataset
from unmask.config.presets import resolve_config
from unmask.data.authors import prepare_authors
from unmask.data.dataset import Dataset
from unmask.data.prepare import prepare

COMMON = {"model.n_layer": 1, "model.n_head": 2, "model.n_embd": 16, "model.block_size": 32,
          "model.dropout": 0.0, "train.batch_size": 4, "train.eval_batches": 1,
          "train.log_interval": 1, "train.progress": False, "train.dtype": "float32",
          "train.compile": "false", "optim.warmup_iters": 0, "optim.lr": 1e-2}

# name -> (dataset, overrides). The options switched on are the ones whose terms could
# break a per-row loss sum (mask-ratio weights, entropy penalty, swap-fill term, ...).
CASES = {
    "mdlm": ("shakespeare", {"train.objective": "mdlm"}),
    # Every recipe lever that keeps state or changes the loss (issue 15), switched on at once.
    "mdlm_levers": ("shakespeare", {"train.objective": "mdlm", "optim.name": "muon",
                                    "model.qk_norm": True, "model.zero_init_proj": True,
                                    "train.noise_schedule": "cosine",
                                    "train.loss_weighting": "masked_ce",
                                    "train.ema_decay": 0.9, "train.input_dropout": 0.1}),
    "causal_lm": ("shakespeare", {"train.objective": "causal_lm",
                                  "model.mode": "language_model"}),
    "sequence_classification": ("authors", {"train.objective": "sequence_classification",
                                            "model.mode": "sequence_classifier",
                                            "model.block_size": 33}),
    "unmasking": ("staged", {"train.objective": "unmasking",
                             "curriculum.weight_loss_by_mask_ratio": True,
                             "curriculum.uncertainty_factor": 0.1,
                             "curriculum.enable_entropy_penalty": True,
                             "curriculum.entropy_penalty_start_iter": 0,
                             "curriculum.max_entropy_penalty": 0.2,
                             "curriculum.bert_corruption": True}),
    "self_correction": ("shakespeare", {"train.objective": "self_correction",
                                        "self_correction.masking_warmup_iters": 3,
                                        "self_correction.proofreading_warmup_iters": 5,
                                        "self_correction.weight_swap_fill": 0.5,
                                        "self_correction.weight_remask_task": 2.0}),
    "self_correction_mask": ("shakespeare", {"train.objective": "self_correction",
                                             "self_correction.remask_target": "mask",
                                             "self_correction.masking_warmup_iters": 3,
                                             "self_correction.proofreading_warmup_iters": 5}),
    "remask_binary": ("shakespeare", {"train.objective": "remask_binary",
                                      "self_correction.weight_remask_task": 3.0}),
    "remask_binary_head": ("shakespeare", {"train.objective": "remask_binary",
                                           "model.binary_head": True}),
    "book_curriculum": ("book", {"train.objective": "book_curriculum"}),
}


def make_datasets(root: Path) -> dict[str, Dataset]:
    """The three datasets the cases train on, prepared under `root` (well under a second)."""
    return {"shakespeare": Dataset.load(prepare("tinyshakespeare", root / "ts")),
            "authors": Dataset.load(prepare_authors(root / "authors", passage_length=32)),
            "staged": Dataset.load(make_tiny_dataset(root / "staged" / "tiny")),
            "book": Dataset.load(make_book_dataset(root / "book"))}


def case_config(name: str, data: Dataset, **overrides):
    """The run config of case `name` on `data`, with `overrides` on top."""
    _, extra = CASES[name]
    return resolve_config("debug", {**COMMON, **extra, "data": str(Path(data.path)),
                                    **overrides})


def case_dataset(name: str, datasets: dict[str, Dataset]) -> Dataset:
    return datasets[CASES[name][0]]


def quiet(*_):
    return None
