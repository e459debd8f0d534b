"""ReMDM: ancestral sampling that may take revealed tokens back (Wang et al. 2025, arXiv
2503.00307), for any masked-diffusion checkpoint; no [WRONG] head needed.

MDLM's reverse step never changes a revealed token, so an early mistake stays. ReMDM's
posterior q_sigma(z_s | z_t, x) lets it go: with the linear schedule alpha(t) = 1 - t and a
step from t to s < t,

- a revealed token is re-masked with probability sigma_t (kept otherwise);
- a masked position is revealed with probability (alpha_s - (1 - sigma_t) alpha_t) / (1 - alpha_t),
  more than MDLM's (alpha_s - alpha_t) / (1 - alpha_t), to make up for the re-masks;

valid for 0 <= sigma_t <= sigma_max = min(1, (1 - alpha_s) / alpha_t). The schedules
(the paper's section 4 and its code's defaults):

- `cap`: sigma_t = min(eta, sigma_max), eta = 0.008;
- `rescale`: sigma_t = eta * sigma_max, eta = 0.015;
- `conf`: sigma_t per token = sigma_max * softmax(-psi) over the revealed tokens, psi the
  probability the token had when it was revealed (unsure tokens go back first); masked
  positions are revealed at MDLM's rate;
- `loop`: MDLM down to t_on with alpha stretched to reach alpha_on there; then alpha held at
  alpha_on while tokens are re-masked with probability eta = 0.02 and masks revealed at the
  matching rate eta * alpha_on / (1 - alpha_on) (eta capped at (1 - alpha_on) / alpha_on,
  where that rate reaches 1); MDLM again below t_off.

Unlike the unmasking policies the step budget is not capped at the length: steps beyond it
are refinement passes. The last step of each block reveals every mask and re-masks nothing,
so the output never holds [MASK]. Blocks (`block_length`) re-mask only inside the current
block; fixed (prompt or template) tokens are never touched. After a step that changed
nothing the previous logits are reused (MDLM's cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from unmask.errors import UserError
from unmask.sampling.base import (
    SampleRequest,
    StepEvent,
    WholeSequenceSampler,
    model_device,
    step_event,
)
from unmask.sampling.draw import device_generator, sample_tokens
from unmask.sampling.unmasking import CachedForward, block_index, block_plan

SCHEDULES = ("cap", "rescale", "conf", "loop")
DEFAULT_ETA = {"cap": 0.008, "rescale": 0.015, "conf": 0.0, "loop": 0.02}


def sigma_max(alpha_t: float, alpha_s: float) -> float:
    """The largest re-mask probability the posterior allows: min(1, (1 - alpha_s) / alpha_t)."""
    return 1.0 if alpha_t <= 0 else min(1.0, (1.0 - alpha_s) / alpha_t)


@dataclass(frozen=True)
class RemdmSampler(WholeSequenceSampler):
    """Ancestral unmasking with ReMDM remasking under `schedule` (see the module doc).

    `eta` comes from the request (`SampleRequest.eta`, None: the schedule's default above);
    t_on, t_off and alpha_on shape the `loop` schedule."""

    schedule: str = "cap"
    t_on: float = 0.55
    t_off: float = 0.05
    alpha_on: float = 0.9
    cache: bool = True
    default_prompt: str = ""

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown ReMDM schedule '{self.schedule}'; choose one of "
                            f"{', '.join(SCHEDULES)}")
        if not (0 < self.t_off < self.t_on < 1 and 0 < self.alpha_on < 1):
            raise UserError("ReMDM loop needs 0 < t_off < t_on < 1 and 0 < alpha_on < 1")

    def rates(self, t: float, s: float, eta: float) -> tuple[float, float, bool]:
        """(probability a mask is revealed, sigma, per_token) for the step t -> s. per_token
        (`conf`): each revealed token's sigma is sigma * softmax(-psi) over the block."""
        if self.schedule == "loop":
            if self.t_off < t <= self.t_on:  # alpha held at alpha_on: re-mask and refill
                sigma = min(eta, sigma_max(self.alpha_on, self.alpha_on))  # reveal rate <= 1
                return sigma * self.alpha_on / (1 - self.alpha_on), sigma, False
            if t > self.t_on:  # MDLM, alpha stretched to reach alpha_on at t_on
                def alpha(u: float) -> float:
                    return (1 - u) * self.alpha_on / (1 - self.t_on)
            else:  # MDLM from alpha_on down to t = 0
                def alpha(u: float) -> float:
                    return 1 - u * (1 - self.alpha_on) / self.t_off
            a_t, a_s = alpha(t), min(1.0, alpha(s))
            return (a_s - a_t) / (1 - a_t), 0.0, False
        alpha_t, alpha_s = 1.0 - t, 1.0 - s
        top = sigma_max(alpha_t, alpha_s)
        if self.schedule == "conf":
            return (alpha_s - alpha_t) / (1 - alpha_t), top, True
        sigma = min(eta, top) if self.schedule == "cap" else eta * top
        return (alpha_s - (1 - sigma) * alpha_t) / (1 - alpha_t), sigma, False

    def _steps(self, model, r: SampleRequest, generator) -> Iterator[StepEvent]:
        device = model_device(model)
        generator = device_generator(generator, device)
        eta = DEFAULT_ETA[self.schedule] if r.eta is None else r.eta
        x, fixed = r.initial_state(device)
        plan = block_plan(r.length, r.block_length, r.steps, cap_at_length=False)
        blocks = block_index(~fixed, r.block_length if 0 < r.block_length < r.length else 0)
        psi = torch.zeros(x.shape, device=device)  # probability of each token when revealed
        forward = CachedForward(model, r.vocab_size, self.cache)
        done, total = 0, sum(plan)
        for b, n in enumerate(plan):
            in_block = blocks == b
            for i in range(n):
                last = i == n - 1
                masked = (x == r.mask_id) & in_block
                visible = in_block & ~masked
                reveal_p, sigma, per_token = self.rates(1 - i / n, 1 - (i + 1) / n, eta)
                if last:
                    reveal_p, sigma, per_token = 1.0, 0.0, False
                if per_token:  # conf: sigma shared out by softmax(-psi) over revealed tokens
                    weights = (-psi).masked_fill(~visible, float("-inf")).softmax(-1)
                    sigma_l = sigma * weights.nan_to_num(0.0)
                else:
                    sigma_l = torch.full(x.shape, sigma, device=device)
                logits = forward(x)
                tokens, confidence = sample_tokens(logits, r.temperature, r.top_k, r.top_p,
                                                   generator, r.gumbel64)
                u = torch.rand((2, *x.shape), generator=generator,
                               device=generator.device).to(device)
                reveal = masked & (u[0] < reveal_p)
                remask = visible & (u[1] < sigma_l)
                x = torch.where(reveal, tokens, torch.where(remask, r.mask_id, x))
                psi = torch.where(reveal, confidence.float(), psi)
                forward.changed(reveal | remask)
                done += 1
                finished = last and b == len(plan) - 1
                yield step_event(done, total, forward.calls, x, r.mask_id, reveal, confidence,
                                 remask, torch.full((x.size(0),), finished, device=device))
