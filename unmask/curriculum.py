"""Curriculum of masking stages: stages are plain dicts, advancement is a pure function.

A stage is e.g. {"type": "sticky", "target_masked_ratio": 0.4, "p1_probability": 0.15,
"p2_probability": 0.3, "val_loss_stale_count": 6}: how to mask (see masking.MASKING_STRATEGIES)
and how many evaluations without a new best validation loss to wait before moving on.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .masking import MASKING_STRATEGIES

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
    """Check a stage list; raise ValueError naming the stage index and the offending key.

    Unknown keys are rejected too, so a typo ("p1_probabilty") fails loudly instead of being
    silently ignored. Returns shallow copies of the stages.
    """
    if not stages:
        raise ValueError("at least one stage is required")
    assert set(STAGE_KEYS) == set(MASKING_STRATEGIES), "stage keys and strategies out of sync"
    checked = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            raise ValueError(f"stage {i}: expected a dict, got {type(stage).__name__}")
        kind = stage.get("type")
        if kind not in STAGE_KEYS:
            raise ValueError(f"stage {i}: key 'type' is {kind!r}; "
                             f"valid types: {sorted(STAGE_KEYS)}")
        required = STAGE_KEYS[kind]
        for key in required:
            if key not in stage:
                raise ValueError(f"stage {i} ({kind}): missing key {key!r}")
        for key in stage:
            if key != "type" and key not in required:
                raise ValueError(f"stage {i} ({kind}): unknown key {key!r}; "
                                 f"expected {list(required)}")
        for key in required:
            value = stage[key]
            if key == "val_loss_stale_count":
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValueError(f"stage {i} ({kind}): key {key!r} must be a positive int, "
                                     f"got {value!r}")
            elif key in _RATIOS:
                if not _is_number(value) or not 0.0 < value <= 1.0:
                    raise ValueError(f"stage {i} ({kind}): key {key!r} must be in (0, 1], "
                                     f"got {value!r}")
            elif key in _PROBABILITIES:
                if not _is_number(value) or not 0.0 <= value <= 1.0:
                    raise ValueError(f"stage {i} ({kind}): key {key!r} must be in [0, 1], "
                                     f"got {value!r}")
        if kind == "sticky" and stage["p1_probability"] == 0:
            # Only p1 can start a masked region, so p1 = 0 would never reach the target.
            raise ValueError(f"stage {i} (sticky): key 'p1_probability' must be > 0")
        checked.append(dict(stage))
    return checked


@dataclass
class CurriculumState:
    """Where training is in the curriculum; saved in checkpoints for exact resume."""

    stage: int = 0
    best_val_loss: float = math.inf  # best validation loss seen in the current stage
    stale_count: int = 0  # evaluations since best_val_loss last improved

    def state_dict(self) -> dict:
        """JSON-friendly: infinity (no evaluation yet in this stage) is stored as None."""
        best = None if math.isinf(self.best_val_loss) else float(self.best_val_loss)
        return {"stage": self.stage, "best_val_loss": best, "stale_count": self.stale_count}

    def load_state_dict(self, state: dict) -> None:
        self.stage = int(state["stage"])
        best = state["best_val_loss"]
        self.best_val_loss = math.inf if best is None else float(best)
        self.stale_count = int(state["stale_count"])


def advance(state: CurriculumState, val_loss: float,
            stages: list[dict]) -> tuple[CurriculumState, bool]:
    """Record one validation loss; return (new state, whether the stage advanced).

    A loss below the stage's best resets the stale count; anything else (including NaN) adds
    one. After the current stage's `val_loss_stale_count` stale evaluations in a row, training
    moves to the next stage with best reset to infinity: the new stage masks more, so its
    losses are higher and not comparable with the old stage's best. The last stage never
    advances; it just keeps counting.
    """
    if val_loss < state.best_val_loss:
        return dataclasses.replace(state, best_val_loss=float(val_loss), stale_count=0), False
    stale = state.stale_count + 1
    last = state.stage >= len(stages) - 1
    if not last and stale >= stages[state.stage]["val_loss_stale_count"]:
        return CurriculumState(stage=state.stage + 1), True
    return dataclasses.replace(state, stale_count=stale), False


def stages_for_training(stages: list[dict], current: int, use_all_stages: bool) -> list[dict]:
    """The stages training batches draw from: 0..current when mixing (USE_ALL_STAGES_FOR_TRAINING,
    which keeps earlier stages from being forgotten), else only the current one."""
    if not 0 <= current < len(stages):
        raise ValueError(f"current stage {current} out of range for {len(stages)} stages")
    return list(stages[: current + 1]) if use_all_stages else [stages[current]]
