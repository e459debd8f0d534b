"""Self-correction training: [MASK] / [WRONG] corruption, task-weighted loss, bias controller.

Seeds 002/003. Besides filling masks ("unmask task"), the model learns to flag visible tokens
that were swapped for random ones ("remask task"). The flag is either a dedicated [WRONG]
output (two-token variant, `remask_target="wrong"`) or [MASK] itself (single-token variant,
`remask_target="mask"`). A curriculum ramps in the swapped tokens and a discount for the
"destructive edit" of flagging a correct token. Everything is vectorized over the batch, every
random draw takes an explicit torch.Generator, and losses return (sum, count) like
objectives.py. The repair-evaluation helpers at the end score a trained corrector.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unmask.config.schema import REMASK_TARGETS, SelfCorrectionConfig
from unmask.errors import UserError


def remask_id_for(remask_target: str, mask_id: int, wrong_id: int) -> int:
    """The id the model outputs to flag a visible token as wrong."""
    if remask_target not in REMASK_TARGETS:
        raise UserError(f"remask_target must be one of {', '.join(REMASK_TARGETS)}, "
                         f"got '{remask_target}'")
    return wrong_id if remask_target == "wrong" else mask_id



def _ramp(it: int, warmup: int) -> float:
    """Linear 0 -> 1 over `warmup` iterations; warmup 0 means already at 1."""
    return 1.0 if warmup <= 0 else min(max(it, 0) / warmup, 1.0)


def get_corruption_scheduler(it: int, cfg: SelfCorrectionConfig) -> tuple[float, float]:
    """(current penalty_mask_correct, remask_ratio) at iteration `it`.

    Both start at 0: the model first learns to fill blanks, with no swapped tokens and no
    discount for flagging correct ones, then proofreading is phased in (seed 002, step 3.2).
    """
    return (cfg.penalty_mask_correct * _ramp(it, cfg.masking_warmup_iters),
            _ramp(it, cfg.proofreading_warmup_iters))


# ---------------------------------------------------------------- corruption


@dataclass
class Corruption:
    inputs: torch.Tensor  # (B, L) what the model sees: [MASK], swapped tokens, originals
    targets: torch.Tensor  # (B, L) original token, or the remask id where a token was swapped
    mask_positions: torch.Tensor  # (B, L) bool, input is [MASK]
    replaced_positions: torch.Tensor  # (B, L) bool, input is a swapped (wrong) real token
    corruption_rate: torch.Tensor  # (B,) float, #swapped / #visible (non-[MASK]) inputs
    originals: torch.Tensor | None = None  # (B, L) the clean tokens (for weight_swap_fill)


def _first_n_of_random_order(noise: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
                             ) -> torch.Tensor:
    """Bool (B, L): positions whose rank in a per-row random order lies in [lo, hi).

    Ranking uniform noise (double argsort) is a vectorized per-row randperm, so the count per
    row is exact, unlike independent Bernoulli draws.
    """
    rank = noise.argsort(-1).argsort(-1)
    return (rank >= lo[:, None]) & (rank < hi[:, None])


def _swap_tokens(x0: torch.Tensor, vocab_size: int, generator: torch.Generator) -> torch.Tensor:
    """A different random real token at every position: (x0 + U{1..V-1}) mod V."""
    offset = torch.randint(1, vocab_size, x0.shape, generator=generator, device=generator.device)
    return (x0 + offset.to(x0.device)) % vocab_size


def corrupt(x0: torch.Tensor, remask_ratio: float, cfg: SelfCorrectionConfig, vocab_size: int,
            mask_id: int, wrong_id: int, generator: torch.Generator) -> Corruption:
    """Seed 002's get_batch corruption, vectorized.

    Per row: total rate c ~ U(0, 1 - guaranteed_correct_factor), of which a share
    c * u * remask_ratio (u ~ U(0, 1)) is swapped for random tokens and the rest masked;
    exactly floor(L * rate) positions of each kind. Draw order: c (B,), u (B,), position
    noise (B, L), swap offsets (B, L).
    """
    B, L = x0.shape
    device = generator.device
    c = torch.rand(B, generator=generator, device=device) * (1.0 - cfg.guaranteed_correct_factor)
    u = torch.rand(B, generator=generator, device=device)
    rate_random = c * u * remask_ratio
    rate_mask = c - rate_random
    n_mask = torch.floor(L * rate_mask).long().to(x0.device)
    n_random = torch.floor(L * rate_random).long().to(x0.device)
    noise = torch.rand(B, L, generator=generator, device=device).to(x0.device)
    zero = torch.zeros_like(n_mask)
    masked = _first_n_of_random_order(noise, zero, n_mask)
    replaced = _first_n_of_random_order(noise, n_mask, n_mask + n_random)
    swapped = _swap_tokens(x0, vocab_size, generator)
    inputs = torch.where(masked, mask_id, torch.where(replaced, swapped, x0))
    targets = torch.where(replaced, remask_id_for(cfg.remask_target, mask_id, wrong_id), x0)
    rate = n_random.float() / (L - n_mask).clamp_min(1).float()
    return Corruption(inputs, targets, masked, replaced, rate, x0)


def binary_corruption(x0: torch.Tensor, cfg: SelfCorrectionConfig, vocab_size: int,
                      mask_id: int, wrong_id: int, generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and good/wrong labels for the binary remasking head (seed 000's
    get_batch_remasking_binary): corrupt() at the full remask ratio with its [MASK] positions
    given back their original tokens, so the input holds only real tokens and a row's swap
    rate is c * u as in the two-token task. Returns (inputs, wrong) with `wrong` bool (B, L).
    """
    c = corrupt(x0, 1.0, cfg, vocab_size, mask_id, wrong_id, generator)
    return torch.where(c.mask_positions, x0, c.inputs), c.replaced_positions


# ---------------------------------------------------------------- repair evaluation


def corrupt_text_ids(ids: torch.Tensor, rate: float, vocab_size: int,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Swap exactly round(rate * L) positions per row for a different random real token.

    Returns (corrupted, replaced) with `replaced` a bool (N, L) mask; the text keeps its length.
    """
    if not 0.0 <= rate <= 1.0:
        raise UserError(f"corruption rate must be in [0, 1], got {rate}")
    N, L = ids.shape
    n = torch.full((N,), round(rate * L), dtype=torch.long, device=ids.device)
    noise = torch.rand(N, L, generator=generator, device=generator.device).to(ids.device)
    replaced = _first_n_of_random_order(noise, torch.zeros_like(n), n)
    corrupted = torch.where(replaced, _swap_tokens(ids, vocab_size, generator), ids)
    return corrupted, replaced
