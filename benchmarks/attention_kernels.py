"""Training step time with each attention kernel (`train.attention=sdpa|math`), side by side.

Builds one real Trainer per (job, kernel) -- the `cpu-demo` diffusion run of `make demo`
(batch 48), the self-correction benchmark's run (batch 16) and the language_model baseline at
the demo's shape -- with everything else as training would choose it (precision, threads,
torch.compile), warms each up, then times them in interleaved rounds (the order rotating
each round) so a busy machine slows all alike; medians per trainer. Also prints what the
start-up probe (train.attention_probe) measures for the attention alone and which kernel
`train.attention=auto` would pick.

    .venv/bin/python benchmarks/attention_kernels.py [--steps 30] [--rounds 6] [--jobs demo ...]
        [--dtype float32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from common import header
from throughput import steps_of

from unmask.config.presets import resolve_config
from unmask.data.dataset import resolve_dataset
from unmask.train.attention_probe import faster_kernel, time_kernels
from unmask.train.trainer import Trainer

JOBS = {  # name: overrides of the cpu-demo preset
    "demo": {},
    "self-correction": {"train.objective": "self_correction", "train.batch_size": 16,
                        "self_correction.weight_swap_fill": 1.0},
    "language-model": {"model.mode": "language_model", "train.objective": "auto"},
}
KERNELS = ("sdpa", "math")
SCRATCH = tempfile.TemporaryDirectory(prefix="unmask-attention-")


def build(job: str, kernel: str, dataset, dtype: str) -> Trainer:
    overrides = {**JOBS[job], "train.attention": kernel, "train.progress": False,
                 "train.save_checkpoints": False, "train.dtype": dtype}
    cfg = resolve_config("cpu-demo", overrides)
    return Trainer(cfg, dataset, Path(SCRATCH.name) / f"{job}-{kernel}", log=lambda *_: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", nargs="*", choices=list(JOBS), default=list(JOBS))
    parser.add_argument("--steps", type=int, default=30, help="timed steps per trainer")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--data", default="tinyshakespeare")
    parser.add_argument("--dtype", default="auto",
                        help="train.dtype (auto: the probe's; float32: what a CPU with "
                             "emulated bf16 trains in)")
    args = parser.parse_args()
    header("training step time by attention kernel (train.attention=sdpa|math)")
    dataset = resolve_dataset(args.data)
    trainers = {(job, kernel): build(job, kernel, dataset, args.dtype)
                for job in args.jobs for kernel in KERNELS}
    for trainer in trainers.values():
        trainer.model.train()
        steps_of(trainer, args.warmup)
    chunk = max(1, args.steps // args.rounds)
    per_step: dict[tuple, list[float]] = {key: [] for key in trainers}
    keys = list(trainers)
    for r in range(args.rounds):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            per_step[key].append(steps_of(trainers[key], chunk) / chunk)
    results = []
    for job in args.jobs:
        t = trainers[(job, "sdpa")]
        m = t.cfg.model
        amp = t.amp
        probe = time_kernels(t.cfg.train.batch_size, m.n_head, m.block_size,
                             m.n_embd // m.n_head, m.causal, amp)
        ms = {k: 1000 * statistics.median(per_step[(job, k)]) for k in KERNELS}
        row = {"job": job, "batch": t.cfg.train.batch_size, "causal": m.causal,
               "precision": str(amp or torch.float32).removeprefix("torch."),
               "compiled": hasattr(t.step_model, "_orig_mod"),
               **{f"step_ms_{k}": round(v, 1) for k, v in ms.items()},
               "speedup_math": round(ms["sdpa"] / ms["math"], 3),
               **{f"probe_{k}": round(v, 2) for k, v in probe.items()},
               "auto_picks": faster_kernel(probe)}
        results.append(row)
        print(f"{job:<16} batch {row['batch']:>3} {row['precision']:<9} compiled "
              f"{row['compiled']!s:<5} step sdpa {ms['sdpa']:7.1f} ms, math {ms['math']:7.1f} "
              f"ms ({row['speedup_math']:.2f}x); attention alone (probe): sdpa "
              f"{probe['sdpa_ms']:.2f} ms, math {probe['math_ms']:.2f} ms -> auto picks "
              f"{row['auto_picks']}")
    print(f"[{args.rounds} interleaved rounds of {chunk} steps, medians]")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
