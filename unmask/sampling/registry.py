"""The samplers by name, and which checkpoints each one fits.

`pick_sampler(name, checkpoint)` is all a CLI or UI needs: it builds the named sampler (or the
checkpoint's default) for that checkpoint, or says in one line which names would fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from unmask.config.schema import RunConfig
from unmask.errors import UserError
from unmask.sampling.base import Sampler, SampleRequest, final_state
from unmask.sampling.causal import CausalSampler
from unmask.sampling.remask import RemaskSampler
from unmask.sampling.remdm import RemdmSampler
from unmask.sampling.unmasking import (
    UnmaskingSampler,
    reveal_above_threshold,
    reveal_calibrated,
    reveal_entropy,
    reveal_margin,
    reveal_most_confident,
    reveal_random,
    reveal_random_above_threshold,
)

if TYPE_CHECKING:
    from unmask.model.pretrained import Pretrained


def _remask_for(pre: Pretrained) -> RemaskSampler:
    from unmask.model.pretrained import checkpoint_mask_logit_bias

    return RemaskSampler(wrong_id=pre.tokenizer.special_id("wrong"),
                         remask_target=pre.config.self_correction.remask_target,
                         mask_logit_bias=checkpoint_mask_logit_bias(pre.path, pre.config))


@dataclass(frozen=True)
class SamplerEntry:
    """A registered sampler: what it is, which checkpoints it fits, how to build it for one."""

    summary: str
    modes: tuple[str, ...]  # model.mode values it can sample from
    objectives: tuple[str, ...]  # train.objective values it needs; () = any
    build: Callable[[Pretrained], Sampler]

    def fits(self, config: RunConfig) -> bool:
        """A good/wrong (binary) head has no token logits, so no sampler fits it."""
        return (config.model.mode in self.modes and not config.model.binary_head
                and (not self.objectives or config.train.objective in self.objectives))

    def needs(self) -> str:
        objectives = f", train.objective={'|'.join(self.objectives)}" if self.objectives else ""
        return f"model.mode={'|'.join(self.modes)}{objectives}"


SAMPLERS: dict[str, SamplerEntry] = {
    "confidence": SamplerEntry(
        "reveal the most confident masked positions first (MaskGIT / LLaDA)",
        ("token_classifier",), (), lambda pre: UnmaskingSampler(reveal_most_confident)),
    "random": SamplerEntry(
        "reveal masked positions at random, as the forward process masked them (MDLM ancestral)",
        ("token_classifier",), (), lambda pre: UnmaskingSampler(reveal_random)),
    "causal": SamplerEntry(
        "left to right, one token per step, with a KV cache",
        ("language_model",), (), lambda pre: CausalSampler()),
    "remask": SamplerEntry(
        "fill masks and re-mask the tokens the model flags as wrong",
        ("token_classifier",), ("self_correction",), _remask_for),
    "margin": SamplerEntry(
        "reveal the largest top-1 minus top-2 probability gaps first (Dream)",
        ("token_classifier",), (), lambda pre: UnmaskingSampler(reveal_margin)),
    "entropy": SamplerEntry(
        "reveal the lowest-entropy positions first (Dream)",
        ("token_classifier",), (), lambda pre: UnmaskingSampler(reveal_entropy)),
    "threshold": SamplerEntry(
        "reveal every position at least --threshold confident each step, at least one "
        "(Fast-dLLM parallel decoding)",
        ("token_classifier",), (), lambda pre: UnmaskingSampler(reveal_above_threshold)),
    "random-threshold": SamplerEntry(
        "MDLM ancestral order, plus every position at least --threshold confident each step "
        "(Fast-dLLM's rule on the random order: the row empties sooner, near random's diversity)",
        ("token_classifier",), (), lambda pre: UnmaskingSampler(reveal_random_above_threshold)),
    "calibrated": SamplerEntry(
        "reveal by confidence x the token's surprisal under the row's mean prediction, "
        "weighted exp(-position_decay x position) (PC-Sampler; --position-decay)",
        ("token_classifier",), (), lambda pre: UnmaskingSampler(reveal_calibrated)),
    **{f"remdm-{schedule}": SamplerEntry(
        f"MDLM ancestral order, revealed tokens re-masked with probability sigma_t "
        f"(ReMDM, {schedule} schedule; --eta)",
        ("token_classifier",), (), lambda pre, schedule=schedule: RemdmSampler(schedule))
       for schedule in ("cap", "rescale", "conf", "loop")},
}


def fitting_samplers(config: RunConfig) -> list[str]:
    return [name for name, entry in SAMPLERS.items() if entry.fits(config)]


def default_sampler(config: RunConfig) -> str:
    """The checkpoint's sample.policy when it fits the model, else the first sampler that does
    (a causal language model: `causal`)."""
    fitting = fitting_samplers(config)
    if config.sample.policy in fitting:
        return config.sample.policy
    if not fitting:
        raise UserError(f"no sampler generates from a model.mode={config.model.mode}"
                        f"{' binary-head' if config.model.binary_head else ''} checkpoint "
                        "(it classifies, it does not sample)")
    return fitting[0]


def pick_sampler(name: str | None, pre: Pretrained) -> Sampler:
    """The sampler `name` (None: the checkpoint's default) built for checkpoint `pre`."""
    config = pre.config
    name = name or default_sampler(config)
    if name not in SAMPLERS:
        raise UserError(f"unknown sampler '{name}'; choose one of {', '.join(SAMPLERS)}")
    entry = SAMPLERS[name]
    if not entry.fits(config):
        fitting = fitting_samplers(config)
        raise UserError(
            f"sampler '{name}' needs {entry.needs()}; {pre.path} has model.mode="
            f"{config.model.mode}, train.objective={config.train.objective}"
            f"{', a binary head' if config.model.binary_head else ''}; "
            + (f"choose one of {', '.join(fitting)}" if fitting else "no sampler fits it"))
    return entry.build(pre)


def checkpoint_request(pre: Pretrained, sampler: Sampler, prompt_ids: list[int],
                       **given) -> SampleRequest:
    """A request with the checkpoint's `sample` settings, overridden by the `given` values that
    are not None; the default length fits the model's context after the prompt. With
    `template_ids` given (an infill template, see sampling/infill.py) the holes set the length
    and `prompt_ids` must be empty."""
    s, tok = pre.config.sample, pre.tokenizer
    given = {k: v for k, v in given.items() if v is not None}
    template = tuple(given.get("template_ids") or ())
    if template:
        holes = template.count(tok.mask_id)
        if given.get("length", holes) != holes:
            raise UserError("--length does not apply to an infill text: its [MASK:n] holes "
                            "say how many tokens to write")
        given["length"] = holes
    n_fixed = len(template) - template.count(tok.mask_id) if template else len(prompt_ids)
    longest = sampler.max_length(pre.config.model.block_size, n_fixed)
    if longest is not None and longest <= 0 and given.get("length") is None:
        raise UserError(f"the prompt ({n_fixed} tokens) fills the model's context of "
                        f"{pre.config.model.block_size}: shorten it to leave room for text")
    settings = {"length": s.length if longest is None else min(s.length, longest),
                "num_samples": s.num_samples, "steps": s.steps, "temperature": s.temperature,
                "top_k": s.top_k, "top_p": s.top_p, "block_length": s.block_length,
                "position_decay": s.position_decay}
    settings.update(given)
    return SampleRequest(mask_id=tok.mask_id, vocab_size=tok.vocab_size,
                         prompt_ids=tuple(prompt_ids), **settings)


def sample_texts(pre: Pretrained, num_samples: int, seed: int, name: str | None = None
                 ) -> list[str]:
    """`num_samples` texts from the checkpoint's default sampler and settings (after the
    sampler's default prompt, which is not part of the text)."""
    sampler = pick_sampler(name, pre)
    prompt_ids = pre.tokenizer.encode(sampler.default_prompt) if sampler.default_prompt else []
    request = checkpoint_request(pre, sampler, prompt_ids, num_samples=num_samples)
    tokens = final_state(sampler.generate(pre.model, request,
                                          torch.Generator().manual_seed(seed))).tokens
    return [pre.tokenizer.decode(row[len(prompt_ids):].tolist()) for row in tokens]
