"""`unmask sample`: generate text from a checkpoint."""

from __future__ import annotations

import json

from unmask.cli.errors import reject_extra
from unmask.errors import UserError

NAME = "sample"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="generate text by iterative unmasking")
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



def _texts(pre, tokens, prompt_len: int) -> list[str]:
    return [pre.tokenizer.decode(row[prompt_len:].tolist()) for row in tokens]


def run(args, extra: list[str]) -> int:
    reject_extra(extra)
    import torch

    from unmask.model.pretrained import load_pretrained
    from unmask.sampling.base import final_state
    from unmask.sampling.causal import generate_causal
    from unmask.sampling.unmasking import sample

    pre = load_pretrained(args.checkpoint, args.device)
    s, mode = pre.config.sample, pre.config.model.mode
    if mode == "sequence_classifier":
        raise UserError(f"{pre.path} is a sequence classifier; it classifies, it does not sample")
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
            raise UserError("--policy remask fills the whole span; drop --block-length")
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
