"""CPU threads for training chosen by measurement (`train.threads=0`, the default).

torch uses one thread per physical core. For a small model the threads' hand-offs can cost
more than they bring, and on a machine whose cores are shared they wait on each other; so for
a long run (the same gate as torch.compile's, runtime.cpu_compile) the first start times the
model's block (runtime.precision's probe) at torch's default and at half of it, and keeps the
fewer threads only when they are at least `THREADS_MARGIN` faster. The figures are cached per
machine and block (runtime.machine_cache, `threads.json`). `train.threads=N` overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from unmask.runtime import machine_cache, precision
from unmask.runtime.precision import ProbeShape

THREADS_MARGIN = 0.10
CACHE_NAME = "threads"


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    source: str  # explicit | default | short-run | one-core | measured | cached
    step_ms: dict[int, float] = field(default_factory=dict)  # probe step per thread count

    def describe(self) -> str:
        text = f"{self.threads} CPU threads ({self.source}"
        if self.step_ms:
            text += ": probe step " + ", ".join(f"{ms:.1f} ms at {n}"
                                                 for n, ms in sorted(self.step_ms.items()))
        return text + ")"


def candidates(default: int) -> list[int]:
    """torch's default and half of it (at least 1), most first."""
    return sorted({default, max(1, default // 2)}, reverse=True)


def fewest_fast_enough(step_ms: dict[int, float], default: int,
                       margin: float = THREADS_MARGIN) -> int:
    """The fewest threads whose step is at least `margin` faster than the default's."""
    faster = [n for n, ms in step_ms.items() if ms <= (1.0 - margin) * step_ms[default]]
    return min(faster, default=default)


def cpu_threads(shape: ProbeShape) -> ThreadChoice:
    """Threads for a long CPU run of a `shape` block: cache, else a measurement."""
    default = torch.get_num_threads()
    counts = candidates(default)
    if len(counts) == 1:
        return ThreadChoice(default, "one-core")
    key = f"{machine_cache.machine_key()} | {shape.label()}"
    hit = machine_cache.lookup(CACHE_NAME, key, [str(n) for n in counts])
    if hit is not None:
        step_ms = {n: hit[str(n)] for n in counts}
        return ThreadChoice(fewest_fast_enough(step_ms, default), "cached", step_ms)
    probes = precision.time_threads(counts, **shape.probe_args())
    # The precision training will use is not chosen yet: the faster of the two stands in.
    step_ms = {n: min(p.fp32_ms, p.bf16_ms) for n, p in probes.items()}
    if not all(p.steady for p in probes.values()):  # a busy machine: keep torch's choice
        return ThreadChoice(default, "measured, unsteady: default kept", step_ms)
    machine_cache.write_cache(CACHE_NAME, key, {str(n): ms for n, ms in step_ms.items()})
    return ThreadChoice(fewest_fast_enough(step_ms, default), "measured", step_ms)


def choose_threads(requested: int, device: torch.device, long_run: bool,
                   shape: ProbeShape) -> ThreadChoice:
    """`train.threads`: N > 0 as given; 0: measured for a long CPU run, else torch's default.
    Sets torch's thread count to the choice."""
    if requested > 0:
        choice = ThreadChoice(requested, "explicit")
    elif device.type != "cpu":
        choice = ThreadChoice(torch.get_num_threads(), "default")
    elif not long_run:
        choice = ThreadChoice(torch.get_num_threads(), "short-run")
    else:
        choice = cpu_threads(shape)
    torch.set_num_threads(choice.threads)
    return choice
