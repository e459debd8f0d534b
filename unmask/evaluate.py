"""Evaluation: a deterministic ELBO, masked-token accuracy, and word validity of samples.

The ELBO is estimated with a fixed stratified quadrature over t: every validation window is
scored at `n_t` times t_k = (k + u) / n_t, k = 0..n_t-1, with one offset u per window and the
masks drawn from a seeded generator. Re-running gives the same number to the last digit, and
the estimate is unbiased for the MDLM bound (Sahoo et al. 2024, eq. 10).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from .masking import mask_tokens
from .objectives import masked_diffusion_loss
from .runtime import autocast

WORD = re.compile(r"[A-Za-z]+")


@dataclass
class EvalSet:
    """Fixed (x0, t, x_t, masked) tuples, built once and scored many times."""

    x0: torch.Tensor  # (N, L)
    t: torch.Tensor  # (N,)
    xt: torch.Tensor  # (N, L)
    masked: torch.Tensor  # (N, L) bool


def build_eval_set(windows: torch.Tensor, mask_id: int, n_t: int, seed: int) -> EvalSet:
    """Repeat each window at n_t stratified times; draw its masks from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    n = windows.size(0)
    offsets = torch.rand(n, generator=gen)
    t = ((torch.arange(n_t)[None, :] + offsets[:, None]) / n_t).clamp_min(1e-4).flatten()
    x0 = windows.repeat_interleave(n_t, dim=0)
    xt, masked = mask_tokens(x0, t, mask_id, gen)
    return EvalSet(x0, t, xt, masked)


@torch.no_grad()
def score_eval_set(model, eval_set: EvalSet, vocab_size: int, batch_size: int = 64,
                   amp_dtype=None) -> dict[str, float]:
    """ELBO (nats/token), bits/token and argmax accuracy on masked positions."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum, tokens, correct, n_masked = 0.0, 0, 0, 0
    for i in range(0, eval_set.x0.size(0), batch_size):
        x0 = eval_set.x0[i:i + batch_size].to(device)
        xt = eval_set.xt[i:i + batch_size].to(device)
        masked = eval_set.masked[i:i + batch_size].to(device)
        t = eval_set.t[i:i + batch_size].to(device)
        with autocast(device, amp_dtype):
            logits = model(xt)
        s, n = masked_diffusion_loss(logits, x0, masked, t, vocab_size)
        loss_sum += float(s)
        tokens += n
        predictions = logits[..., :vocab_size].argmax(-1)
        correct += int(((predictions == x0) & masked).sum())
        n_masked += int(masked.sum())
    model.train(was_training)
    elbo = loss_sum / tokens
    return {"elbo_nats_per_char": elbo, "elbo_bits_per_char": elbo / math.log(2),
            "masked_accuracy": correct / max(1, n_masked)}


def word_validity(texts: list[str], known_words: set[str]) -> tuple[float, int]:
    """Fraction of alphabetic runs (lower-cased) in `texts` that occur in the training text."""
    words = [w.lower() for text in texts for w in WORD.findall(text)]
    if not words:
        return 0.0, 0
    return sum(w in known_words for w in words) / len(words), len(words)


def vocabulary_of(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text)}



EVAL_SEED = 0
EVAL_T_POINTS = 8


def evaluate_checkpoint(path: str, data: str | None = None, device: str = "auto",
                        n_samples: int = 8, max_windows: int | None = None) -> dict:
    """The numbers `unmask eval` reports; deterministic for a given checkpoint and dataset.

    ELBO and masked accuracy: the whole validation split cut into non-overlapping windows of the
    model's context (or the first `max_windows`), each scored at EVAL_T_POINTS stratified times
    with masks from EVAL_SEED. Word validity: `n_samples` samples from seed 0 with the
    checkpoint's default sampler settings.
    """
    from .data.dataset import Dataset, contiguous_windows
    from .pretrained import load_pretrained
    from .sampling import sample

    pre = load_pretrained(path, device)
    dataset_dir = data or pre.meta.get("dataset_dir")
    if not dataset_dir:
        raise ValueError("this checkpoint does not record its dataset; pass --data DIR")
    dataset = Dataset.load(dataset_dir)
    tok, block = pre.tokenizer, pre.config.model.block_size
    windows = contiguous_windows(dataset.val, block, max_windows)
    eval_set = build_eval_set(windows, tok.mask_id, EVAL_T_POINTS, EVAL_SEED)
    result = score_eval_set(pre.model, eval_set, tok.vocab_size)

    s = pre.config.sample
    tokens = sample(pre.model, vocab_size=tok.vocab_size, mask_id=tok.mask_id,
                    length=min(s.length, block), num_samples=n_samples, steps=s.steps,
                    policy=s.policy, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                    generator=torch.Generator().manual_seed(0))
    texts = [tok.decode(row.tolist()) for row in tokens]
    known = vocabulary_of(dataset.tokenizer.decode(dataset.train.tolist()))
    validity, n_words = word_validity(texts, known)
    return {"checkpoint": pre.path, **result, "word_validity": validity,
            "words_scored": n_words, "val_windows": windows.size(0),
            "t_points": EVAL_T_POINTS, "val_tokens_scored": windows.numel()}
