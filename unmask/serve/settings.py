"""What a user of the web page or the terminal view may ask for, checked against the server's
limits, turned into a sampler and a `SampleRequest` exactly as `unmask sample` does it: the
same checkpoint, seed and settings give the same text here and there (a test holds them to it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields

import torch

from unmask.errors import UserError
from unmask.sampling.base import Sampler, SampleRequest, StepEvent
from unmask.sampling.registry import checkpoint_request, default_sampler, pick_sampler

MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class Limits:
    """Caps a server (or a terminal session) puts on one request; all user-settable."""

    max_prompt_chars: int = 4096
    max_length: int = 1024  # tokens generated after the prompt
    max_steps: int = 1024
    max_concurrent: int = 8  # generations at once; the next one gets 429
    max_body_bytes: int = 16 * 1024  # a larger request body gets 413
    stall_seconds: float = 30.0  # a client that takes no frame for this long loses its slot
    max_seconds: float = 300.0  # wall time of one generation, animation pacing included
    max_speed: float = 1000.0  # steps per second of the animation (0: unpaced)

    def __post_init__(self) -> None:
        if min(self.max_prompt_chars, self.max_length, self.max_steps, self.max_concurrent,
               self.max_body_bytes) <= 0 or min(self.stall_seconds, self.max_seconds) <= 0:
            raise UserError("server limits must be positive")


@dataclass(frozen=True)
class Settings:
    """One generation's settings; None means "the checkpoint's `sample` default"."""

    prompt: str = ""  # fixed prefix (empty: the sampler's own default prompt)
    policy: str | None = None  # a registered sampler that fits the checkpoint
    length: int | None = None
    steps: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    block_length: int | None = None
    gumbel64: bool = False
    seed: int = 0
    speed: float = 0.0  # animation: steps shown per second; 0 = as fast as they come
    num_samples: int = 1

    def replace(self, **changes) -> Settings:
        return Settings(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})


@dataclass(frozen=True)
class Prepared:
    """A checked request, ready to stream."""

    policy: str
    sampler: Sampler
    request: SampleRequest
    prompt: str  # the prompt used: the sampler's default when none was given
    seed: int
    speed: float

    def events(self, model: torch.nn.Module) -> Iterator[StepEvent]:
        """The sampler's stream with the CLI's generator: `torch.Generator().manual_seed`.
        The sampler checks prompt + length against the context here, before any step."""
        generator = torch.Generator().manual_seed(self.seed)
        return self.sampler.generate(model, self.request, generator)


def _check_number(name: str, value, low: float, high: float, integer: bool) -> None:
    if value is None:
        return
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            integer and not isinstance(value, int)) or not math.isfinite(value):
        raise UserError(f"{name} must be {kind}, got {value!r}")
    if not low <= value <= high:
        raise UserError(f"{name} must be between {low:g} and {high:g}, got {value:g}")


def check_settings(settings: Settings, limits: Limits) -> None:
    """The server's caps and the plain range checks, each failure one message naming the
    field, the value and the allowed range."""
    if not isinstance(settings.prompt, str):
        raise UserError("prompt must be text")
    if len(settings.prompt) > limits.max_prompt_chars:
        raise UserError(f"prompt has {len(settings.prompt):,} characters; this server takes at "
                        f"most {limits.max_prompt_chars:,}")
    _check_number("length", settings.length, 1, limits.max_length, True)
    _check_number("steps", settings.steps, 1, limits.max_steps, True)
    _check_number("temperature", settings.temperature, 0, 100, False)
    _check_number("top_k", settings.top_k, 0, 2**31 - 1, True)
    _check_number("top_p", settings.top_p, 1e-9, 1, False)
    _check_number("block_length", settings.block_length, 0, limits.max_length, True)
    _check_number("seed", settings.seed, 0, MAX_SEED, True)
    _check_number("speed", settings.speed, 0, limits.max_speed, False)
    _check_number("num_samples", settings.num_samples, 1, 16, True)


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Prompt text -> the ids of the fixed prefix.

    Infill hook: the infill syntax (designed in `unmask.sampling`) marks holes inside fixed
    text. When it lands, parse `text` here into fixed ids and positions and carry them in the
    request; `stream.initial_cells` already draws every non-[MASK] position of the starting
    row as fixed text and every [MASK] as a block, wherever they are.
    """
    return tokenizer.encode(text) if text else []


def prepare(pre, settings: Settings, limits: Limits | None = None) -> Prepared:
    """Settings -> sampler + request, as `unmask sample` builds them; UserError when the
    settings break a limit or do not fit the checkpoint (an unknown character, a policy the
    model cannot run, prompt + length past its context)."""
    limits = limits or Limits()
    check_settings(settings, limits)
    policy = settings.policy or default_sampler(pre.config)
    sampler = pick_sampler(policy, pre)
    prompt = settings.prompt or sampler.default_prompt
    request = checkpoint_request(
        pre, sampler, encode_prompt(pre.tokenizer, prompt), length=settings.length,
        num_samples=settings.num_samples, steps=settings.steps,
        temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p,
        block_length=settings.block_length, gumbel64=settings.gumbel64)
    if request.length > limits.max_length:  # the checkpoint's default length can be longer
        raise UserError(f"length {request.length} is over this server's limit of "
                        f"{limits.max_length}; ask for a shorter length")
    shown = min(request.steps, request.length)
    if settings.speed and shown / settings.speed > limits.max_seconds:
        raise UserError(f"{shown} steps at {settings.speed:g} steps/s take longer than this "
                        f"server's limit of {limits.max_seconds:g} s; raise the speed")
    prepared = Prepared(policy, sampler, request, prompt, settings.seed, float(settings.speed))
    prepared.events(pre.model).close()  # the sampler's own checks (context, prompt), no step
    return prepared
