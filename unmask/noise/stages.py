"""Curriculum of masking stages: stages are plain dicts, advancement is a pure function.

A stage is e.g. {"type": "sticky", "target_masked_ratio": 0.4, "p1_probability": 0.15,
"p2_probability": 0.3, "val_loss_stale_count": 6}: how to mask (see masking.MASKING_STRATEGIES)
and how many evaluations without a new best validation loss to wait before moving on.
"""

from __future__ import annotations

import math

import torch

from unmask.errors import UserError

# Keys each stage type must carry, besides "type".
STAGE_KEYS: dict[str, tuple[str, ...]] = {
    "sticky": ("target_masked_ratio", "p1_probability", "p2_probability", "val_loss_stale_count"),
    "random": ("max_masked_ratio", "val_loss_stale_count"),
}

_RATIOS = ("target_masked_ratio", "max_masked_ratio")  # in (0, 1]: a stage must mask something

_PROBABILITIES = ("p1_probability", "p2_probability")  # in [0, 1]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_stages(stages: list[dict]) -> list[dict]:
    """Check a stage list; raise UserError naming the stage index and the offending key.

    Unknown keys are rejected too, so a typo ("p1_probabilty") fails loudly instead of being
    silently ignored. Returns shallow copies of the stages.
    """
    if not stages:
        raise UserError("at least one stage is required")
    assert set(STAGE_KEYS) == set(MASKING_STRATEGIES), "stage keys and strategies out of sync"
    checked = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            raise UserError(f"stage {i}: expected a dict, got {type(stage).__name__}")
        kind = stage.get("type")
        if kind not in STAGE_KEYS:
            raise UserError(f"stage {i}: key 'type' is {kind!r}; "
                             f"valid types: {sorted(STAGE_KEYS)}")
        required = STAGE_KEYS[kind]
        for key in required:
            if key not in stage:
                raise UserError(f"stage {i} ({kind}): missing key {key!r}")
        for key in stage:
            if key != "type" and key not in required:
                raise UserError(f"stage {i} ({kind}): unknown key {key!r}; "
                                 f"expected {list(required)}")
        for key in required:
            value = stage[key]
            if key == "val_loss_stale_count":
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise UserError(f"stage {i} ({kind}): key {key!r} must be a positive int, "
                                     f"got {value!r}")
            elif key in _RATIOS:
                if not _is_number(value) or not 0.0 < value <= 1.0:
                    raise UserError(f"stage {i} ({kind}): key {key!r} must be in (0, 1], "
                                     f"got {value!r}")
            elif key in _PROBABILITIES:
                if not _is_number(value) or not 0.0 <= value <= 1.0:
                    raise UserError(f"stage {i} ({kind}): key {key!r} must be in [0, 1], "
                                     f"got {value!r}")
        if kind == "sticky" and stage["p1_probability"] == 0:
            # Only p1 can start a masked region, so p1 = 0 would never reach the target.
            raise UserError(f"stage {i} (sticky): key 'p1_probability' must be > 0")
        checked.append(dict(stage))
    return checked


def describe_stage(stage: dict) -> str:
    """Seed 001's one-line stage description, e.g. target_ratio=0.4, p1=0.2, p2=0.8."""
    if stage["type"] == "sticky":
        return (f"target_ratio={stage['target_masked_ratio']}, p1={stage['p1_probability']}, "
                f"p2={stage['p2_probability']}")
    if stage["type"] == "random":
        return f"max_ratio={stage['max_masked_ratio']}"
    return ", ".join(f"{k}={v}" for k, v in stage.items() if k != "type")


# --- Stage-driven masking (curriculum stages; see curriculum.py) -----------------------------

