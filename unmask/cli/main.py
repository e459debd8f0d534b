"""The `unmask` argument parser and entry point: argv -> one subcommand module's `run`."""

from __future__ import annotations

import argparse
import os

from unmask.cli import (
    bench_sample,
    book,
    evaluate,
    info,
    prepare,
    proofread,
    sample,
    serve,
    train,
    tui,
)
from unmask.cli.errors import run_reporting_errors

# Subcommand name -> module with add_parser(sub) and run(args, extra).
COMMANDS = {m.NAME: m for m in (prepare, train, sample, evaluate, proofread, bench_sample,
                                 serve, tui, info, book)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unmask", description="Train, sample and evaluate "
                                     "masked (discrete) diffusion language models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error")
    args, extra = parser.parse_known_args(argv)
    if args.debug:
        os.environ["UNMASK_DEBUG"] = "1"
    return run_reporting_errors(f"unmask {args.command}",
                                lambda: COMMANDS[args.command].run(args, extra))
