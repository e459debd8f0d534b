"""`unmask sample`: generate text from a checkpoint."""

from __future__ import annotations

import json

from unmask.cli.errors import reject_extra
from unmask.cli.precision_option import add_dtype_argument
from unmask.errors import UserError

NAME = "sample"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="generate text from a checkpoint, streamed step by step")
    p.add_argument("checkpoint", help="checkpoint dir or run dir (best, else latest)")
    p.add_argument("--policy", help="sampler: confidence, margin, entropy or random "
                                    "(unmasking order), calibrated (PC-Sampler order), "
                                    "threshold (parallel decoding), random-threshold "
                                    "(random order + parallel decoding), "
                                    "remdm-cap|rescale|conf|loop (ReMDM remasking), causal "
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
    add_dtype_argument(p, "float32", "the same samples on every machine for a seed (other "
                                     "precisions give other samples)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--animate", action="store_true",
                   help="watch the masks turn into text first (a terminal only; needs rich)")
    p.add_argument("--threshold", type=float,
                   help="threshold, random-threshold: reveal every position at least this "
                        "confident each step (default 0.9)")
    p.add_argument("--eta", type=float,
                   help="remdm-* policies: remasking strength (default: the schedule's)")
    p.add_argument("--position-decay", type=float,
                   help="calibrated policy: prefer the left by exp(-DECAY x position) "
                        "(default 0)")
    p.add_argument("--infill", metavar="TEXT",
                   help="fill the holes of TEXT, e.g. \"To be, or [MASK:40] the question\" "
                        "([MASK:n]: n characters; \\[ for a literal '[')")
    p.add_argument("--prompts", metavar="FILE",
                   help="one prompt or infill text per line (prompt i gets seed SEED+i); "
                        "writes every sample with its metadata to --output")
    p.add_argument("--output", metavar="FILE", help="with --prompts: the JSON file to write")
    p.add_argument("--judge", help="with --prompts or --compare: language_model checkpoint "
                                   "adding judge NLL (default: a run named `judge` beside "
                                   "this one; 'none': no judge)")
    p.add_argument("--compare", action="store_true",
                   help="after the samples, their character entropy and distinct-2 beside "
                        "real validation text's")


def run(args, extra: list[str]) -> int:
    reject_extra(extra)
    from unmask.model.pretrained import load_pretrained, running_precision

    pre = load_pretrained(args.checkpoint, args.device)
    with running_precision(pre, args.dtype, args.num_samples or pre.config.sample.num_samples):
        return _sample(args, pre)


def _sample(args, pre) -> int:
    import torch

    from unmask.sampling.base import final_state
    from unmask.sampling.registry import checkpoint_request, pick_sampler

    tok = pre.tokenizer
    settings = dict(length=args.length or None, num_samples=args.num_samples or None,
                    steps=args.steps or None, temperature=args.temperature, top_k=args.top_k,
                    top_p=args.top_p, block_length=args.block_length, gumbel64=args.gumbel64,
                    threshold=args.threshold, eta=args.eta,
                    position_decay=args.position_decay)
    if args.prompts:
        return _batch(args, pre, settings)
    sampler = pick_sampler(args.policy, pre)
    if args.infill:
        from unmask.sampling.infill import parse_infill

        if args.prompt:
            raise UserError("give --prompt or --infill, not both")
        prompt, prompt_ids = "", []  # the whole row is the text
        ids, _ = parse_infill(args.infill, tok)
        request = checkpoint_request(pre, sampler, [], template_ids=tuple(ids), **settings)
    else:
        prompt = args.prompt or sampler.default_prompt
        prompt_ids = tok.encode(prompt) if prompt else []
        request = checkpoint_request(pre, sampler, prompt_ids, **settings)
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
    if args.compare:
        from unmask.eval.generative import compare_with_reference

        written = [tok.decode(row[len(prompt_ids):].tolist()) for row in tokens]
        print("\n" + compare_with_reference(written, _dataset(pre), _judge(args, pre)))
    return 0


def _dataset(pre):
    from unmask.data.dataset import Dataset

    dataset_dir = pre.meta.get("dataset_dir")
    if not dataset_dir:
        raise UserError("this checkpoint does not record its dataset; --compare needs it")
    return Dataset.load(dataset_dir)


def _judge(args, pre):
    """--judge PATH, 'none', or a `judge` run beside this one (eval/judge.py)."""
    from unmask.eval.judge import find_judge, load_judge

    if (args.judge or "").lower() == "none":
        return None
    path = args.judge or find_judge(pre.path)
    return load_judge(path, args.device) if path else None


def _batch(args, pre, settings) -> int:
    """--prompts FILE --output FILE: every prompt in turn, a progress bar on stderr, and a JSON
    file with each sample, its seed, steps, policy, time, network calls and metrics."""
    import sys
    from pathlib import Path

    from unmask.eval.generative import batch_results
    from unmask.sampling.batch import generate_batch, read_prompts

    if not args.output:
        raise UserError("--prompts needs --output FILE (the JSON it writes)")
    if args.prompt or args.infill:
        raise UserError("--prompts replaces --prompt and --infill (put them in the file)")
    prompts = read_prompts(args.prompts)
    records = generate_batch(pre, prompts, policy=args.policy, seed=args.seed, **settings)
    dataset = _dataset(pre) if pre.meta.get("dataset_dir") else None
    result = batch_results(pre, records, _judge(args, pre), dataset)
    Path(args.output).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n",
                                 encoding="utf-8")
    print(f"{len(records)} samples from {len(prompts)} prompts -> {args.output}",
          file=sys.stderr)
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
