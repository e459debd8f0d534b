"""Training throughput and MFU: the diffusion objective (mdlm) beside the language_model
objective on the same architecture and batch, with the real Trainer.

Both trainers are built first, warmed up, then timed in interleaved rounds (alternating which
goes first), so a busy machine slows both alike; the ratio diffusion / LM step time uses the
median round of each. Presets: `cpu-demo` on a CPU; `shakespeare-char` and a GPT-2-small
shape (`gpt2-124m`: 12 layers, 12 heads, 768 wide, context 1024, defined here) on a GPU.
MFU needs a peak: a known GPU's bf16 dense peak (model.sizing.PEAK_FLOPS), or
UNMASK_PEAK_FLOPS=<FLOP/s>; FLOPs per token are model.sizing.flops_per_token (6N + 12LHQT,
the full attention counted for the causal model too, as nanoGPT does).

`--nanogpt PATH` also times a nanoGPT checkout's own train.py with its CPU recipe beside the
project's `nanogpt-cpu-lm` preset (both float32: nanoGPT trains in float32 on a CPU). If its
data is not prepared yet, the shipped Tiny Shakespeare is copied in as input.txt first (the
same file nanoGPT downloads), so nothing is fetched.

    .venv/bin/python benchmarks/throughput.py [--quick] [--steps N] [--presets cpu-demo ...]
    .venv/bin/python benchmarks/throughput.py --nanogpt ~/src/nanoGPT
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import header

from unmask.config.presets import resolve_config
from unmask.config.schema import ModelConfig, OptimConfig, RunConfig, TrainConfig, apply_overrides
from unmask.data.dataset import resolve_dataset
from unmask.model import sizing
from unmask.runtime.device import pick_device
from unmask.train.trainer import Trainer

CPU_RATIO_TARGET = 1.05  # the target: diffusion step time <= 1.05 x the LM's on CPU
SCRATCH = tempfile.TemporaryDirectory(prefix="unmask-bench-")  # run dirs (nothing is saved)


def preset_gpt2_124m() -> RunConfig:
    """GPT-2 small's shape (nanoGPT's train_gpt2.py): 12 layers, 12 heads, 768 wide, context
    1024; ~85M parameters with a character vocabulary (124M with GPT-2's 50,257 tokens)."""
    return RunConfig(
        model=ModelConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024, dropout=0.0),
        optim=OptimConfig(lr=6e-4, min_lr=6e-5, warmup_iters=100, weight_decay=0.1,
                          beta2=0.95, grad_clip=1.0),
        train=TrainConfig(max_iters=5000, batch_size=16, eval_interval=500, eval_batches=8,
                          log_interval=10),
    )


BENCH_PRESETS = {"gpt2-124m": preset_gpt2_124m}


def bench_config(name: str, overrides: dict) -> RunConfig:
    """A project preset (config.presets) or one of this file's, with overrides."""
    if name in BENCH_PRESETS:
        return apply_overrides(BENCH_PRESETS[name](), overrides)
    return resolve_config(name, overrides)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps_of(trainer: Trainer, n: int) -> float:
    """Seconds for `n` steps of the training loop's work (lr, step, counters), device synced."""
    sync(trainer.device)
    start = time.perf_counter()
    for _ in range(n):
        trainer.set_lr()
        loss, _ = trainer.train_step()
        trainer.counters.step += 1
    float(loss)  # waits for the device
    sync(trainer.device)
    return time.perf_counter() - start


def build(name: str, mode: str, args, dataset) -> Trainer:
    overrides = {"model.mode": mode, "train.progress": False, "train.save_checkpoints": False,
                 "train.dtype": args.dtype, "train.objective": "auto"}
    if args.device != "auto":
        overrides["train.device"] = args.device
    if args.compile:
        overrides["train.compile"] = args.compile
    if args.batch_size:
        overrides["train.batch_size"] = args.batch_size
    if args.threads:
        overrides["train.threads"] = args.threads
    cfg = bench_config(name, overrides)
    return Trainer(cfg, dataset, Path(SCRATCH.name) / f"{name}-{mode}", log=lambda *_: None)


