"""The [MASK]-bias feedback controller of single-token self-correction (seed 003)."""

from __future__ import annotations

import torch

from unmask.config.schema import SelfCorrectionConfig

# ---------------------------------------------------------------- loss


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
