"""torch.compile on CPU where it pays, decided by measuring the model (`train.compile=auto`).

On a CPU, compiling fuses the small elementwise passes of RoPE, RMSNorm and SwiGLU: on the
AMD EPYC here the `cpu-demo` step went from 652 to 561 ms and nanoGPT's 4 x 128 recipe from 47
to 38 ms (BENCHMARKS.md). But compiling costs ~30 s the first time on a machine (a few seconds
once inductor's on-disk cache is warm), and on another CPU it may not help at all. So for a
run long enough to matter (`LONG_RUN_FLOPS`), the first start on a machine times the real
model, eager and compiled (forward + backward on the training batch's shape, gradients
dropped, the global RNG untouched), and keeps the compiled model when its step is at least
`COMPILE_MARGIN` faster. The figures (eager ms, compiled ms, seconds to compile) are cached
per machine and model shape (runtime.machine_cache, `compile.json`); later starts decide from
the cache without measuring: compile when the remaining steps save more time than the last
compile took.

Order of authority: `train.compile=true|false` > CUDA (always compiles) > the cache > a new
measurement. Short runs, other devices and multi-process runs stay eager.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from unmask.runtime import machine_cache

COMPILE_MARGIN = 0.05  # the compiled step must save >= 5 % to be worth a changed kernel set
LONG_RUN_FLOPS = 1e13  # ~1-2 minutes of 2 CPU cores: shorter runs never pay a cold compile
PROBE_VERSION = 1  # part of the cache key: bump when the measurement changes
CACHE_NAME = "compile"
FIELDS = ("eager_ms", "compiled_ms", "compile_s")  # what the cache keeps per key


@dataclass(frozen=True)
class CompileChoice:
    """Whether the training step runs compiled, and why (loggable with `describe()`)."""

    compile: bool
    source: str  # explicit | cuda | short-run | distributed | device | measured | cached
    eager_ms: float | None = None
    compiled_ms: float | None = None
    compile_s: float | None = None
    steps: int = 0  # remaining steps the decision weighed

    def describe(self) -> str:
        text = f"torch.compile {'on' if self.compile else 'off'} ({self.source}"
        if self.eager_ms is not None and self.compiled_ms is not None:
            text += (f": step eager {self.eager_ms:.1f} ms, compiled {self.compiled_ms:.1f} ms"
                     f" ({self.eager_ms / self.compiled_ms:.2f}x), compiling took "
                     f"{self.compile_s:.1f} s, {self.steps} steps to go")
        return text + ")"


def saves_time(eager_ms: float, compiled_ms: float, compile_s: float, steps: int,
               margin: float = COMPILE_MARGIN) -> bool:
    """Compiled steps at least `margin` faster, and `steps` of them save more than compiling
    costs."""
    faster = compiled_ms <= (1.0 - margin) * eager_ms
    return faster and steps * (eager_ms - compiled_ms) / 1000.0 > compile_s


def time_steps(model: torch.nn.Module, tokens: torch.Tensor, amp: torch.dtype | None,
               reps: int) -> list[float]:
    """Milliseconds of `reps` forward + backward passes of `model` on `tokens`.

    The gradients are dropped afterwards, and the global RNG (dropout) and the buffers
    (BatchNorm statistics) restored, so a run that measured trains exactly as one that did not.
    """
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    times = []
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        for _ in range(reps):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
                out = model(tokens)
            out.float().mean().backward()
            times.append(1000 * (time.perf_counter() - start))
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    for p in model.parameters():
        p.grad = None
    return times


def _first_call_s(compiled: torch.nn.Module, tokens: torch.Tensor, amp: torch.dtype | None,
                  eager_ms: float) -> float:
    """Seconds the first compiled step took beyond an eager one: what compiling cost."""
    return max(0.0, (time_steps(compiled, tokens, amp, 1)[0] - eager_ms) / 1000.0)


def undecided(wanted: str, device: torch.device, distributed: bool,
              long_run: bool) -> CompileChoice | None:
    """The choice wherever no measurement is needed; None: measure (`cpu_compile`)."""
    if wanted in ("true", "false"):
        return CompileChoice(wanted == "true", "explicit")
    if device.type == "cuda":
        return CompileChoice(True, "cuda")
    if device.type != "cpu":
        return CompileChoice(False, "device")
    if distributed:  # ranks sharing the CPU would time each other; stay eager
        return CompileChoice(False, "distributed")
    if not long_run:
        return CompileChoice(False, "short-run")
    return None


def _key(label: str) -> str:
    return f"{machine_cache.machine_key()} | compile probe v{PROBE_VERSION} | {label}"


def cpu_compile(model: torch.nn.Module, tokens: torch.Tensor, amp: torch.dtype | None,
                steps: int, label: str, reps: int = 3
                ) -> tuple[CompileChoice, torch.nn.Module]:
    """The choice for a long CPU run of `steps` more steps, and the module to train with
    (compiled already when compiling was measured now and chosen). `label` names the model
    shape and batch for the cache."""
    key = _key(label)
    hit = machine_cache.lookup(CACHE_NAME, key, FIELDS)
    if hit is not None:
        eager_ms, compiled_ms, compile_s = (hit[field] for field in FIELDS)
        if not saves_time(eager_ms, compiled_ms, compile_s, steps):
            return CompileChoice(False, "cached", eager_ms, compiled_ms, compile_s, steps), model
        compiled = torch.compile(model)  # compile now, to time it: the next start weighs that
        compile_s = _first_call_s(compiled, tokens, amp, eager_ms)
        machine_cache.write_cache(CACHE_NAME, key, dict(zip(FIELDS, (eager_ms, compiled_ms,
                                                                     compile_s))))
        return CompileChoice(True, "cached", eager_ms, compiled_ms, compile_s, steps), compiled
    time_steps(model, tokens, amp, 1)  # warm-up
    eager_ms = min(time_steps(model, tokens, amp, reps))
    compiled = torch.compile(model)
    compile_s = _first_call_s(compiled, tokens, amp, eager_ms)
    compiled_ms = min(time_steps(compiled, tokens, amp, reps))
    machine_cache.write_cache(CACHE_NAME, key,
                              dict(zip(FIELDS, (eager_ms, compiled_ms, compile_s))))
    # Compiling is paid for now: keep it if the steps are faster at all (by the margin).
    chosen = saves_time(eager_ms, compiled_ms, 0.0, steps)
    choice = CompileChoice(chosen, "measured", eager_ms, compiled_ms, compile_s, steps)
    return choice, compiled if chosen else model