def _random_subset(candidates: torch.Tensor, k: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
    """Keep min(k[b], #candidates in row b) uniformly chosen candidates of each row.

    Sorting i.i.d. uniform keys ranks the candidates in a uniformly random order; non-candidates
    get key 2 so they rank last. Vectorized over rows: two argsorts instead of a loop.
    """
    keys = torch.rand(candidates.shape, generator=generator, device=candidates.device)
    rank = keys.masked_fill(~candidates, 2.0).argsort(dim=1).argsort(dim=1)
    return candidates & (rank < k[:, None])


def sticky_mask(shape: tuple[int, int], target_masked_ratio: float, p1_probability: float,
                p2_probability: float, generator: torch.Generator,
                device: torch.device | str | None = None, max_rounds: int = 1000) -> torch.Tensor:
    """Contiguous ("sticky") masks with exactly ceil(target * L) masked positions per row.

    Masking grows in rounds: every unmasked position is masked with p2_probability if its left
    or right neighbour is masked (at the start of the round), else with p1_probability, so
    p2 > p1 grows existing regions into word/phrase-sized holes and p1 seeds new ones. A row
    stops taking rounds once it reaches its target count; in the round that would overshoot,
    a uniformly random subset of that round's new masks is kept so the row lands exactly on
    the target (the ratio is the stage's difficulty, so it should not depend on how far the
    last round jumped). If `max_rounds` runs out (only with a tiny p1), the remaining
    deficit is filled with uniformly random positions so the target still holds.
    Draws happen on `generator.device`; the result is moved to `device` (default: same).
    Returns a bool (B, L) tensor.
    """
    batch, length = shape
    if not 0.0 <= target_masked_ratio <= 1.0:
        raise UserError(f"target_masked_ratio must be in [0, 1], got {target_masked_ratio}")
    for name, p in (("p1_probability", p1_probability), ("p2_probability", p2_probability)):
        if not 0.0 <= p <= 1.0:
            raise UserError(f"{name} must be in [0, 1], got {p}")
    if target_masked_ratio > 0 and p1_probability == 0:
        # With nothing masked yet only p1 can start a region: p1 = 0 would never mask anything.
        raise UserError("p1_probability must be > 0 when target_masked_ratio > 0")
    gdev = generator.device
    # The small epsilon keeps float noise (0.3 * 10 = 3.0000000000000004) from adding a token.
    target = min(length, math.ceil(target_masked_ratio * length - 1e-9))
    masked = torch.zeros(batch, length, dtype=torch.bool, device=gdev)
    need = torch.full((batch,), target, dtype=torch.long, device=gdev)  # (B,) still to mask
    for _ in range(max_rounds):
        if not bool((need > 0).any()):
            break
        neighbour = torch.zeros_like(masked)
        neighbour[:, 1:] |= masked[:, :-1]
        neighbour[:, :-1] |= masked[:, 1:]
        prob = torch.where(neighbour, p2_probability, p1_probability)
        draws = torch.rand((batch, length), generator=generator, device=gdev)
        new = (draws < prob) & ~masked
        masked |= _random_subset(new, need, generator)  # need == 0 rows take nothing
        need = target - masked.sum(dim=1)
    if bool((need > 0).any()):
        masked |= _random_subset(~masked, need, generator)
    return masked.to(device if device is not None else gdev)


def random_ratio_mask(shape: tuple[int, int], max_masked_ratio: float, generator: torch.Generator,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Per-row ratio r ~ U(0, max_masked_ratio), then each position masked independently with r.

    Spreading the ratio over the batch trains every difficulty up to the stage's maximum at once.
    """
    if not 0.0 <= max_masked_ratio <= 1.0:
        raise UserError(f"max_masked_ratio must be in [0, 1], got {max_masked_ratio}")
    batch, length = shape
    gdev = generator.device
    ratio = torch.rand(batch, generator=generator, device=gdev) * max_masked_ratio
    draws = torch.rand((batch, length), generator=generator, device=gdev)
    return (draws < ratio[:, None]).to(device if device is not None else gdev)


def bert_corruption(x: torch.Tensor, masked: torch.Tensor, mask_id: int, vocab_size: int,
                    generator: torch.Generator) -> torch.Tensor:
    """BERT's 80/10/10 corruption of the positions in `masked` (Devlin et al. 2019, sec. 3.1).

    80% become [MASK], 10% a uniformly random real token in [0, vocab_size) (which may equal the
    original, as in BERT), 10% stay unchanged; unmasked positions are never touched. Feeding
    the model real tokens it must still predict stops it from trusting every visible token.
    """
    gdev = generator.device
    u = torch.rand(x.shape, generator=generator, device=gdev).to(x.device)
    random_tokens = torch.randint(0, vocab_size, x.shape, generator=generator,
                                  device=gdev).to(device=x.device, dtype=x.dtype)
    out = torch.where(masked & (u < 0.8), torch.full_like(x, mask_id), x)
    return torch.where(masked & (u >= 0.8) & (u < 0.9), random_tokens, out)


def _sticky_stage(shape, stage: dict, generator: torch.Generator, device) -> torch.Tensor:
    return sticky_mask(shape, stage["target_masked_ratio"], stage["p1_probability"],
                       stage["p2_probability"], generator, device)


def _random_stage(shape, stage: dict, generator: torch.Generator, device) -> torch.Tensor:
    return random_ratio_mask(shape, stage["max_masked_ratio"], generator, device)


# Stage "type" -> fn(shape, stage, generator, device) returning a bool (B, L) mask.
MASKING_STRATEGIES = {"sticky": _sticky_stage, "random": _random_stage}


def _stage_mask(shape, stage: dict, generator: torch.Generator, device) -> torch.Tensor:
    kind = stage.get("type")
    if kind not in MASKING_STRATEGIES:
        raise UserError(f"unknown masking stage type {kind!r}; valid types: "
                         f"{sorted(MASKING_STRATEGIES)}")
    return MASKING_STRATEGIES[kind](shape, stage, generator, device)


def apply_stage_masking(x0: torch.Tensor, stage: dict, mask_id: int,
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask a clean batch as one curriculum stage prescribes. Returns (x_t, masked)."""
    masked = _stage_mask(tuple(x0.shape), stage, generator, x0.device)
    return torch.where(masked, torch.full_like(x0, mask_id), x0), masked


def mixed_stage_masking(x0: torch.Tensor, stages: list[dict], mask_id: int,
                        generator: torch.Generator
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row is masked by one of `stages`, drawn uniformly (USE_ALL_STAGES_FOR_TRAINING).

    Mixing earlier, easier stages into training keeps the model from forgetting them. Every
    stage masks the whole batch and each row picks its own stage's mask: the number of stages is
    small, so this costs a few cheap masks and keeps the rows free of Python loops.
    Draw order: the (B,) stage indices first, then each stage's mask in list order.
    Returns (x_t, masked, stage_index) with stage_index a long (B,) tensor.
    """
    if not stages:
        raise ValueError("mixed_stage_masking needs at least one stage")
    shape = tuple(x0.shape)
    stage_index = torch.randint(len(stages), (shape[0],), generator=generator,
                                device=generator.device).to(x0.device)
    masks = torch.stack([_stage_mask(shape, s, generator, x0.device) for s in stages])  # (S, B, L)
    masked = masks[stage_index, torch.arange(shape[0], device=x0.device)]
    return torch.where(masked, torch.full_like(x0, mask_id), x0), masked, stage_index


def stage_mask(stage: dict, rows: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """A bool (rows, length) mask as `stage` prescribes (MASKING_STRATEGIES), drawn on the CPU."""
    return MASKING_STRATEGIES[stage["type"]]((rows, length), stage, generator, "cpu")
