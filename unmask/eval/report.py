"""What `unmask eval` reports for a checkpoint: its likelihood, chosen by what the model is,
through the same functions (and, with the same settings, the same numbers) as training
validation, plus word validity of samples.

- language_model: the exact NLL (eval/likelihood.py causal_nll) over non-overlapping windows
  of block_size + 1 tokens of the validation split;
- masked-diffusion models: the ELBO at `t_points` stratified times per window with masks
  from VALIDATION_SEED; training validation of an `mdlm` run is this with
  t_points = objectives.mdlm.VALIDATION_T_POINTS and its first eval_batches * batch_size / t_points
  windows, so `unmask eval --t-points 4 --max-windows N --batch-size B` reproduces it;
- sequence classifiers: cross-entropy and accuracy over every validation passage.
"""

from __future__ import annotations

from typing import Callable

import torch

from unmask.data.authors import load_passages
from unmask.data.dataset import Dataset
from unmask.data.windows import contiguous_windows
from unmask.errors import UserError
from unmask.eval.likelihood import (
    VALIDATION_SEED,
    build_eval_set,
    bytes_per_token,
    causal_nll,
    classification_scores,
    score_eval_set,
)
from unmask.eval.words import vocabulary_of, word_validity
from unmask.model.pretrained import Pretrained, load_pretrained

DEFAULT_T_POINTS = 8


def likelihood_kind(pre: Pretrained) -> str:
    """Which likelihood a model has: exact NLL, the diffusion ELBO, or classifier accuracy."""
    model = pre.config.model
    if model.mode == "sequence_classifier":
        return "classifier"
    if model.mode == "language_model":
        return "causal"
    if model.binary_head:
        raise UserError(f"{pre.path} has a good/wrong head and no likelihood; evaluate it "
                        "with `unmask eval --repair RATE`")
    return "diffusion"


def _causal(pre: Pretrained, dataset: Dataset, max_windows, t_points, batch_size) -> dict:
    windows = contiguous_windows(dataset.val, pre.config.model.block_size + 1, max_windows)
    result = causal_nll(pre.model, windows, pre.tokenizer.vocab_size, batch_size,
                        bytes_per_token=bytes_per_token(pre.tokenizer, windows[:, 1:]))
    return {**result, "val_windows": windows.size(0), "val_tokens_scored": windows[:, 1:].numel()}


def _diffusion(pre: Pretrained, dataset: Dataset, max_windows, t_points, batch_size) -> dict:
    windows = contiguous_windows(dataset.val, pre.config.model.block_size, max_windows)
    eval_set = build_eval_set(windows, pre.tokenizer.mask_id, t_points, VALIDATION_SEED)
    result = score_eval_set(pre.model, eval_set, pre.tokenizer.vocab_size, batch_size,
                            bytes_per_token=bytes_per_token(pre.tokenizer, windows))
    return {**result, "val_windows": windows.size(0), "t_points": t_points,
            "val_tokens_scored": windows.numel()}


def _classifier(pre: Pretrained, dataset: Dataset, max_windows, t_points, batch_size) -> dict:
    passages = load_passages(dataset.path)
    x, y = passages["val_x"][:max_windows], passages["val_y"][:max_windows]
    cls = torch.full_like(x[:, :1], pre.tokenizer.special_id("cls"))
    result = classification_scores(pre.model, torch.cat([cls, x], 1), y, batch_size)
    return {"val_loss": result["loss"], "accuracy": result["accuracy"], "val_passages": len(y)}


LIKELIHOODS: dict[str, Callable[..., dict]] = {
    "causal": _causal, "diffusion": _diffusion, "classifier": _classifier}


def _word_validity(pre: Pretrained, dataset: Dataset, n_samples: int) -> dict:
    """Word validity of `n_samples` samples (seed 0, the checkpoint's sampler settings)."""
    from unmask.sampling.registry import sample_texts

    texts = sample_texts(pre, n_samples, seed=0)
    known = vocabulary_of(dataset.tokenizer.decode(dataset.train.tolist()))
    validity, n_words = word_validity(texts, known)
    return {"word_validity": validity, "words_scored": n_words}


def evaluate_checkpoint(path: str, data: str | None = None, device: str = "auto",
                        n_samples: int = 8, max_windows: int | None = None,
                        t_points: int = DEFAULT_T_POINTS, batch_size: int | None = None) -> dict:
    """The numbers `unmask eval` reports; deterministic for a given checkpoint and dataset."""
    if t_points < 1:
        raise UserError(f"--t-points must be >= 1, got {t_points}")
    pre = load_pretrained(path, device)
    dataset_dir = data or pre.meta.get("dataset_dir")
    if not dataset_dir:
        raise UserError("this checkpoint does not record its dataset; pass --data DIR")
    dataset = Dataset.load(dataset_dir)
    kind = likelihood_kind(pre)
    result = LIKELIHOODS[kind](pre, dataset, max_windows, t_points,
                               batch_size or pre.config.train.batch_size)
    if kind != "classifier" and n_samples > 0:
        result.update(_word_validity(pre, dataset, n_samples))
    return {"checkpoint": pre.path, "likelihood": kind, **result}
