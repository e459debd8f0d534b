"""`unmask info`: what this machine offers a run, and whether a model trains on it at all.

Prints the devices (CUDA GPUs with their free memory and peak FLOP/s, MPS, the CPU), the
torch / CUDA / cuDNN versions, the CPU model, cores and torch threads, free memory, the
precision `train.dtype=auto` would choose, what the CPU probes measured on this machine
(precision, threads, torch.compile: runtime.machine_cache), and then a self-test: a tiny
Transformer's forward and backward on the chosen device, in that precision, timed. Exit
status 1 when the self-test fails, so a job script can stop before a long run would.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time

NAME = "info"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="describe devices, versions, memory and precision, and "
                                  "run a forward/backward self-test")
    p.add_argument("--device", default="auto", help="device to self-test (default: auto = "
                                                    "cuda > mps > cpu)")
    p.add_argument("--dtype", default="auto", help="precision to self-test (default: auto, "
                                                   "what training would choose)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--blocking", action="store_true",
                   help="set CUDA_LAUNCH_BLOCKING=1 first: CUDA kernels run synchronously, so "
                        "a failing kernel raises at the line that launched it (a true "
                        "traceback) instead of at some later sync; much slower, for debugging")


def _meminfo() -> dict[str, int]:
    """MemTotal / MemAvailable in bytes: /proc/meminfo, else psutil when installed."""
    found = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    found[key] = int(rest.split()[0]) * 1024  # kB
    except OSError:
        try:
            import psutil  # optional: not a dependency
        except ImportError:
            return {}
        vm = psutil.virtual_memory()
        found = {"MemTotal": int(vm.total), "MemAvailable": int(vm.available)}
    return {"memory_total_bytes": found.get("MemTotal"),
            "memory_free_bytes": found.get("MemAvailable")}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cuda_devices() -> list[dict]:
    import torch

    from unmask.model.sizing import peak_flops_for_name

    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        devices.append({"index": i, "name": props.name,
                        "capability": f"{props.major}.{props.minor}",
                        "memory_total_bytes": int(total), "memory_free_bytes": int(free),
                        "bf16": torch.cuda.is_bf16_supported(),
                        "peak_flops_bf16": peak_flops_for_name(props.name)})
    return devices


def describe_machine() -> dict:
    """Versions, devices and memory (no computation beyond asking the drivers)."""
    import torch

    import unmask

    mps = getattr(torch.backends, "mps", None)
    cuda = torch.cuda.is_available()
    return {
        "unmask": unmask.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,  # None on a CPU-only build
        "cuda_available": cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "mps_built": bool(mps and mps.is_built()),
        "mps_available": bool(mps and mps.is_available()),
        "cuda_launch_blocking": os.environ.get("CUDA_LAUNCH_BLOCKING") == "1",
        "cpu": {"model": _cpu_model(), "cores": os.cpu_count(),
                "torch_threads": torch.get_num_threads(), **_meminfo()},
        "cuda_devices": _cuda_devices() if cuda else [],
    }


def self_test(device, amp_dtype) -> dict:
    """Forward and backward of a tiny Transformer on `device` under `amp_dtype` autocast
    (None = float32): passed when it runs and the loss and every gradient are finite."""
    import torch
    import torch.nn.functional as F

    from unmask.config.schema import ModelConfig
    from unmask.model.transformer import Transformer
    from unmask.runtime.device import autocast

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    result = {"device": str(device), "passed": False, "seconds": None, "error": None}
    start = time.perf_counter()
    try:
        gen = torch.Generator().manual_seed(0)
        cfg = ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=32)
        with torch.random.fork_rng(devices=[]):  # the same weights every time; caller's RNG kept
            torch.manual_seed(0)
            model = Transformer(cfg).to(device)
        tokens = torch.randint(0, cfg.vocab_size, (4, cfg.block_size), generator=gen).to(device)
        with autocast(device, amp_dtype):
            logits = model(tokens)  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), tokens.flatten())
        loss.backward()
        sync()
        grads_finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters()
                           if p.grad is not None)
        value = float(loss.detach())
        result["loss"] = round(value, 4)
        if not torch.isfinite(loss.detach()):
            result["error"] = f"non-finite loss {value}"
        elif not grads_finite:
            result["error"] = "non-finite gradients"
        else:
            result["passed"] = True
    except Exception as err:  # a broken driver or kernel is exactly what this reports
        result["error"] = f"{type(err).__name__}: {err}"
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def _human(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 2**30:.1f} GiB"


def _print_text(info: dict) -> None:
    cpu = info["cpu"]
    print(f"unmask {info['unmask']}, Python {info['python']}, {info['platform']}")
    mps = "available" if info["mps_available"] else \
        "built, unavailable" if info["mps_built"] else "not built"
    print(f"torch {info['torch']}, CUDA build {info['cuda_build'] or 'none'}"
          + (f", cuDNN {info['cudnn']}" if info["cudnn"] else "") + f", MPS {mps}")
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, torch threads {cpu['torch_threads']}, "
          f"memory free {_human(cpu.get('memory_free_bytes'))} of "
          f"{_human(cpu.get('memory_total_bytes'))}")
    for d in info["cuda_devices"]:
        peak = f"{d['peak_flops_bf16'] / 1e12:.0f} TFLOP/s bf16" if d["peak_flops_bf16"] \
            else "peak unknown (set UNMASK_PEAK_FLOPS)"
        print(f"cuda:{d['index']}: {d['name']} (sm {d['capability']}), memory free "
              f"{_human(d['memory_free_bytes'])} of {_human(d['memory_total_bytes'])}, {peak}")
    if info["cuda_launch_blocking"]:
        print("CUDA_LAUNCH_BLOCKING=1: kernels run synchronously (errors point at their line)")
    print(f"device {info['device']}: {info['precision']['description']}")
    for name, entries in info["cpu_probe_cache"].items():
        for label, figures in entries.items():
            unit = " (ms at N threads)" if name == "threads" else ""
            shown = ", ".join(f"{k}={v}" for k, v in figures.items() if k != "date")
            print(f"cached {name} probe{unit}, {figures.get('date', '?')}: {label}: {shown}")
    test = info["self_test"]
    if test["passed"]:
        print(f"self-test passed: forward + backward on {test['device']} in "
              f"{test['seconds']:.3f} s (loss {test['loss']:.4f})")


def run(args, extra: list[str]) -> int:
    from unmask.cli.errors import reject_extra

    reject_extra(extra)
    if args.blocking:
        # Read once, when CUDA initialises: set before anything touches torch.cuda.
        os.environ["CUDA_LAUNCH_BLOCKING"] = "1"
    from unmask.runtime import machine_cache
    from unmask.runtime.device import choose_precision, pick_device

    info = describe_machine()
    device = pick_device(args.device)
    precision = choose_precision(device, args.dtype)
    info["device"] = str(device)
    info["precision"] = {"dtype": precision.dtype, "source": precision.source,
                         "description": precision.describe()}
    info["cpu_probe_cache"] = {name: machine_cache.this_machine(name)
                               for name in ("precision", "threads", "compile", "attention")}
    info["self_test"] = self_test(device, precision.autocast)
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        _print_text(info)
    test = info["self_test"]
    if not test["passed"]:
        print(f"unmask info: self-test FAILED on {test['device']} "
              f"({info['precision']['dtype']}): {test['error']}", file=sys.stderr)
        return 1
    return 0
