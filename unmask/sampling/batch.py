"""Generate for many prompts at once (`unmask sample CKPT --prompts FILE --output FILE`).

Each prompt is a plain prefix, or an infill text when it holds a [MASK] / [MASK:n] hole
(sampling/infill.py). Prompt i is sampled with seed `seed + i`, so
`unmask sample CKPT --prompt P_i --seed S+i` (or `--infill`) gives the same text again.
Every sample comes back with what made it: seed, policy, settings, steps taken, network
calls and wall time (of its prompt's batch, shared by its rows).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Iterable

import torch

from unmask.sampling.infill import has_holes, parse_infill
from unmask.sampling.registry import checkpoint_request, default_sampler, pick_sampler

if TYPE_CHECKING:
    from unmask.model.pretrained import Pretrained


@dataclass
class Generated:
    """One generated row and how it was made."""

    prompt: str  # the prompt (or infill text) as given
    text: str  # the whole row decoded: prompt or template with its holes filled
    generated: str  # only what the sampler wrote (the holes' tokens, in order)
    seed: int
    row: int  # row of its prompt's batch
    policy: str
    steps: int  # the step budget
    steps_taken: int  # events the sampler yielded
    network_calls: int  # forward passes of the whole batch
    seconds: float  # wall time of the whole batch
    settings: dict  # temperature, top_k, top_p, block_length, ... as requested

    def to_json(self) -> dict:
        return asdict(self)


def generate_one(pre: Pretrained, prompt: str, *, policy: str | None = None, seed: int = 0,
                 **given) -> list[Generated]:
    """The rows for one prompt (`given`: SampleRequest fields, None = the checkpoint's)."""
    tok = pre.tokenizer
    name = policy or default_sampler(pre.config)
    sampler = pick_sampler(name, pre)
    if has_holes(prompt):
        ids, fixed = parse_infill(prompt, tok)
        request = checkpoint_request(pre, sampler, [], template_ids=tuple(ids), **given)
    else:
        text = prompt or sampler.default_prompt
        ids = tok.encode(text) if text else []
        fixed = [True] * len(ids)
        request = checkpoint_request(pre, sampler, ids, **given)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    events = 0
    final = None
    for final in sampler.generate(pre.model, request, generator):
        events += 1
    rows = final.tokens.tolist()  # the copy to the host also waits for the device
    seconds = time.perf_counter() - start
    settings = {k: getattr(request, k) for k in ("length", "temperature", "top_k", "top_p",
                                                 "block_length", "threshold", "eta",
                                                 "gumbel64")}
    out = []
    for r, row in enumerate(rows):
        written = [t for t, f in zip(row, fixed + [False] * (len(row) - len(fixed))) if not f]
        out.append(Generated(prompt, tok.decode(row), tok.decode(written), seed, r, name,
                             request.steps, events, final.network_calls, seconds, settings))
    return out


def generate_batch(pre: Pretrained, prompts: Iterable[str], *, policy: str | None = None,
                   seed: int = 0, progress: bool = True, **given) -> list[Generated]:
    """Every prompt in turn (prompt i with seed + i), with a progress bar on stderr."""
    from tqdm import tqdm

    prompts = list(prompts)
    out: list[Generated] = []
    bar = tqdm(prompts, desc="sampling", unit="prompt", file=sys.stderr,
               disable=not progress, leave=False)
    for i, prompt in enumerate(bar):
        out.extend(generate_one(pre, prompt, policy=policy, seed=seed + i, **given))
    return out


def read_prompts(path: str) -> list[str]:
    """One prompt per line (a trailing newline ends a line, it is not part of the prompt);
    `\\n` in a line stands for a newline, so multi-line prompts fit on one line."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    return [line.replace("\\n", "\n") for line in lines]
