"""Does the start-up precision probe pick the faster CPU precision? (issue "Performance and
scale", item 0)

Prints the probe's own figures and decision for the preset's own block (`unmask.runtime.
precision`, `ProbeShape` of the model, batch and the attention kernels the run may use,
measured afresh, cache untouched), then times the preset's real training step
(`Trainer.train_step`: masking or next-token targets, forward, backward, clipping, AdamW on
Tiny Shakespeare) in float32 and under bf16 autocast, steps interleaved, and says whether the
probe's choice is the faster one. Also: the probe at 1 thread vs all threads, what the rule
decides on the emulated-bf16 Xeon figures of MEASUREMENTS.md, and with --compile the same
step under torch.compile (slow to compile).

    .venv/bin/python benchmarks/cpu_precision.py [--preset cpu-demo] [--steps 5] [--warmup 2]
    .venv/bin/python benchmarks/cpu_precision.py --preset nanogpt-cpu-lm --steps 30
        [--max-iters 20000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import header

from unmask.config.presets import resolve_config
from unmask.data.dataset import Dataset
from unmask.data.prepare import prepare
from unmask.runtime import machine_cache, precision
from unmask.train.speed import cpu_probe_shape
from unmask.train.trainer import Trainer

# MEASUREMENTS.md, Intel Xeon with AVX-512 and emulated bf16: cpu-demo at 12,600 tokens/s in
# float32 and 3,900 tokens/s under bf16 autocast; 6,144 tokens a step.
EMULATED_XEON_MS = (6144 / 12600 * 1000, 6144 / 3900 * 1000)


def cpu_bf16_flags() -> str:
    flags = (machine_cache.cpuinfo_field("flags") or "").split()
    found = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return " ".join(found) or "none of avx512f/avx512_bf16/amx_bf16"


def time_steps(trainers: dict[str, Trainer], steps: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per train_step for each trainer, steps interleaved so noise hits all alike."""
    times = {name: [] for name in trainers}
    for i in range(warmup + steps):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer.train_step()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def build_trainers(preset: str, compile_too: bool, tmp: Path, extra_overrides: dict
                   ) -> dict[str, Trainer]:
    """The preset's trainer in float32 and bf16 (and compiled), on Tiny Shakespeare."""
    variants = {"float32": {"train.dtype": "float32"}, "bfloat16": {"train.dtype": "bfloat16"}}
    if compile_too:
        variants |= {f"{k} compiled": {**v, "train.compile": "true"} for k, v in variants.items()}
    data = prepare("tinyshakespeare", tmp / "ts")
    trainers = {}
    for name, extra in variants.items():
        cfg = resolve_config(preset, {"data": str(data), "train.progress": False,
                                      "train.compile": "false", **extra_overrides,
                                      **extra})
        trainers[name] = Trainer(cfg, Dataset.load(data), tmp / name, log=lambda *_: None)
        trainers[name].model.train()
    return trainers


def report_probe(shape: precision.ProbeShape) -> str:
    """Runs the probe of `shape` afresh, prints its figures; the precision it picks."""
    started = time.perf_counter()
    probe = precision.time_probe(**shape.probe_args())
    probe_s = time.perf_counter() - started
    picked = precision.decide(probe.fp32_ms, probe.bf16_ms)
    print(f"\nprobe of {shape.label()} ({probe_s:.2f} s): float32 {probe.fp32_ms:.1f} ms "
          f"({probe.fp32_attention}), bf16 {probe.bf16_ms:.1f} ms ({probe.bf16_attention}) "
          f"(bf16 speed-up {probe.fp32_ms / probe.bf16_ms:.2f}x, "
          f"margin {precision.BF16_MARGIN:.0%}; repeat spread {probe.spread:.0%}, "
          f"{'steady' if probe.steady else 'UNSTEADY: would not be cached'}) -> {picked}")
    threads = torch.get_num_threads()
    if threads > 1:
        per_thread = precision.time_threads([1, threads], **shape.probe_args())
        print("probe by threads (float32 / bf16): " + ", ".join(
            f"{n}: {t.fp32_ms:.1f} / {t.bf16_ms:.1f} ms" for n, t in per_thread.items()))
    return picked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu-demo", help="the training recipe to time")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--max-iters", type=int,
                        help="the run's length (a long CPU run measures its attention kernel: "
                             "the probe then times both)")
    args = parser.parse_args()
    header(f"CPU precision: the start-up probe vs the real {args.preset} training step")
    print(f"cpu bf16 flags: {cpu_bf16_flags()}; oneDNN claims bf16: "
          f"{precision.onednn_bf16_supported()}")
    print(f"machine key: {precision.machine_key()}")
    xeon = precision.decide(*EMULATED_XEON_MS)
    print(f"rule on the emulated-bf16 Xeon (MEASUREMENTS.md): float32 {EMULATED_XEON_MS[0]:.0f} "
          f"ms, bf16 {EMULATED_XEON_MS[1]:.0f} ms a step -> {xeon}")
    with tempfile.TemporaryDirectory() as tmp:
        length = {"train.max_iters": args.max_iters} if args.max_iters else {}
        trainers = build_trainers(args.preset, args.compile, Path(tmp), length)
        base = trainers["float32"]
        cfg = base.cfg
        picked = report_probe(cpu_probe_shape(cfg, base.device, base.long_run))
        tokens = cfg.train.batch_size * cfg.model.block_size * cfg.train.grad_accum
        print(f"\n{args.preset} train_step ({cfg.model.n_layer}L/{cfg.model.n_embd}, batch "
              f"{cfg.train.batch_size} x context {cfg.model.block_size} = {tokens} tokens), "
              f"{args.steps} timed steps after {args.warmup} warm-up, interleaved:")
        times = time_steps(trainers, args.steps, args.warmup)
    # The fastest step is the one least disturbed by neighbours on a shared machine.
    best = {name: min(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name:>18}: fastest {best[name] * 1e3:6.0f} ms/step ({tokens / best[name]:6.0f} "
              f"tokens/s), median {statistics.median(t) * 1e3:6.0f} ms; steps "
              + ", ".join(f"{s * 1e3:.0f}" for s in t) + " ms")
    faster = min(("float32", "bfloat16"), key=best.get)
    ratio = best["float32"] / best["bfloat16"]
    if picked == faster:
        verdict = "AGREE"
    elif abs(ratio - 1) < precision.BF16_MARGIN:
        verdict = "AGREE (within the margin: either is fine)"
    else:
        verdict = "DISAGREE"
    print(f"\ntraining (fastest steps): bf16 speed-up {ratio:.2f}x, faster = {faster}; "
          f"probe picked {picked}: {verdict}")


if __name__ == "__main__":
    main()
