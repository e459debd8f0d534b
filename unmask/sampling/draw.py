"""Token draws shared by every sampler: temperature, top-k, top-p, and where the randomness lives.

Draws happen on the logits' own device from a generator on that device, so a GPU run never
copies probabilities to the CPU (a sync per step). On the CPU the draws are exactly those of
`torch.multinomial` with the caller's generator, so seeded samples stay the same.
"""

from __future__ import annotations

import torch


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Keep the top-k logits and/or the smallest nucleus of mass >= top_p; others -> -inf."""
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - sorted_logits.softmax(-1) >= top_p  # mass before this token
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def gumbel_argmax64(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """argmax(logits + G), G ~ Gumbel(0, 1) drawn in float64: an exact categorical draw.

    Zheng et al. 2024 (used by ReMDM) show float32 Gumbel noise truncates the tail: -log(-log u)
    cannot exceed ~16.6 at float32 resolution, so unlikely tokens are drawn too rarely and
    diversity drops. float64 pushes that limit to ~36.7. Costs (..., V) float64 noise per call.
    """
    u = torch.rand(logits.shape, dtype=torch.float64, generator=generator,
                   device=generator.device).to(logits.device)
    return (logits.double() - torch.log(-torch.log(u))).argmax(-1)  # u = 0 gives -inf: never wins


def sample_tokens(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
                  generator: torch.Generator, gumbel64: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per position; return (tokens, probability of each drawn token).

    Temperature 0 is greedy (no randomness used). The draw happens where `generator` lives;
    samplers hand one on the logits' device (see `device_generator`).
    """
    if temperature == 0:
        probs = logits.float().softmax(-1)
        conf, tokens = probs.max(-1)
        return tokens, conf
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = logits.softmax(-1)
    if gumbel64:
        tokens = gumbel_argmax64(logits, generator)
    else:
        flat = probs.reshape(-1, probs.size(-1)).to(generator.device)
        tokens = torch.multinomial(flat, 1, generator=generator).to(probs.device)
        tokens = tokens.view(probs.shape[:-1])
    return tokens, probs.gather(-1, tokens[..., None]).squeeze(-1)


def _canonical(device: torch.device | str) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def device_generator(generator: torch.Generator | None, device: torch.device | str
                     ) -> torch.Generator:
    """A generator on `device`: the caller's own if it lives there, else one seeded from it.

    The seed is one draw from the caller's generator, so a (seed, device) pair still fixes the
    whole run. None means seed 0 on the CPU, the samplers' old default.
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    if _canonical(generator.device) == _canonical(device):
        return generator
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator,
                             device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)
