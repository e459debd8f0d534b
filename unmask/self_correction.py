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

from .config import REMASK_TARGETS, SelfCorrectionConfig

def remask_id_for(remask_target: str, mask_id: int, wrong_id: int) -> int:
    """The id the model outputs to flag a visible token as wrong."""
    if remask_target not in REMASK_TARGETS:
        raise ValueError(f"remask_target must be one of {', '.join(REMASK_TARGETS)}, "
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


# ---------------------------------------------------------------- loss


def task_weighted_loss(logits: torch.Tensor, c: Corruption, mask_id: int, wrong_id: int,
                       current_penalty: float, cfg: SelfCorrectionConfig,
                       mask_logit_bias: float = 0.0, *, vocab_size: int | None = None
                       ) -> tuple[torch.Tensor, int, dict[str, torch.Tensor]]:
    """Seed 002/003's task-weighted cross-entropy; returns (weighted sum, #positions, diag).

    The softmax runs over the real tokens (ids < `vocab_size`, default `mask_id`: the tokenizer
    appends specials after the text vocabulary) plus the remask id; other specials get no
    mass. It is assembled from two logsumexps, so the (B, L, V) logits are never copied
    (beyond a float upcast of low-precision logits). `mask_logit_bias` is added to the [MASK]
    logit, which only matters in the single-token variant ([MASK] is no output otherwise).

    Weights: unmask positions (input [MASK]) weight_unmask_task; remask positions (swapped
    input, target remask id) weight_remask_task; a correct visible token whose argmax is the
    remask id (a destructive edit) current_penalty * (1 - corruption_rate of its row), so a
    row with many swaps forgives over-flagging less harshly; everything else 1.

    `weight_swap_fill` > 0 adds, at swapped positions, that weight times the cross-entropy of
    the original token over the real tokens alone (the remask output excluded): besides
    flagging a swapped token the model learns what belongs there, which doubles the
    fill-in-the-blank signal per row, and the flag is unaffected (that term ignores it).

    diag: avg_mask_prob = mean probability of the remask output over unmask positions (the
    controller's signal in the single-token variant), and the task counts.
    """
    V = mask_id if vocab_size is None else vocab_size
    remask_id = remask_id_for(cfg.remask_target, mask_id, wrong_id)
    bias = mask_logit_bias if remask_id == mask_id else 0.0
    inputs, targets = c.inputs, c.targets
    real = logits[..., :V].float()  # a view for fp32 logits
    flag = logits[..., remask_id].float() + bias  # (B, L)
    lse = torch.logaddexp(real.logsumexp(-1), flag)
    is_flag_target = targets == remask_id
    target_real = real.gather(-1, targets.clamp(0, V - 1)[..., None]).squeeze(-1)
    nll = lse - torch.where(is_flag_target, flag, target_real)

    with torch.no_grad():
        visible = inputs != mask_id
        unmask = ~visible & ~is_flag_target
        remask = visible & is_flag_target
        predicted_flag = flag > real.max(-1).values  # argmax over allowed ids; ties -> real
        destructive = visible & (inputs == targets) & predicted_flag
        penalty = current_penalty * (1.0 - c.corruption_rate.to(nll.device))[:, None]
        weights = torch.ones_like(nll)
        weights = torch.where(unmask, cfg.weight_unmask_task, weights)
        weights = torch.where(remask, cfg.weight_remask_task, weights)
        weights = torch.where(destructive, penalty.expand_as(weights), weights)
        n_unmask = unmask.sum()
        flag_prob = (flag - lse).exp()
        diag = {
            "avg_mask_prob": (flag_prob * unmask).sum() / n_unmask.clamp_min(1),
            "n_unmask": n_unmask,
            "n_remask": remask.sum(),
            "n_destructive": destructive.sum(),
            "n_flagged": (visible & predicted_flag).sum(),
        }
    total = (nll * weights).sum()
    if cfg.weight_swap_fill > 0 and c.originals is not None:
        original = real.gather(-1, c.originals[..., None]).squeeze(-1)
        swap_nll = real.logsumexp(-1) - original
        total = total + cfg.weight_swap_fill * (swap_nll * c.replaced_positions).sum()
    return total, targets.numel(), diag


# ---------------------------------------------------------------- bias controller


class MaskBiasController:
    """Integral controller that steers the [MASK] probability on unmask positions (seed 003).

    running_avg <- ema * running_avg + (1 - ema) * observed
    bias        <- bias + strength * (target - running_avg) * scale,   scale = 1

    The error is in probability units (scale 1, as in the seed): too little [MASK] mass raises
    the bias. Near p = 1/2 a unit of bias moves p by p(1 - p) = 1/4, so the linearised loop has
    characteristic polynomial z^2 - (1 + ema - strength (1 - ema) / 4) z + ema, critically
    damped at strength = 4 (1 - sqrt(ema)) / (1 + sqrt(ema)) ~= 0.01005 for ema = 0.99: the
    seed's defaults settle as fast as possible without overshoot.
    """

    def __init__(self, initial_bias: float = 3.5, strength: float = 0.01, target: float = 0.5,
                 ema: float = 0.99):
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {ema}")
        self.bias = float(initial_bias)
        self.running_avg = float(target)  # start at the set point: no kick on the first step
        self.strength, self.target, self.ema = float(strength), float(target), float(ema)

    @classmethod
    def from_config(cls, cfg: SelfCorrectionConfig, ema: float = 0.99) -> "MaskBiasController":
        return cls(cfg.initial_mask_logit_bias, cfg.bias_update_strength, cfg.target_mask_prob,
                   ema)

    def update(self, avg_mask_prob: float | torch.Tensor) -> float | torch.Tensor:
        """Fold in one observation (once per optimizer step) and return the new bias.

        A 0-dim tensor observation keeps the state on its device, so a training loop can
        update every step without a host sync (the bias then is a tensor, added to the logits
        as is); state_dict() converts to floats.
        """
        observed = avg_mask_prob if isinstance(avg_mask_prob, torch.Tensor) else float(avg_mask_prob)
        self.running_avg = self.ema * self.running_avg + (1.0 - self.ema) * observed
        self.bias = self.bias + self.strength * (self.target - self.running_avg)
        return self.bias

    def state_dict(self) -> dict[str, float]:
        return {"bias": float(self.bias), "running_avg": float(self.running_avg)}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.bias = float(state["bias"])
        self.running_avg = float(state["running_avg"])


# ---------------------------------------------------------------- repair evaluation


def corrupt_text_ids(ids: torch.Tensor, rate: float, vocab_size: int,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Swap exactly round(rate * L) positions per row for a different random real token.

    Returns (corrupted, replaced) with `replaced` a bool (N, L) mask; the text keeps its length.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"corruption rate must be in [0, 1], got {rate}")
    N, L = ids.shape
    n = torch.full((N,), round(rate * L), dtype=torch.long, device=ids.device)
    noise = torch.rand(N, L, generator=generator, device=generator.device).to(ids.device)
    replaced = _first_n_of_random_order(noise, torch.zeros_like(n), n)
    corrupted = torch.where(replaced, _swap_tokens(ids, vocab_size, generator), ids)
    return corrupted, replaced


def detection_scores(predicted_wrong: torch.Tensor, replaced: torch.Tensor) -> dict[str, float]:
    """Precision, recall and F1 of flagged positions against the truly swapped ones.

    Empty denominators score 1 (no flags: no false alarms; nothing swapped: nothing missed).
    """
    tp = int((predicted_wrong & replaced).sum())
    n_pred, n_true = int(predicted_wrong.sum()), int(replaced.sum())
    precision = tp / n_pred if n_pred else 1.0
    recall = tp / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def char_error_rate(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of positions where two equal-length id tensors differ.

    Repair only substitutes tokens and never inserts or deletes, so the edit distance equals
    the Hamming distance and this is the character error rate (for a character tokenizer).
    """
    if a.shape != b.shape:
        raise ValueError(f"char_error_rate needs equal shapes, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    return float((a != b).float().mean()) if a.numel() else 0.0
