"""Measured peak memory of a training step per preset and batch size, beside
model.sizing.training_memory_estimate.

Each case builds the real Trainer, runs one step (so the optimizer's state exists), then measures
the next one. CUDA: torch.cuda.max_memory_allocated over the step (everything allocated,
including what the run keeps on the device besides the model: validation sets, RoPE tables;
not the CUDA context or the caching allocator's slack). CPU: the parameters and optimizer
state alive before the step plus the highest point of the allocations torch's profiler records
during it (profile_memory=True; the step's own tensors, freed ones subtracted); RSS would
mostly measure glibc's caching. Eager by default (train.compile=false): the estimate
describes eager autograd; `--compile true` shows what compilation saves.

    .venv/bin/python benchmarks/memory.py [--quick] [--presets cpu-demo ...] [--batch-sizes 8 48]

A preset may also be a run's config.json with its dataset, e.g. the book generator's:

    .venv/bin/python benchmarks/memory.py --presets out/book/frankenstein-debug/config.json \
        --data out/book/frankenstein-debug/data --batch-sizes 8 32 --dtype float32
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from common import header
from throughput import bench_config

from unmask.data.dataset import resolve_dataset
from unmask.model import sizing
from unmask.runtime.device import pick_device
from unmask.train.trainer import Trainer

MB = 2**20
CPU_CASES = {"debug": [8, 32], "nanogpt-cpu-lm": [12, 48], "cpu-demo": [8, 48],
             "shakespeare-char": [4, 16]}
CPU_QUICK = {"debug": [8], "nanogpt-cpu-lm": [12], "cpu-demo": [8], "shakespeare-char": [2]}
GPU_CASES = {"cpu-demo": [48, 256], "shakespeare-char": [16, 64, 256], "gpt2-124m": [4, 16]}
GPU_QUICK = {"shakespeare-char": [64], "gpt2-124m": [8]}


def resident_bytes(trainer: Trainer) -> int:
    """Parameters (and any gradients) plus optimizer state: what lives across steps."""
    storages = {}
    tensors = [t for p in trainer.model.parameters() for t in (p, p.grad) if t is not None]
    tensors += [v for state in trainer.optimizer.state.values() for v in state.values()
                if torch.is_tensor(v)]
    for t in tensors:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(storages.values())


def cpu_step_peak(trainer: Trainer) -> int:
    """Resident bytes + the highest running total of the step's CPU allocations."""
    from torch.profiler import ProfilerActivity, profile

    base = resident_bytes(trainer)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        trainer.train_step()
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = [e["args"] for e in json.loads(trace.read_text())["traceEvents"]
                  if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0]
    events.sort(key=lambda a: a.get("Ev Idx", 0))
    running = peak = 0
    for args in events:
        running += args["Bytes"]
        peak = max(peak, running)
    return base + peak


def cuda_step_peak(trainer: Trainer) -> int:
    torch.cuda.synchronize(trainer.device)
    torch.cuda.reset_peak_memory_stats(trainer.device)
    loss, _ = trainer.train_step()
    float(loss)
    torch.cuda.synchronize(trainer.device)
    return torch.cuda.max_memory_allocated(trainer.device)


def at_longest_rows(trainer: Trainer) -> None:
    """The book curriculum trains sentences (short rows) first and running text (the context)
    last: measure its last stage, where a run's peak is. Other objectives: unchanged."""
    objective = trainer.objective
    if hasattr(objective, "active") and hasattr(objective, "state"):
        objective.state.position = len(objective.active) - 1


def measure(name: str, batch: int, args, dataset) -> dict:
    overrides = {"train.batch_size": batch, "train.dtype": args.dtype,
                 "train.compile": args.compile, "train.progress": False,
                 "train.save_checkpoints": False}
    if args.device != "auto":
        overrides["train.device"] = args.device
    cfg = bench_config(name, overrides)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(cfg, dataset, Path(out), log=lambda *_: None)
        trainer.model.train()
        at_longest_rows(trainer)
        trainer.train_step()  # the optimizer's state now exists, as in every later step
        cuda = trainer.device.type == "cuda"
        measured = cuda_step_peak(trainer) if cuda else cpu_step_peak(trainer)
        dtype = str(trainer.amp or torch.float32)[6:]
        optimizer = trainer.cfg.optim.name
        est = sizing.training_memory_estimate(trainer.cfg.model, batch, dtype,
                                              trainer.device.type, optimizer)
        model = trainer.cfg.model
        del trainer
    if cuda:
        torch.cuda.empty_cache()
    return {"preset": name, "batch_size": batch, "dtype": dtype, "compile": args.compile,
            "optimizer": optimizer,
            "estimate_mb": round(est["total"] / MB, 1),
            "estimate_states_mb": round((est["weights"] + est["optimizer"]) / MB, 1),
            "estimate_activations_mb": round(est["activations"] / MB, 1),
            "measured_mb": round(measured / MB, 1),
            "estimate_over_measured": round(est["total"] / measured, 3), "_model": model}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+")
    parser.add_argument("--batch-sizes", nargs="+", type=int,
                        help="the same batch sizes for every preset")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="train.dtype (auto: what training uses)")
    parser.add_argument("--compile", default="false", choices=["auto", "true", "false"])
    parser.add_argument("--data", default="tinyshakespeare")
    args = parser.parse_args()
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    cases = (GPU_QUICK if args.quick else GPU_CASES) if gpu else \
        (CPU_QUICK if args.quick else CPU_CASES)
    if args.presets:
        cases = {p: cases.get(p, [8]) for p in args.presets}
    if args.batch_sizes:
        cases = {p: args.batch_sizes for p in cases}
    header("peak training memory per step: measured vs model.sizing estimate")
    free = sizing.free_memory_bytes(device)
    print(f"device {device}; free memory {free / MB:,.0f} MB" if free else f"device {device}")
    print(f"{'preset':<17} {'batch':>5} {'dtype':<9} {'states':>9} {'activ.':>9} "
          f"{'estimate':>9} {'measured':>9} {'est/meas':>8}")
    dataset = resolve_dataset(args.data)
    results = []
    for name, batches in cases.items():
        for batch in batches:
            row = measure(name, batch, args, dataset)
            model = row.pop("_model")
            results.append(row)
            print(f"{name:<17} {batch:>5} {row['dtype']:<9} {row['estimate_states_mb']:>9.1f} "
                  f"{row['estimate_activations_mb']:>9.1f} {row['estimate_mb']:>9.1f} "
                  f"{row['measured_mb']:>9.1f} {row['estimate_over_measured']:>8.3f}",
                  flush=True)
        if free:
            fit = sizing.max_batch_size(model, free, row["dtype"], device.type,
                                        optimizer=row["optimizer"])
            print(f"{'':<17} largest batch the estimate fits in 85% of free memory: {fit}")
    print("(MB = MiB; states = weights + optimizer state (AdamW's moments, Muon's momentum); "
          "estimate = states + max(activations "
          "+ backward transient, gradients))")
    print("\n" + json.dumps(results))


if __name__ == "__main__":
    main()
