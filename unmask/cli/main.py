"""The `unmask` argument parser and entry point: argv -> one subcommand function."""

from __future__ import annotations

import argparse

from unmask.cli.commands import cmd_eval, cmd_prepare, cmd_sample, cmd_train
from unmask.cli.errors import run_reporting_errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unmask", description="Train, sample and evaluate "
                                     "masked (discrete) diffusion language models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="tokenize a corpus into a dataset directory")
    p.add_argument("source", help="shipped corpus (tinyshakespeare, frankenstein, "
                                  "pride_and_prejudice), 'authors' (the author-attribution "
                                  "task over all three) or a UTF-8 text file")
    p.add_argument("--out", required=True, help="dataset directory to write")
    p.add_argument("--block-size", type=int, default=1024, help="longest context the dataset serves")

    p = sub.add_parser("train", help="train a model (extra --section.key=value overrides allowed)")
    p.add_argument("config", nargs="?", help="preset (cpu-demo, shakespeare-char, debug) or "
                                             "config file (.json / .py)")
    p.add_argument("--data", help="prepared dataset dir, corpus name or text file")
    p.add_argument("--out", help="run directory (default out/<preset>)")
    p.add_argument("--resume", help="'auto' (continue RUN/latest if present) or a checkpoint dir")

    p = sub.add_parser("sample", help="generate text by iterative unmasking")
    p.add_argument("checkpoint", help="checkpoint dir or run dir (best, else latest)")
    p.add_argument("--policy", help="unmasking order: confidence or random; remask (a "
                                    "self_correction checkpoint): also re-mask tokens it flags")
    p.add_argument("--steps", type=int)
    p.add_argument("--length", type=int, help="characters to generate after the prompt")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--block-length", type=int, help="fill left to right in blocks of this size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt", default="", help="fixed prefix")
    p.add_argument("--num-samples", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("eval", help="ELBO, masked accuracy and word validity of a checkpoint "
                                     "(with --repair: detection and repair of corrupted text)")
    p.add_argument("checkpoint")
    p.add_argument("--data", help="dataset dir (default: the one the model was trained on)")
    p.add_argument("--samples", type=int, default=8, help="samples scored for word validity")
    p.add_argument("--max-windows", type=int, default=None,
                   help="score only the first N validation windows (default: the whole split)")
    p.add_argument("--repair", type=float, metavar="RATE",
                   help="instead: replace this fraction of characters of fixed validation "
                        "passages, report detection precision/recall/F1 and the character "
                        "error rate before/after the remasking sampler repairs them "
                        "(self_correction checkpoints)")
    p.add_argument("--passages", type=int, default=64,
                   help="--repair: validation passages (windows of the model's context)")
    p.add_argument("--change-margin", type=float, default=1.0,
                   help="--repair: replace a flagged character only by a refill this many "
                        "times as probable (1 = plain argmax)")
    p.add_argument("--flag-bias", type=float, default=0.0,
                   help="--repair: added to the flag logit (> 0 flags more, < 0 fewer)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)

    def command() -> int:
        if args.command == "train":
            return cmd_train(args, extra)
        if extra:
            parser.error(f"unrecognised arguments: {' '.join(extra)}")
        return {"prepare": cmd_prepare, "sample": cmd_sample, "eval": cmd_eval}[args.command](args)

    return run_reporting_errors(f"unmask {args.command}", command)
