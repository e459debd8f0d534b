"""What `unmask eval` reports for a checkpoint: its likelihood, chosen by what the model is,
through the same functions (and, with the same settings, the same numbers) as training
validation, plus samples' word validity, generative quality (judge NLL, diversity) and style
beside the real text's (eval/generative.py, eval/style.py).

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


def _samples(pre: Pretrained, n_samples: int, length: int | None, seed: int = 0
             ) -> tuple[list[str], dict]:
    """`n_samples` texts from the checkpoint's default sampler and settings (`length`
    overrides its length), after the sampler's default prompt (not part of the text)."""
    from unmask.sampling.base import final_state
    from unmask.sampling.registry import checkpoint_request, default_sampler, pick_sampler

    name = default_sampler(pre.config)
    sampler = pick_sampler(name, pre)
    prompt_ids = pre.tokenizer.encode(sampler.default_prompt) if sampler.default_prompt else []
    request = checkpoint_request(pre, sampler, prompt_ids, num_samples=n_samples, length=length)
    tokens = final_state(sampler.generate(pre.model, request,
                                          torch.Generator().manual_seed(seed))).tokens
    texts = [pre.tokenizer.decode(row[len(prompt_ids):].tolist()) for row in tokens]
    settings = {"policy": name, "seed": seed, "num_samples": n_samples,
                **{k: getattr(request, k) for k in ("length", "steps", "temperature", "top_k",
                                                    "top_p", "block_length")}}
    return texts, settings


def _judge(path: str, judge: str | None, device: str):
    """The judge to use: `judge` (a path; "none" = no judge), else one found beside the run."""
    from unmask.eval.judge import find_judge, load_judge

    if judge and judge.lower() == "none":
        return None
    found = judge or find_judge(path)
    return load_judge(found, device) if found else None


def _sample_reports(pre: Pretrained, dataset: Dataset, n_samples: int, length: int | None,
                    judge) -> dict:
    """Word validity (as before), and the generative-quality and style blocks: samples beside
    real validation passages of the same length (eval/generative.py, eval/style.py)."""
    from unmask.eval.generative import generative_report, reference_texts
    from unmask.eval.style import style_report

    texts, settings = _samples(pre, n_samples, length)
    known = vocabulary_of(dataset.tokenizer.decode(dataset.train.tolist()))
    validity, n_words = word_validity(texts, known)
    reference = reference_texts(dataset, n_samples, settings["length"])
    generative = generative_report(texts, reference, judge, known)
    return {"word_validity": validity, "words_scored": n_words,
            "generative": {"sampler": settings, **generative},
            "style": style_report(texts, reference)}


def _likelihood_mc(pre: Pretrained, dataset: Dataset, windows: int, draws: int, points: int,
                   batch_size: int) -> dict:
    """Both Monte-Carlo estimators of the bound, with standard errors (eval/estimators.py)."""
    from unmask.eval.estimators import ESTIMATORS, estimate

    val = contiguous_windows(dataset.val, pre.config.model.block_size, windows)
    return {name: estimate(pre.model, val, pre.tokenizer.mask_id, pre.tokenizer.vocab_size,
                           name, points=points, draws=draws, seed=VALIDATION_SEED,
                           batch_size=batch_size).to_json()
            for name in ESTIMATORS}


def evaluate_checkpoint(path: str, data: str | None = None, device: str = "auto",
                        n_samples: int = 16, max_windows: int | None = None,
                        t_points: int = DEFAULT_T_POINTS, batch_size: int | None = None,
                        judge: str | None = None, sample_length: int | None = None,
                        mc_draws: int = 2, mc_windows: int = 64) -> dict:
    """The numbers `unmask eval` reports; deterministic for a given checkpoint and dataset.

    Diffusion models also get `likelihood_mc` (both estimators with their Monte-Carlo
    standard errors on `mc_windows` windows, `mc_draws` draws each; 0 draws: skipped).
    Generating models get `generative` and `style` blocks over `n_samples` samples, each
    beside real validation text of the same length; judge figures when `judge` is given or
    a `judge` run sits beside this one (eval/judge.py)."""
    if t_points < 1:
        raise UserError(f"--t-points must be >= 1, got {t_points}")
    pre = load_pretrained(path, device)
    dataset_dir = data or pre.meta.get("dataset_dir")
    if not dataset_dir:
        raise UserError("this checkpoint does not record its dataset; pass --data DIR")
    dataset = Dataset.load(dataset_dir)
    kind = likelihood_kind(pre)
    batch_size = batch_size or pre.config.train.batch_size
    result = LIKELIHOODS[kind](pre, dataset, max_windows, t_points, batch_size)
    if kind == "diffusion" and mc_draws > 0 and mc_windows > 0:
        result["likelihood_mc"] = _likelihood_mc(pre, dataset, mc_windows, mc_draws, t_points,
                                                 batch_size)
    if kind != "classifier" and n_samples > 0:
        result.update(_sample_reports(pre, dataset, n_samples, sample_length,
                                      _judge(pre.path, judge, device)))
    return {"checkpoint": pre.path, "likelihood": kind, **result}
