"""`unmask train`: train a model from a preset, a config file or a seed-style flat config."""

from __future__ import annotations

import json
from pathlib import Path

from unmask.cli.errors import parse_overrides
from unmask.config.presets import resolve_config

NAME = "train"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="train a model (extra --section.key=value overrides allowed)")
    p.add_argument("config", nargs="?", help="preset (cpu-demo, shakespeare-char, debug) or "
                                             "config file (.json / .py)")
    p.add_argument("--data", help="prepared dataset dir, corpus name or text file")
    p.add_argument("--out", help="run directory (default out/<preset>)")
    p.add_argument("--resume", help="'auto' (continue RUN/latest if present) or a checkpoint dir")
    p.add_argument("--dry-run", action="store_true",
                   help="resolve the config, build the model, time a few steps and print the "
                        "estimated time per step and for the whole run; writes nothing")



def run(args, extra: list[str]) -> int:
    """Train; under `torchrun --nproc_per_node=N -m unmask train ...` each process is one
    DDP rank (rank 0 prepares data first, logs, saves and prints the summary)."""
    from unmask.cli.seed_run import train_seed_config
    from unmask.config.seed_names import is_seed_config
    from unmask.data.dataset import resolve_dataset
    from unmask.runtime.distributed import barrier, init_from_env, is_main, shutdown
    from unmask.train.trainer import Trainer

    overrides = parse_overrides(extra)
    if args.data:
        overrides["data"] = args.data
    init_from_env()
    main = is_main()
    try:
        if args.config and is_seed_config(args.config):
            result = train_seed_config([args.config], overrides, out=args.out,
                                       resume=args.resume)
        else:
            cfg = resolve_config(args.config, overrides)
            out = Path(args.out or f"out/{Path(args.config or 'cpu-demo').stem}")
            if is_main():
                resolve_dataset(cfg.data)  # prepares a corpus once, before the other ranks read it
            barrier()
            trainer = Trainer(cfg, resolve_dataset(cfg.data), out, resume=args.resume)
            if args.dry_run:
                from unmask.train.dry_run import dry_run

                print(json.dumps({"config": trainer.cfg.to_dict()}, indent=1))
                result = {"dry_run": True, **dry_run(trainer)}
            else:
                result = trainer.run()
    finally:
        shutdown()
    if main:
        print(json.dumps(result))
    return 0
