"""`unmask sample`: generate text from a checkpoint."""

from __future__ import annotations

import json

from unmask.cli.errors import reject_extra
from unmask.errors import UserError

NAME = "sample"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="generate text from a checkpoint, streamed step by step")
    p.add_argument("checkpoint", help="checkpoint dir or run dir (best, else latest)")
    p.add_argument("--policy", help="sampler: confidence or random (unmasking order), causal "
                                    "(a language_model checkpoint), remask (a self_correction "
                                    "checkpoint: also re-mask tokens it flags); default: the "
                                    "checkpoint's sample.policy if it fits, else one that does")
    p.add_argument("--steps", type=int)
    p.add_argument("--length", type=int, help="characters to generate after the prompt")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--block-length", type=int, help="fill left to right in blocks of this size")
    p.add_argument("--gumbel64", action="store_true",
                   help="draw tokens by float64 Gumbel-max (float32 noise under-samples rare "
                        "tokens; ReMDM)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt", default="", help="fixed prefix (default: the sampler's own)")
    p.add_argument("--num-samples", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    p.add_argument("--animate", action="store_true",
                   help="watch the masks turn into text first (a terminal only; needs rich)")


def run(args, extra: list[str]) -> int:
    reject_extra(extra)
    import torch

    from unmask.model.pretrained import load_pretrained
    from unmask.sampling.base import final_state
    from unmask.sampling.registry import checkpoint_request, pick_sampler

    pre = load_pretrained(args.checkpoint, args.device)
    tok = pre.tokenizer
    sampler = pick_sampler(args.policy, pre)
    prompt = args.prompt or sampler.default_prompt
    prompt_ids = tok.encode(prompt) if prompt else []
    request = checkpoint_request(
        pre, sampler, prompt_ids, length=args.length or None, num_samples=args.num_samples or None,
        steps=args.steps or None, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, block_length=args.block_length, gumbel64=args.gumbel64)
    generator = torch.Generator().manual_seed(args.seed)
    events = sampler.generate(pre.model, request, generator)
    if args.animate:
        events = animated(events, pre.tokenizer, request)
    tokens = final_state(events).tokens
    texts = [prompt + tok.decode(row[len(prompt_ids):].tolist()) for row in tokens]
    if args.json:
        print(json.dumps({"checkpoint": pre.path, "samples": texts}, ensure_ascii=False))
    else:
        for i, text in enumerate(texts):
            print(f"--- sample {i + 1} ---\n{text}")
    return 0


def animated(events, tokenizer, request):
    """The same events, drawn live on a terminal as they pass (unchanged, and undrawn, when
    stdout is not a terminal)."""
    try:
        from rich.console import Console

        from unmask.serve.tui import LiveView
    except ImportError:
        raise UserError("--animate needs rich: pip install 'unmask[serve]'") from None
    return LiveView(tokenizer, request, Console(), transient=True).watch(events)
