"""`unmask` command line: each subcommand is a plain function over the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from .checkpoint import CheckpointError
from .config import ConfigError, resolve_config
from .data.dataset import DatasetError
from .data.text import TextError

USER_ERRORS = (ConfigError, TextError, DatasetError, CheckpointError, FileNotFoundError,
               ValueError)


def cmd_prepare(args) -> int:
    from .data.dataset import Dataset
    from .data.prepare import prepare

    if args.source == "authors":
        from .data.authors import prepare_authors
        out = prepare_authors(args.out)
    else:
        out = prepare(args.source, args.out, block_size=args.block_size)
    meta = Dataset.load(out).meta
    print(f"prepared {meta['name']} in {out}: {meta['train_tokens']:,} train / "
          f"{meta['val_tokens']:,} val tokens, vocabulary {meta['vocab_size']} "
          f"(+{meta['extended_vocab_size'] - meta['vocab_size']} special)")
    return 0


def parse_overrides(extra: list[str], example: str = "--optim.lr=3e-4") -> dict[str, str]:
    """`--optim.lr=3e-4` style arguments -> {'optim.lr': '3e-4'}."""
    overrides = {}
    for item in extra:
        if not item.startswith("--") or "=" not in item:
            raise ConfigError(f"unrecognised argument '{item}'; overrides look like {example}")
        key, value = item[2:].split("=", 1)
        overrides[key] = value
    return overrides


def cmd_train(args, extra: list[str]) -> int:
    from .data.dataset import resolve_dataset
    from .trainer import Trainer

    overrides = parse_overrides(extra)
    if args.data:
        overrides["data"] = args.data
    from .seed_compat import is_seed_config, train_seed_config  # seeds 000/001 config files
    if args.config and is_seed_config(args.config):
        result = train_seed_config([args.config], overrides, out=args.out, resume=args.resume)
        print(json.dumps(result))
        return 0
    cfg = resolve_config(args.config, overrides)
    out = Path(args.out or f"out/{Path(args.config or 'cpu-demo').stem}")
    dataset = resolve_dataset(cfg.data)
    result = Trainer(cfg, dataset, out, resume=args.resume).run()
    print(json.dumps(result))
    return 0


def _texts(pre, tokens, prompt_len: int) -> list[str]:
    return [pre.tokenizer.decode(row[prompt_len:].tolist()) for row in tokens]


def cmd_sample(args) -> int:
    import torch

    from .pretrained import load_pretrained
    from .sampling import final_state, generate_causal, sample

    pre = load_pretrained(args.checkpoint, args.device)
    s, mode = pre.config.sample, pre.config.model.mode
    if mode == "sequence_classifier":
        raise ValueError(f"{pre.path} is a sequence classifier; it classifies, it does not sample")
    common = dict(
        vocab_size=pre.tokenizer.vocab_size, mask_id=pre.tokenizer.mask_id,
        num_samples=args.num_samples or s.num_samples,
        temperature=s.temperature if args.temperature is None else args.temperature,
        top_k=s.top_k if args.top_k is None else args.top_k,
        top_p=s.top_p if args.top_p is None else args.top_p,
        generator=torch.Generator().manual_seed(args.seed))
    policy = args.policy or s.policy
    if policy == "remask":
        from .remask_sampler import remask_sample
        from .self_correction_task import checkpoint_mask_logit_bias, require_self_correction

        require_self_correction(pre.config, pre.path, "--policy remask")
        if args.block_length:
            raise ValueError("--policy remask fills the whole span; drop --block-length")
        prompt = args.prompt
        prompt_ids = pre.tokenizer.encode(prompt) if prompt else []
        length = args.length or min(s.length, pre.config.model.block_size - len(prompt_ids))
        tokens = remask_sample(
            pre.model, wrong_id=pre.tokenizer.special_tokens["wrong_token_id"], length=length,
            prompt_ids=prompt_ids, steps=args.steps or s.steps,
            remask_target=pre.config.self_correction.remask_target,
            mask_logit_bias=checkpoint_mask_logit_bias(pre.path, pre.config), **common)
    elif mode == "language_model":
        prompt = args.prompt or "\n"
        prompt_ids = pre.tokenizer.encode(prompt)
        length = args.length or s.length
        tokens = final_state(generate_causal(pre.model, length=length, prompt_ids=prompt_ids,
                                             **common)).tokens
    else:
        prompt = args.prompt
        prompt_ids = pre.tokenizer.encode(prompt) if prompt else []
        length = args.length or min(s.length, pre.config.model.block_size - len(prompt_ids))
        tokens = sample(pre.model, length=length, prompt_ids=prompt_ids,
                        steps=args.steps or s.steps, policy=policy,
                        block_length=s.block_length if args.block_length is None
                        else args.block_length, **common)
    texts = [prompt + t for t in _texts(pre, tokens, len(prompt_ids))]
    if args.json:
        print(json.dumps({"checkpoint": pre.path, "samples": texts}, ensure_ascii=False))
    else:
        for i, text in enumerate(texts):
            print(f"--- sample {i + 1} ---\n{text}")
    return 0


def cmd_eval(args) -> int:
    if args.repair is not None:
        from .repair_eval import evaluate_repair
        result = evaluate_repair(args.checkpoint, args.repair, data=args.data,
                                 device=args.device, n_passages=args.passages,
                                 change_margin=args.change_margin, flag_bias=args.flag_bias)
    else:
        from .evaluate import evaluate_checkpoint
        result = evaluate_checkpoint(args.checkpoint, data=args.data, device=args.device,
                                     n_samples=args.samples, max_windows=args.max_windows)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    return 0


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


def run_reporting_errors(prog: str, command: Callable[[], int]) -> int:
    """Run a command; a user error becomes one line on stderr and exit status 2, Ctrl-C 130.

    Checkpoints are written atomically, so an interrupted run loses nothing already saved.
    """
    try:
        return command()
    except USER_ERRORS as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last saved checkpoint is intact", file=sys.stderr)
        return 130


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


if __name__ == "__main__":
    sys.exit(main())
