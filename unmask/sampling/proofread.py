"""Proofreading: how a checkpoint repairs a text, and a whole text of any length in windows.

Three proofreaders (PROOFREADERS, `--proofreader`): 'remask' flags with the model's [WRONG]
output and refills with the remasking sampler (self_correction checkpoints); 'channel' takes
each token's noisy-channel posterior mode (sampling/channel.py), which needs only the fill
distribution, so any diffusion checkpoint can use it; 'direct' reads the text once and takes
what the model says belongs at each position (sampling/direct.py; self_correction checkpoints
trained with weight_swap_fill > 0). `require_checkpoint_for` says which checkpoint each needs.

A text longer than the model's context is read in windows that overlap by half: each position
is edited by the one window in which it sits nearest the middle and is frozen context in the
others, so every edited token sees at least a quarter of a context on each side (less only at
the text's ends). Windows are independent, so they are proofread in batches.
"""

from __future__ import annotations

import torch

from unmask.errors import UserError
from unmask.sampling.channel import channel_repair
from unmask.sampling.direct import direct_repair
from unmask.sampling.remask import detect_wrong, repair


def _remask_proofread(model, x, sampler: dict, prior: float, seed: int, frozen=None):
    """(first-pass flags, repaired text) of the remasking sampler (`sampler`: its keywords)."""
    flagged = detect_wrong(model, x, sampler["vocab_size"], sampler["wrong_id"],
                           sampler["remask_target"], mask_id=sampler["mask_id"],
                           mask_logit_bias=sampler["mask_logit_bias"],
                           flag_bias=sampler["flag_bias"])
    repaired = repair(model, corrupted=x, generator=torch.Generator().manual_seed(seed),
                      frozen=frozen, **sampler)
    return flagged, repaired


def _channel_proofread(model, x, sampler: dict, prior: float, seed: int, frozen=None):
    """(changed tokens, repaired text) of the noisy-channel proofreader."""
    repaired = channel_repair(model, x, vocab_size=sampler["vocab_size"],
                              mask_id=sampler["mask_id"], error_rate=prior, frozen=frozen)
    return repaired != x, repaired


def _direct_proofread(model, x, sampler: dict, prior: float, seed: int, frozen=None):
    """(changed tokens, repaired text) of the one-pass direct proofreader."""
    repaired = direct_repair(model, x, vocab_size=sampler["vocab_size"],
                             change_margin=sampler["change_margin"], frozen=frozen)
    return repaired != x, repaired


# How a checkpoint proofreads (`unmask eval --proofreader`, `unmask proofread --proofreader`):
# name -> fn(model, x (B, L), sampler keywords, prior error rate, seed, frozen) ->
# (flags or changes, repaired), both (B, L).
PROOFREADERS = {"remask": _remask_proofread, "channel": _channel_proofread,
                "direct": _direct_proofread}


def require_proofreader(name: str) -> None:
    if name not in PROOFREADERS:
        raise UserError(f"unknown proofreader '{name}'; choose one of "
                        f"{', '.join(PROOFREADERS)}")


def _fills_masks(name: str, config, path: str) -> None:
    objective = config.train.objective
    if (config.model.mode != "token_classifier" or config.model.binary_head
            or objective == "remask_binary"):
        raise UserError(f"{path} does not fill masked text (a {config.model.mode} trained with "
                        f"'{objective}'); proofread with a diffusion checkpoint")


def _flags_swaps(name: str, config, path: str) -> None:
    if config.train.objective != "self_correction":
        raise UserError(f"--proofreader {name} needs a checkpoint trained with "
                        f"train.objective=self_correction; {path} was trained with "
                        f"'{config.train.objective}'")


def _fills_swaps(name: str, config, path: str) -> None:
    if not config.self_correction.weight_swap_fill > 0:
        raise UserError(f"--proofreader {name} needs a checkpoint that learned what belongs at "
                        f"a swapped token (self_correction.weight_swap_fill > 0); {path} was "
                        f"trained without it: use --proofreader channel")


# What each proofreader needs of a checkpoint, checked in order.
CHECKPOINT_NEEDS = {"remask": (_flags_swaps, _fills_masks), "channel": (_fills_masks,),
                    "direct": (_flags_swaps, _fills_swaps, _fills_masks)}


def require_checkpoint_for(proofreader: str, config, path: str) -> None:
    """A one-line error when the checkpoint of `config` (a RunConfig) at `path` was not trained
    to read text the way `proofreader` asks of it."""
    require_proofreader(proofreader)
    for need in CHECKPOINT_NEEDS[proofreader]:
        need(proofreader, config, path)


# `--change-margin` when none is given: the remasking sampler's plain argmax; the direct
# proofreader's margin chosen on `--repair-seed 1` (BENCHMARKS.md: 3 for both the demo-budget
# and the 30-minute model); the channel proofreader has its prior instead.
CHANGE_MARGINS = {"remask": 1.0, "direct": 3.0, "channel": 1.0}


def resolve_change_margin(proofreader: str, change_margin: float | None) -> float:
    """`change_margin`, or the proofreader's default for None. The remasking sampler (and the
    direct proofreader) replace a token only by one `change_margin` times as probable as it,
    so below 1 they would prefer less probable ones."""
    require_proofreader(proofreader)
    if change_margin is None:
        return CHANGE_MARGINS[proofreader]
    if not change_margin >= 1.0:
        raise UserError(f"--change-margin must be >= 1 (1 = plain argmax), got {change_margin}")
    return change_margin


