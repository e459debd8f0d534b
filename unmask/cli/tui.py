"""`unmask tui`: watch a checkpoint generate in the terminal (rich), interactively or over a
file of prompts."""

from __future__ import annotations

import importlib.util
import json
import sys

from unmask.cli.errors import reject_extra
from unmask.cli.precision_option import add_dtype_argument
from unmask.errors import UserError

NAME = "tui"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="watch generation in the terminal: masks turn into text")
    p.add_argument("checkpoint", help="checkpoint dir or run dir (best, else latest)")
    p.add_argument("--prompt", default="", help="fixed prefix (default: the sampler's own)")
    p.add_argument("--policy", help="a sampler that fits the checkpoint (default: its own)")
    p.add_argument("--steps", type=int)
    p.add_argument("--length", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--block-length", type=int)
    p.add_argument("--gumbel64", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--speed", type=float, default=None,
                   help="steps shown per second (default 30; 0: as fast as they come)")
    p.add_argument("--interactive", action="store_true",
                   help="a prompt loop: change settings between generations (:help)")
    p.add_argument("--batch", metavar="PROMPTS.txt",
                   help="generate after each line of this file, with a progress bar; results "
                        "as JSON")
    p.add_argument("--out", help="with --batch: write the JSON here (default: stdout)")
    p.add_argument("--device", default="auto")
    add_dtype_argument(p, "float32", "the texts `unmask sample` gives for a seed")


def settings_from(args):
    from unmask.serve.settings import Settings
    from unmask.serve.tui import DEFAULT_SPEED

    return Settings(prompt=args.prompt, policy=args.policy, length=args.length,
                    steps=args.steps, temperature=args.temperature, top_k=args.top_k,
                    top_p=args.top_p, block_length=args.block_length, gumbel64=args.gumbel64,
                    seed=args.seed, num_samples=args.num_samples,
                    speed=DEFAULT_SPEED if args.speed is None else args.speed)


def run(args, extra: list[str]) -> int:
    reject_extra(extra)
    if args.interactive and args.batch:
        raise UserError("choose --interactive or --batch, not both")
    if args.out and not args.batch:
        raise UserError("--out goes with --batch")
    if importlib.util.find_spec("rich") is None:
        raise UserError("unmask tui needs rich: pip install 'unmask[serve]'")
    from unmask.model.pretrained import load_pretrained, running_precision
    from unmask.serve.settings import Limits, check_settings

    settings = settings_from(args)
    limits = Limits(max_length=1 << 20, max_steps=1 << 20, max_prompt_chars=1 << 20,
                    max_seconds=1e9)  # a local user limits only themself
    check_settings(settings, limits)
    pre = load_pretrained(args.checkpoint, args.device)
    with running_precision(pre, args.dtype, args.num_samples):
        return _show(args, pre, settings, limits)


def _show(args, pre, settings, limits) -> int:
    """The run itself: --batch, --interactive, or one live generation."""
    from rich.console import Console

    from unmask.serve import tui, tui_loop
    from unmask.serve.settings import prepare

    if args.batch:
        report = tui_loop.batch(pre, settings, limits, args.batch, args.out,
                                Console(stderr=True))
        if not args.out:
            print(json.dumps(report, ensure_ascii=False))
        return 0
    console = Console()
    if args.interactive:
        return tui_loop.interactive(pre, settings, limits, console)
    outcome = tui.play(pre, prepare(pre, settings, limits), console)
    if not console.is_terminal:  # plain text, as `unmask sample` prints it
        for i, text in enumerate(outcome.texts):
            print(f"--- sample {i + 1} ---\n{text}")
    print(tui.summary(outcome), file=sys.stderr if not console.is_terminal else sys.stdout)
    return 0