def compare(name: str, args, dataset, peak: float | None) -> dict:
    """Time mdlm and causal_lm trainers of preset `name` side by side."""
    trainers = {"mdlm": build(name, "token_classifier", args, dataset),
                "causal_lm": build(name, "language_model", args, dataset)}
    first = trainers["mdlm"]
    m, t = first.cfg.model, first.cfg.train
    print(f"\n## {name}: {m.n_layer} layers, {m.n_head} heads, {m.n_embd} wide, context "
          f"{m.block_size}, batch {t.batch_size} x accum {t.grad_accum} "
          f"({first.tokens_per_step:,} tokens/step), "
          f"{sizing.parameter_breakdown(m)['total'] / 1e6:.2f}M parameters")
    print(f"device {first.device}, precision {str(first.amp or torch.float32)[6:]}, "
          f"compile {t.compile}, threads {torch.get_num_threads()}")
    for trainer in trainers.values():
        trainer.model.train()
        steps_of(trainer, args.warmup)
    chunk = max(1, args.steps // args.rounds)
    per_step: dict[str, list[float]] = {k: [] for k in trainers}
    for r in range(max(1, args.steps // chunk)):
        order = list(trainers) if r % 2 == 0 else list(trainers)[::-1]
        for key in order:
            per_step[key].append(steps_of(trainers[key], chunk) / chunk)
    rows = {}
    print(f"{'objective':<12} {'ms/step':>9} {'(mean)':>9} {'tokens/s':>10} "
          f"{'MFLOP/token':>12} {'TFLOP/s':>8} {'MFU':>7}")
    for key, trainer in trainers.items():
        step_s = statistics.median(per_step[key])
        tok_s = trainer.tokens_per_step / step_s
        flops = sizing.flops_per_token(trainer.cfg.model)
        mfu = sizing.mfu(tok_s, trainer.cfg.model, peak) if peak else None
        rows[key] = {"ms_per_step": round(1000 * step_s, 2),
                     "ms_per_step_mean": round(1000 * statistics.fmean(per_step[key]), 2),
                     "tokens_per_second": round(tok_s), "flops_per_token": flops,
                     "tflops_per_second": round(tok_s * flops / 1e12, 4),
                     "mfu": None if mfu is None else round(mfu, 4)}
        row = rows[key]
        print(f"{key:<12} {row['ms_per_step']:>9.2f} {row['ms_per_step_mean']:>9.2f} "
              f"{row['tokens_per_second']:>10,} {flops / 1e6:>12.2f} "
              f"{row['tflops_per_second']:>8.3f} "
              f"{'n/a' if mfu is None else f'{100 * mfu:.1f}%':>7}")
    ratio = rows["mdlm"]["ms_per_step"] / rows["causal_lm"]["ms_per_step"]
    target = ""
    if first.device.type == "cpu":
        target = (f" (target on CPU <= {CPU_RATIO_TARGET}: "
                  f"{'met' if ratio <= CPU_RATIO_TARGET else 'NOT met'})")
    print(f"diffusion / LM step time: {ratio:.3f}{target}  "
          f"[{len(per_step['mdlm'])} interleaved rounds of {chunk} steps, medians]")
    return {"preset": name, "tokens_per_step": first.tokens_per_step,
            "device": str(first.device), "precision": str(first.amp or torch.float32)[6:],
            **{f"{k}_{field}": v for k, row in rows.items() for field, v in row.items()},
            "diffusion_over_lm_step_time": round(ratio, 3)}


# ----------------------------------------------------------------------------- nanoGPT

NANOGPT_RECIPE = ["--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1",
                  "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
                  "--n_embd=128", "--dropout=0.0"]
ITER_LINE = re.compile(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms", re.MULTILINE)


def nanogpt_ms_per_iter(path: Path, iters: int, skip: int,
                        threads: int | None = None) -> tuple[float, list[str]]:
    """Median ms per iteration of nanoGPT's train.py (its CPU recipe), after `skip`."""
    data = path / "data" / "shakespeare_char"
    if not (data / "train.bin").is_file():
        if not (data / "input.txt").is_file():  # what prepare.py would download
            corpus = Path(__file__).resolve().parents[1] / "unmask/text/corpora/tinyshakespeare.txt"
            shutil.copyfile(corpus, data / "input.txt")
        with tempfile.TemporaryDirectory() as stub:
            # prepare.py imports requests for its download; input.txt is there, so a stand-in
            # that refuses to fetch lets it run without the package (and without a network).
            Path(stub, "requests.py").write_text(
                "def get(*args, **kwargs):\n"
                "    raise RuntimeError('benchmarks/throughput.py fetches nothing')\n")
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                [stub, os.environ.get("PYTHONPATH", "")])}
            done = subprocess.run([sys.executable, "prepare.py"], cwd=data, env=env,
                                  capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(f"nanoGPT's prepare.py failed:\n{done.stderr[-2000:]}")
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", *NANOGPT_RECIPE,
               f"--max_iters={iters}", f"--lr_decay_iters={iters}", f"--out_dir={out}"]
        env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
        done = subprocess.run(cmd, cwd=path, env=env, capture_output=True, text=True,
                              check=False)
    if done.returncode:
        raise SystemExit(f"nanoGPT's train.py failed ({done.returncode}):\n{done.stderr[-2000:]}")
    times = [float(ms) for it, ms in ITER_LINE.findall(done.stdout) if int(it) >= skip]
    if not times:
        raise SystemExit("no 'iter N: ... time Xms' lines in nanoGPT's output")
    return statistics.median(times), cmd


NANOGPT_TARGET = 1.1  # the target: our tokens/s >= 1.1 x nanoGPT's, same recipe


def ours_ms_per_iter(compile_: str, iters: int, skip: int, threads: int | None,
                     data: str) -> float:
    """Median ms per step of the project's `nanogpt-cpu-lm` (float32, as nanoGPT trains on a
    CPU), after `skip` steps (and compiling), timed in this process."""
    cfg = resolve_config("nanogpt-cpu-lm", {"train.dtype": "float32", "train.progress": False,
                                            "train.save_checkpoints": False,
                                            "train.compile": compile_,
                                            "train.threads": threads or 0})
    trainer = Trainer(cfg, resolve_dataset(data),
                      Path(SCRATCH.name) / f"nanogpt-cpu-lm-{compile_}", log=lambda *_: None)
    trainer.model.train()
    steps_of(trainer, skip)
    return 1000 * statistics.median(steps_of(trainer, 1) for _ in range(iters - skip))


def ours_in_a_new_process(compile_: str, iters: int, skip: int, threads: int | None,
                          data: str) -> float:
    """`ours_ms_per_iter` in a fresh interpreter, as nanoGPT's train.py runs in one: on this
    VM the same step differs by up to ~20 % from one process to the next, so each round
    samples a new process for every contender."""
    cmd = [sys.executable, __file__, "--ours-worker", compile_, "--nanogpt-iters", str(iters),
           "--data", data]
    if threads:
        cmd += ["--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"the nanogpt-cpu-lm worker failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def nanogpt_comparison(path: Path, args) -> dict:
    """nanoGPT's train.py and our eager and compiled steps, each in a new process, in
    `args.nanogpt_rounds` interleaved rounds (a machine whose speed drifts slows all three
    alike); medians of the rounds."""
    iters = args.nanogpt_iters
    print(f"\n## nanoGPT CPU recipe ({path}) beside `nanogpt-cpu-lm`, float32, "
          f"{args.nanogpt_rounds} interleaved rounds of {iters} iterations, a new process each")
    skip = max(3, iters // 10)
    times: dict[str, list[float]] = {"nanoGPT": [], "eager": [], "compiled": []}
    for r in range(args.nanogpt_rounds):
        order = list(times) if r % 2 == 0 else list(times)[::-1]
        for key in order:
            if key == "nanoGPT":
                ms, cmd = nanogpt_ms_per_iter(path, iters, skip, args.threads)
            else:
                ms = ours_in_a_new_process("true" if key == "compiled" else "false", iters,
                                           skip, args.threads, args.data)
            times[key].append(ms)
    print(f"nanoGPT command (in {path}): python {' '.join(cmd[1:])}")
    ms = {key: statistics.median(values) for key, values in times.items()}
    tokens = 12 * 64
    print(f"{'':<28} {'ms/iter':>9} {'tokens/s':>10} {'x nanoGPT':>10}  rounds (ms/iter)")
    for key, value in ms.items():
        name = key if key == "nanoGPT" else f"nanogpt-cpu-lm {key}"
        print(f"{name:<28} {value:>9.2f} {round(tokens / value * 1000):>10,} "
              f"{ms['nanoGPT'] / value:>10.3f}  {', '.join(f'{t:.1f}' for t in times[key])}")
    for key in ("eager", "compiled"):
        speed = ms["nanoGPT"] / ms[key]
        print(f"{key}: {speed:.3f} x nanoGPT's tokens/s (target >= {NANOGPT_TARGET}: "
              f"{'met' if speed >= NANOGPT_TARGET else 'NOT met'})")
    print(f"medians of iterations >= {skip} of each process (the compiled one's compiling "
          "excluded), then the median round")
    return {"nanogpt_ms_per_iter": round(ms["nanoGPT"], 2),
            **{f"ours_{k}_ms_per_iter": round(ms[k], 2) for k in ("eager", "compiled")},
            **{f"ours_{k}_speed_over_nanogpt": round(ms["nanoGPT"] / ms[k], 3)
               for k in ("eager", "compiled")}, "rounds": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="*", help="default: cpu-demo on CPU; "
                        "shakespeare-char and gpt2-124m on a GPU; none: only --nanogpt")
    parser.add_argument("--steps", type=int, help="timed steps per objective (default 40 on "
                        "CPU, 50 on GPU; --quick: 8)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 3 on CPU, "
                        "10 on GPU: torch.compile; --quick: 2 / 5)")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds")
    parser.add_argument("--quick", action="store_true", help="a check that it works (seconds)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="train.dtype (auto: what training uses)")
    parser.add_argument("--compile", choices=["auto", "true", "false"])
    parser.add_argument("--batch-size", type=int, help="override every preset's batch size")
    parser.add_argument("--threads", type=int, help="train.threads (default: torch's; on a "
                        "busy machine 1 thread avoids OpenMP contention)")
    parser.add_argument("--data", default="tinyshakespeare")
    parser.add_argument("--nanogpt", type=Path, help="a nanoGPT checkout to time beside ours")
    parser.add_argument("--nanogpt-iters", type=int, default=200)
    parser.add_argument("--nanogpt-rounds", type=int, default=5)
    parser.add_argument("--ours-worker", choices=["true", "false"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours_worker:  # one timed process of nanogpt_comparison
        skip = max(3, args.nanogpt_iters // 10)
        print(ours_ms_per_iter(args.ours_worker, args.nanogpt_iters, skip, args.threads,
                               args.data))
        return
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    args.steps = args.steps or (8 if args.quick else 50 if gpu else 40)
    args.warmup = args.warmup if args.warmup is not None else (
        (5 if gpu else 2) if args.quick else (10 if gpu else 3))
    if args.quick:
        args.nanogpt_iters, args.nanogpt_rounds = min(args.nanogpt_iters, 30), 1
    presets = args.presets if args.presets is not None else (
        ["shakespeare-char", "gpt2-124m"] if gpu else ["cpu-demo"])
    header("training throughput: diffusion (mdlm) vs language_model, same shape and batch")
    peak = sizing.device_peak_flops(device)
    if peak:
        source = (sizing.PEAK_FLOPS_ENV if os.environ.get(sizing.PEAK_FLOPS_ENV)
                  else f"bf16 dense peak of {torch.cuda.get_device_name(device)}")
        print(f"peak used for MFU: {peak / 1e12:.1f} TFLOP/s ({source})")
    elif gpu:
        print(f"no peak known for {torch.cuda.get_device_name(device)}: MFU not reported "
              f"(set UNMASK_PEAK_FLOPS=<FLOP/s>)")
    else:
        print("no peak known on CPU: MFU not reported (set UNMASK_PEAK_FLOPS=<FLOP/s> to "
              "report one)")
    dataset = resolve_dataset(args.data)
    results = [compare(name, args, dataset, peak) for name in presets]
    if args.nanogpt:
        results.append(nanogpt_comparison(args.nanogpt.expanduser(), args))
    else:
        print("\nnanoGPT comparison skipped; to run it: git clone "
              "https://github.com/karpathy/nanoGPT, then\n  .venv/bin/python "
              "benchmarks/throughput.py --nanogpt PATH/TO/nanoGPT")
    print("\n" + json.dumps(results))


if __name__ == "__main__":
    main()
