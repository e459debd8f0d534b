"""The judge: the project's own `language_model`, trained once on the same corpus, scores text.

MDLM reports "generative perplexity" with GPT-2 as the judge; here the judge is a small
causal model of the same corpus, trained by one documented command and reused:

    unmask train nanogpt-cpu-lm --data data/tinyshakespeare --out out/judge   # ~80 s, 2 cores

`unmask eval` and `unmask bench-sample` take `--judge PATH`, or find a run called `judge`
next to the checkpoint's run (out/demo -> out/judge).

The judge NLL of a text is the causal NLL of its characters given a newline before it (the
causal sampler's default prompt), in nats per character. Past the judge's context the window
slides exactly as the causal sampler's does (`sampling.causal.context_start`: by half a
context), so every character is predicted from at least half a context of text before it.
A low judge NLL alone is not quality: repetitive text scores well too, so it is always
reported beside the diversity figures (eval/diversity.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from unmask.errors import UserError
from unmask.eval.likelihood import evaluating
from unmask.losses.likelihood import token_nll
from unmask.model.pretrained import Pretrained, load_pretrained

JUDGE_RUN = "judge"
JUDGE_COMMAND = "unmask train nanogpt-cpu-lm --data data/tinyshakespeare --out out/judge"
JUDGE_PREFIX = "\n"


def find_judge(checkpoint: str | Path) -> str | None:
    """A `judge` run beside the checkpoint's run (or inside it), if there is one."""
    from unmask.model.checkpoint import find_checkpoint

    path = Path(checkpoint).resolve()
    for run in (path, path.parent):
        for candidate in (run.parent / JUDGE_RUN, run / JUDGE_RUN):
            if candidate.is_dir() and candidate.resolve() not in (path, path.parent):
                try:
                    find_checkpoint(candidate, log=lambda message: None)
                except UserError:  # not a run (or an incomplete one): keep looking
                    continue
                return str(candidate)
    return None


def load_judge(path: str, device: str = "auto") -> Pretrained:
    judge = load_pretrained(path, device)
    if judge.config.model.mode != "language_model":
        raise UserError(f"the judge must be a language_model checkpoint; {judge.path} is a "
                        f"{judge.config.model.mode}. Train one with: {JUDGE_COMMAND}")
    return judge


def _window_plan(T: int, block: int) -> list[tuple[int, int, int]]:
    """(start, first q, last q) per forward pass: input positions q = 0..T-2 each predict
    q + 1 from the window [context_start(q), q], as the causal sampler does."""
    half = max(1, block // 2)
    plan, q_lo = [], 0
    while q_lo <= T - 2:
        start = 0 if q_lo < block else ((q_lo - block) // half + 1) * half
        q_hi = min(T - 2, start + block - 1)
        plan.append((start, q_lo, q_hi))
        q_lo = q_hi + 1
    return plan


@torch.no_grad()
def nll_sums(model, ids: torch.Tensor, n_prefix: int, vocab_size: int) -> torch.Tensor:
    """(B,) summed NLL (nats) of ids[:, n_prefix:] given what precedes, for (B, T) ids."""
    device = next(model.parameters()).device
    ids = ids.to(device)
    total = torch.zeros(ids.size(0), dtype=torch.float64, device=device)
    for start, q_lo, q_hi in _window_plan(ids.size(1), model.cfg.block_size):
        logits = model(ids[:, start:q_hi + 1])[:, q_lo - start:]
        targets = ids[:, q_lo + 1:q_hi + 2]
        nll = token_nll(logits, targets, vocab_size).double()
        keep = torch.arange(q_lo + 1, q_hi + 2, device=device) >= n_prefix
        total += (nll * keep).sum(-1)
    return total.cpu()


def judge_text_nlls(judge: Pretrained, texts: list[str], prefix: str = JUDGE_PREFIX,
                    batch_size: int = 32) -> list[float]:
    """Each text's summed NLL (nats) under the judge, given `prefix` before it."""
    tok = judge.tokenizer
    try:
        n_prefix = len(tok.encode(prefix))
        encoded = [tok.encode(prefix + t) for t in texts]
    except UserError as err:
        raise UserError(f"the judge {judge.path} cannot read these texts ({err}); train a "
                        f"judge on the same corpus: {JUDGE_COMMAND}") from None
    out = [0.0] * len(texts)
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(i)
    with evaluating(judge.model):
        for length, members in by_length.items():
            for b in range(0, len(members), batch_size):
                rows = members[b:b + batch_size]
                ids = torch.tensor([encoded[i] for i in rows], dtype=torch.long)
                for i, value in zip(rows, nll_sums(judge.model, ids, n_prefix,
                                                   tok.vocab_size).tolist()):
                    out[i] = value
    return out


def judge_nll(judge: Pretrained, texts: list[str], prefix: str = JUDGE_PREFIX) -> dict:
    """Judge NLL per character of `texts` together (nats and bits), and the spread per text."""
    import math
    import statistics

    texts = [t for t in texts if t]
    if not texts:
        return {"judge_nll_nats_per_char": None}
    sums = judge_text_nlls(judge, texts, prefix)
    chars = sum(len(t) for t in texts)
    per_text = [s / len(t) for s, t in zip(sums, texts)]
    nll = sum(sums) / chars
    return {"judge_nll_nats_per_char": nll, "judge_nll_bits_per_char": nll / math.log(2),
            "judge_nll_per_text_std": statistics.pstdev(per_text) if len(per_text) > 1 else 0.0}
