"""Training-step time of the cpu-demo model in float32 vs bf16 autocast on this CPU,
eager and (with --compile) under torch.compile.

    .venv/bin/python benchmarks/cpu_precision.py [--width 192] [--batch 48] [--compile]
"""

from __future__ import annotations

import argparse
import time

import torch

from common import header
from unmask.config.schema import ModelConfig
from unmask.model.transformer import Transformer
from unmask.objectives.losses import token_nll


def step_ms(model, opt, x, dtype, steps=8, warmup=3) -> float:
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            logits = model(x)
        token_nll(logits, x, 65).mean().backward()
        opt.step()
        opt.zero_grad()
    return 1000 * (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(model)")
    args = parser.parse_args()
    header("CPU training step: float32 vs bf16 autocast")
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layer=4, n_head=4, n_embd=args.width, block_size=128,
                                    vocab_size=72))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 65, (args.batch, 128))
    variants = [("float32", model, None), ("bfloat16", model, torch.bfloat16)]
    if args.compile:
        compiled = torch.compile(model)
        variants += [("float32 compiled", compiled, None),
                     ("bfloat16 compiled", compiled, torch.bfloat16)]
    for name, module, dtype in variants:
        ms = step_ms(module, opt, x, dtype)
        print(f"{name:>18}: {ms:7.0f} ms/step, {args.batch * 128 / ms * 1000:7.0f} tokens/s")


if __name__ == "__main__":
    main()
