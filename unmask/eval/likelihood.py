"""Likelihood by objective: one path for training validation and `unmask eval`.

- Diffusion objectives: the MDLM ELBO (Sahoo et al. 2024, eq. 10), estimated with a fixed
  stratified quadrature over t: every window is scored at `t_points` times
  t_k = (k + u) / t_points, k = 0..t_points-1, with one offset u per window and masks drawn
  from a seeded generator. Re-running gives the same number to the last digit, and the
  estimate is unbiased for the bound.
- `language_model`: the exact NLL of every next-token prediction inside non-overlapping
  windows of block_size + 1 tokens (the first token of a window is context only).
- Classifiers: cross-entropy and accuracy over every labelled passage.

Every figure is per token (nats and bits) and, where the text is known, in bits per byte:
bits per byte compare across tokenizers, per-character figures do not.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unmask.losses.likelihood import masked_diffusion_loss, token_nll
from unmask.noise.masking import mask_tokens
from unmask.runtime.device import autocast

# Validation masks do not depend on a run's seed, so different runs are scored on the same
# masked text and their numbers compare directly.
VALIDATION_SEED = 0


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """no_grad + eval mode for the block; the model's train/eval mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _per_byte(nats_per_token: float, bytes_per_token: float | None) -> dict[str, float]:
    """bits/byte = bits/token / (bytes/token): comparable across tokenizers."""
    if not bytes_per_token:
        return {}
    return {"bits_per_byte": nats_per_token / math.log(2) / bytes_per_token}


def bytes_per_token(tokenizer, windows: torch.Tensor) -> float:
    """Mean UTF-8 bytes per token of `windows`, from the tokenizer's per-id byte counts (a
    window of a byte-level BPE may start inside a character, so decoding would miscount)."""
    return tokenizer.count_bytes(windows.flatten().tolist()) / max(1, windows.numel())


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


def score_eval_set(model, eval_set: EvalSet, vocab_size: int, batch_size: int = 64,
                   amp_dtype=None, bytes_per_token: float | None = None) -> dict[str, float]:
    """ELBO per token (nats, bits), bits per byte, and argmax accuracy on masked positions."""
    device = _device(model)
    loss_sum, tokens, correct, n_masked = 0.0, 0, 0, 0
    with evaluating(model):
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
    elbo = loss_sum / tokens
    return {"elbo_nats_per_char": elbo, "elbo_bits_per_char": elbo / math.log(2),
            **_per_byte(elbo, bytes_per_token), "masked_accuracy": correct / max(1, n_masked)}


def causal_nll(model, windows: torch.Tensor, vocab_size: int, batch_size: int = 64,
               amp_dtype=None, bytes_per_token: float | None = None) -> dict[str, float]:
    """Exact NLL of a causal model: every next-token prediction inside each (N, L + 1) window."""
    device = _device(model)
    total, count = 0.0, 0
    with evaluating(model):
        for i in range(0, windows.size(0), batch_size):
            w = windows[i:i + batch_size].to(device)
            with autocast(device, amp_dtype):
                logits = model(w[:, :-1])
            nll = token_nll(logits, w[:, 1:], vocab_size)
            total, count = total + float(nll.sum()), count + nll.numel()
    nll = total / count
    return {"nll_nats_per_char": nll, "nll_bits_per_char": nll / math.log(2),
            **_per_byte(nll, bytes_per_token)}


def classification_scores(model, inputs: torch.Tensor, labels: torch.Tensor,
                          batch_size: int = 64, amp_dtype=None) -> dict[str, float]:
    """Mean cross-entropy and accuracy of a sequence classifier over every (input, label)."""
    device = _device(model)
    loss, correct = 0.0, 0
    with evaluating(model):
        for i in range(0, len(labels), batch_size):
            x, y = inputs[i:i + batch_size].to(device), labels[i:i + batch_size].to(device)
            with autocast(device, amp_dtype):
                logits = model(x).float()
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(-1) == y).sum())
    return {"loss": loss / len(labels), "accuracy": correct / len(labels)}
