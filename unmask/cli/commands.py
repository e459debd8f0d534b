"""`unmask` command line: each subcommand is a plain function over the library."""

from __future__ import annotations

import json
from pathlib import Path

from unmask.cli.errors import parse_overrides
from unmask.config.presets import resolve_config


def cmd_prepare(args) -> int:
    from unmask.data.dataset import Dataset
    from unmask.data.prepare import prepare

    if args.source == "authors":
        from unmask.data.authors import prepare_authors
        out = prepare_authors(args.out)
    else:
        out = prepare(args.source, args.out, block_size=args.block_size)
    meta = Dataset.load(out).meta
    print(f"prepared {meta['name']} in {out}: {meta['train_tokens']:,} train / "
          f"{meta['val_tokens']:,} val tokens, vocabulary {meta['vocab_size']} "
          f"(+{meta['extended_vocab_size'] - meta['vocab_size']} special)")
    return 0


def cmd_train(args, extra: list[str]) -> int:
    from unmask.data.dataset import resolve_dataset
    from unmask.train.trainer import Trainer

    overrides = parse_overrides(extra)
    if args.data:
        overrides["data"] = args.data
    from unmask.cli.seed_run import train_seed_config
    from unmask.config.seed_names import is_seed_config
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

    from unmask.model.pretrained import load_pretrained
    from unmask.sampling.base import final_state
    from unmask.sampling.causal import generate_causal
    from unmask.sampling.unmasking import sample

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
        from unmask.model.pretrained import (
            checkpoint_mask_logit_bias,
            require_self_correction,
        )
        from unmask.sampling.remask import remask_sample

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
        from unmask.eval.repair import evaluate_repair
        result = evaluate_repair(args.checkpoint, args.repair, data=args.data,
                                 device=args.device, n_passages=args.passages,
                                 change_margin=args.change_margin, flag_bias=args.flag_bias)
    else:
        from unmask.eval.report import evaluate_checkpoint
        result = evaluate_checkpoint(args.checkpoint, data=args.data, device=args.device,
                                     n_samples=args.samples, max_windows=args.max_windows)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    return 0