def window_plan(n: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions, owned), both (W, min(n, length)): the text positions each window reads,
    and which of them it edits; every position is owned by exactly one window (module doc)."""
    if n < 1 or length < 2:
        raise UserError(f"nothing to proofread: {n} tokens with a context of {length}")
    width = min(n, length)
    starts = sorted(set(range(0, n - width + 1, max(1, width // 2))) | {n - width})
    positions = torch.tensor(starts)[:, None] + torch.arange(width)
    # distance from the window's middle; ties go to the earlier window (the row index breaks them)
    off_middle = (torch.arange(width) - (width - 1) / 2).abs() * 2
    score = (off_middle * len(starts) + torch.arange(len(starts))[:, None]).flatten()
    best = torch.full((n,), float("inf")).scatter_reduce(0, positions.flatten(), score, "amin")
    owned = (score == best[positions.flatten()]).view_as(positions)
    return positions, owned


PROOFREAD_BATCH = 32  # windows per forward pass


@torch.no_grad()
def proofread_ids(model, ids: torch.Tensor, *, context: int, proofreader: str,
                  sampler: dict, prior: float, seed: int = 0,
                  batch_size: int = PROOFREAD_BATCH) -> torch.Tensor:
    """The proofread (n,) token ids of `ids` (n,), read in windows of `context` tokens.

    `sampler` holds the proofreader's keywords (vocab_size, mask_id, ...: see eval/repair.py).
    A [MASK] in `ids` (e.g. a character the tokenizer lacks) is filled from its context."""
    require_proofreader(proofreader)
    device = next(model.parameters()).device
    positions, owned = window_plan(len(ids), context)
    ids = ids.cpu()
    out = ids.clone()
    for i in range(0, len(positions), batch_size):
        rows = slice(i, i + batch_size)
        x = ids[positions[rows]]
        # another window's positions are context here; a [MASK] there is filled, not frozen
        frozen = ~owned[rows] & (x < sampler["vocab_size"])
        _, fixed = PROOFREADERS[proofreader](model, x.to(device), sampler, prior, seed,
                                             frozen=frozen.to(device))
        mine = owned[rows]
        out[positions[rows][mine]] = fixed.cpu()[mine].to(out.dtype)
    return out


DEFAULT_PRIOR_RATE = 0.02  # `unmask proofread`'s share of characters expected wrong


def check_proofread_request(text: str, proofreader: str, prior_rate: float,
                            change_margin: float | None) -> float:
    """A one-line error for a request no checkpoint can serve; the change margin to use."""
    if not text:
        raise UserError("nothing to proofread: the input is empty")
    if not 0.0 < prior_rate < 1.0:
        raise UserError(f"--prior-rate must be in (0, 1), got {prior_rate}")
    return resolve_change_margin(proofreader, change_margin)


def proofread_pretrained(pre, text: str, *, proofreader: str = "channel",
                         prior_rate: float = DEFAULT_PRIOR_RATE,
                         change_margin: float | None = None, flag_bias: float = 0.0,
                         max_steps: int = 16, dtype: str = "float32") -> dict:
    """`text` proofread by the loaded checkpoint `pre` (model.pretrained.Pretrained):
    {"text": corrected, "changes": [{"position", "from", "to"}], "precision", ...}.

    `change_margin` None: the proofreader's default (CHANGE_MARGINS). `dtype` auto: bf16
    autocast where training would use it (the CPU probe times a training step of the model's
    block, a fair proxy for the forward passes here: bf16 proofreads run K's 16,384
    characters 1.7x faster at the same error rate, BENCHMARKS.md). A character the
    tokenizer lacks is read as [MASK] and passes through unchanged."""
    from unmask.model.pretrained import checkpoint_mask_logit_bias, running_precision

    change_margin = check_proofread_request(text, proofreader, prior_rate, change_margin)
    cfg, tok = pre.config, pre.tokenizer
    require_checkpoint_for(proofreader, cfg, pre.path)
    pieces = _pieces(tok, text)
    ids = torch.tensor([tok.mask_id if p is None else p for p in pieces])
    sampler = dict(vocab_size=tok.vocab_size, mask_id=tok.mask_id,
                   wrong_id=tok.special_id("wrong"),
                   remask_target=cfg.self_correction.remask_target,
                   mask_logit_bias=checkpoint_mask_logit_bias(pre.path, cfg),
                   flag_bias=flag_bias, max_steps=max_steps, change_margin=change_margin)
    with running_precision(pre, dtype, PROOFREAD_BATCH) as precision:
        fixed = proofread_ids(pre.model, ids, context=cfg.model.block_size,
                              proofreader=proofreader, sampler=sampler, prior=prior_rate).tolist()
    known = [p is not None for p in pieces]
    changes = [{"position": i, "from": tok.decode([a]), "to": tok.decode([b])}
               for i, (a, b, k) in enumerate(zip(ids.tolist(), fixed, known)) if k and a != b]
    if all(known):
        corrected = tok.decode(fixed)
    else:  # a character tokenizer: characters it lacks pass through as they are
        corrected = "".join(tok.decode([b]) if k else ch for b, k, ch in zip(fixed, known, text))
    return {"checkpoint": pre.path, "proofreader": proofreader,
            "prior_rate": prior_rate if proofreader == "channel" else None,
            "precision": precision.dtype,
            "unit": "character" if getattr(tok, "kind", "") == "char" else "token",
            "tokens": len(fixed), "changes": changes, "text": corrected}


def _pieces(tok, text: str) -> list[int | None]:
    """Token ids of `text`; with a character tokenizer, None for each character it lacks."""
    if getattr(tok, "kind", "") == "char":
        stoi = tok.stoi
        return [stoi.get(ch) for ch in text]
    return tok.encode(text)
