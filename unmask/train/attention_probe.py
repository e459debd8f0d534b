"""Which attention kernel a training run computes with (`train.attention=auto`, the default).

On CUDA `sdpa` (flash attention) always. On a CPU the fused kernel can be the slow part of the
step (runtime.attention_kernels), but not on every CPU or at every precision, so a long CPU run
(the gate of runtime.cpu_compile) times the model's attention alone -- forward + backward at
its batch, heads, context and the precision the run chose -- with both kernels, interleaved,
and uses `math` only when it is at least `MATH_MARGIN` faster. The figures are cached per
machine and shape (runtime.machine_cache, `attention.json`). Short runs, multi-process runs
(ranks sharing a CPU would time each other) and other devices keep `sdpa`;
`train.attention=sdpa|math` overrides.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from unmask.config.schema import RunConfig
from unmask.runtime import machine_cache
from unmask.runtime.attention_kernels import ATTENTION_KERNELS

MATH_MARGIN = 0.10  # the unfused kernel must save >= 10 % of the attention's time
PROBE_VERSION = 1  # part of the cache key: bump when the measurement changes
CACHE_NAME = "attention"
FIELDS = tuple(f"{name}_ms" for name in ATTENTION_KERNELS)


@dataclass(frozen=True)
class AttentionChoice:
    kernel: str
    source: str  # explicit | device | short-run | distributed | measured | cached
    ms: dict[str, float] = field(default_factory=dict)  # forward + backward per kernel

    def describe(self) -> str:
        text = f"attention {self.kernel} ({self.source}"
        if self.ms:
            text += ": forward + backward " + ", ".join(
                f"{name.removesuffix('_ms')} {ms:.2f} ms" for name, ms in self.ms.items())
        return text + ")"


def faster_kernel(ms: dict[str, float], margin: float = MATH_MARGIN) -> str:
    """`math` when it takes at most (1 - margin) of `sdpa`'s time, else `sdpa`."""
    return "math" if ms["math_ms"] <= (1.0 - margin) * ms["sdpa_ms"] else "sdpa"


def time_kernels(batch: int, n_head: int, context: int, head_dim: int, causal: bool,
                 amp: torch.dtype | None, reps: int = 5) -> dict[str, float]:
    """Fastest forward + backward of each kernel in ms, interleaved (a busy neighbour slows
    both). Its own generator: the global RNG is the same whether or not this ran."""
    g = torch.Generator().manual_seed(0)
    dtype = amp or torch.float32  # under autocast the model's q, k, v arrive in `amp`
    q, k, v = (torch.randn(batch, n_head, context, head_dim, generator=g, dtype=dtype)
               .requires_grad_() for _ in range(3))
    times: dict[str, list[float]] = {name: [] for name in ATTENTION_KERNELS}
    with torch.inference_mode(False), torch.enable_grad():
        for rep in range(reps + 1):  # the first round warms up
            for name, kernel in ATTENTION_KERNELS.items():
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
                    out = kernel(q, k, v, is_causal=causal)
                out.float().sum().backward()
                if rep:
                    times[name].append(1000 * (time.perf_counter() - start))
    return {f"{name}_ms": min(ms) for name, ms in times.items()}


def kernel_candidates(cfg: RunConfig, device: torch.device, long_run: bool,
                      distributed: bool) -> tuple[tuple[str, ...], str]:
    """The kernels the run may compute attention with, and why: one (explicit | device |
    distributed | short-run), or all of them for a long CPU run, to measure."""
    wanted = cfg.train.attention
    if wanted != "auto":
        return (wanted,), "explicit"
    if device.type != "cpu":
        return ("sdpa",), "device"
    if distributed:
        return ("sdpa",), "distributed"
    if not long_run:
        return ("sdpa",), "short-run"
    return tuple(ATTENTION_KERNELS), "measured"


def choose_attention(cfg: RunConfig, device: torch.device, amp: torch.dtype | None,
                     long_run: bool, distributed: bool) -> AttentionChoice:
    """`train.attention`: sdpa | math as given; auto: measured for a long CPU run (module doc)."""
    kernels, source = kernel_candidates(cfg, device, long_run, distributed)
    if len(kernels) == 1:
        return AttentionChoice(kernels[0], source)
    m = cfg.model
    shape = (cfg.train.batch_size, m.n_head, m.block_size, m.n_embd // m.n_head, m.causal)
    precision = str(amp).removeprefix("torch.") if amp else "float32"
    key = (f"{machine_cache.machine_key()} | attention probe v{PROBE_VERSION} | batch "
           f"{shape[0]} {shape[1]}h ctx {shape[2]} head {shape[3]}"
           f"{' causal' if m.causal else ''} {precision}")
    ms = machine_cache.lookup(CACHE_NAME, key, FIELDS)
    source = "cached"
    if ms is None:
        ms, source = time_kernels(*shape, amp), "measured"
        machine_cache.write_cache(CACHE_NAME, key, ms)
    return AttentionChoice(faster_kernel(ms), source, ms)
