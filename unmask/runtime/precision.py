"""CPU training precision chosen by measurement: bf16 autocast only where it is actually faster.

Whether oneDNN *supports* bf16 says little about speed. On CPUs with native bf16 (AVX512-BF16,
AMX: recent Xeons, AMD EPYC) bf16 autocast trains the `cpu-demo` model ~1.3x faster;
on an AVX-512 Xeon where oneDNN emulates bf16 it was ~3x *slower* (MEASUREMENTS.md), although
`torch.ops.mkldnn._is_mkldnn_bf16_supported()` said yes on both. So we time it: one transformer
block of the model's own shapes (`ProbeShape`: width, heads, context, vocabulary, the step's
tokens up to the demo probe's work), forward + backward, float32 and bf16 interleaved, each
precision with the attention kernels the run may use (runtime.attention_kernels; a long run
picks the faster by train.attention_probe, others keep SDPA) and timed by its faster one, as
training then runs it: the fused CPU kernel's backward is slow under bf16, and timing bf16
with it alone made float32 win nanoGPT's 128-wide causal block here (9.1 against 8.5 ms;
with plain matmuls bf16 takes 5.7 ms). About a second once per machine and shape (a few
seconds at most on a busy one); bf16 is kept only if it saves at least `BF16_MARGIN` of the
step time. The shape matters: on the AMX Xeon here bf16 is ~1.4x faster for the 192-wide
demo block but slower for nanoGPT's 128-wide, 768-token step (BENCHMARKS.md). The figures are
cached per machine and shape in `$XDG_CACHE_HOME/unmask/precision.json` (default
`~/.cache/unmask/precision.json`).

Order of authority: an explicit `train.dtype` (never probes; see `runtime.device`) >
`UNMASK_CPU_PRECISION=float32|bfloat16` > the cache > a new measurement.
`UNMASK_PRECISION_CACHE=0` neither reads nor writes the cache (measures every time).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from unmask.errors import UserError
from unmask.runtime import machine_cache
from unmask.runtime.attention_kernels import ATTENTION_KERNELS

BF16_MARGIN = 0.10  # bf16 must save >= 10 % of the step: a near-tie is not worth its rounding
MAX_SPREAD = 0.25  # trust (and cache) a probe only if each precision's two fastest steps agree
PROBE_VERSION = 3  # part of the cache key: bump when the workload changes
PROBE_TOKENS = 4096  # the demo-shaped probe's tokens; other widths get the same work (flops)
PRECISION_ENV = "UNMASK_CPU_PRECISION"


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision training runs in, and why (loggable with `describe()`)."""

    dtype: str  # "float32" | "bfloat16" | "float16"
    source: str  # measured | cached | env | unsupported | explicit | cuda | default
    fp32_ms: float | None = None  # probe step in float32 (measured now or cached)
    bf16_ms: float | None = None  # probe step under bf16 autocast
    key: str = ""  # the machine key the figures belong to
    steady: bool = True  # False: the probe's repeats disagreed: float32, not cached
    shape: str = ""  # the probed block (ProbeShape.label) when measured or cached

    @property
    def autocast(self) -> torch.dtype | None:
        """The autocast dtype, or None for plain float32."""
        return {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.dtype]

    def describe(self) -> str:
        text = f"precision {self.dtype} ({self.source}"
        if self.fp32_ms is not None and self.bf16_ms is not None:
            text += (f": probe step{f' ({self.shape})' if self.shape else ''} float32 "
                     f"{self.fp32_ms:.1f} ms, bf16 autocast "
                     f"{self.bf16_ms:.1f} ms, bf16 speed-up {self.fp32_ms / self.bf16_ms:.2f}x")
        if not self.steady:
            text += "; unsteady timings (busy machine?): float32 this time, not cached"
        return text + ")"


def decide(fp32_ms: float, bf16_ms: float, margin: float = BF16_MARGIN) -> str:
    """'bfloat16' when bf16 saves at least `margin` of the float32 step time, else 'float32'."""
    return "bfloat16" if bf16_ms <= (1.0 - margin) * fp32_ms else "float32"


def onednn_bf16_supported() -> bool:
    """oneDNN's claim that it has bf16 kernels here (native *or emulated*: not a speed claim)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# ----------------------------------------------------------------------------- the workload


@dataclass(frozen=True)
class ProbeShape:
    """The transformer block the probe times (the defaults: the `cpu-demo` model's)."""

    width: int = 192
    n_head: int = 4
    context: int = 128
    vocab: int = 72
    tokens: int = PROBE_TOKENS  # tokens per timed step: whole rows of `context`
    causal: bool = False
    # the attention kernels the run may compute with (train.attention_probe.kernel_candidates):
    # each precision is timed with the faster of them
    attention: tuple[str, ...] = tuple(ATTENTION_KERNELS)

    @classmethod
    def of_model(cls, width: int, n_head: int, context: int, vocab: int, batch_tokens: int,
                 causal: bool = False) -> ProbeShape:
        """A model's block at its step's tokens, capped at the demo probe's work (so a wide
        model's probe stays about as short), and at least one row."""
        cap = int(PROBE_TOKENS * (192 / width) ** 2)
        tokens = max(context, min(batch_tokens, cap) // context * context)
        return cls(width, n_head, context, vocab, tokens, causal)

    def label(self) -> str:
        return (f"block {self.width}w {self.n_head}h ctx {self.context}"
                f"{' causal' if self.causal else ''} vocab {self.vocab} x {self.tokens} tokens"
                f", attention {'|'.join(self.attention)}")

    def probe_args(self) -> dict:
        """`time_probe`'s keyword arguments."""
        return dataclasses.asdict(self)


DEMO_SHAPE = ProbeShape()  # what `unmask info` and a shape-less caller probe


def _probe_tensors(tokens: int, width: int, context: int, vocab: int, generator):
    """Weights of one pre-norm block (qkv, proj, SwiGLU 8/3 wide) plus a readout, and inputs."""
    hidden = 64 * -(-8 * width // (3 * 64))
    shapes = {"qkv": (3 * width, width), "proj": (width, width), "gate_up": (2 * hidden, width),
              "down": (width, hidden), "head": (vocab, width)}
    weights = {name: (torch.randn(shape, generator=generator) * 0.02).requires_grad_()
               for name, shape in shapes.items()}
    batch = max(1, tokens // context)
    x = torch.randn(batch, context, width, generator=generator).requires_grad_()
    y = torch.randint(0, vocab, (batch * context,), generator=generator)
    return weights, x, y


def _probe_step(w: dict, x: torch.Tensor, y: torch.Tensor, bf16: bool, n_head: int,
                causal: bool = False, attention: str = "sdpa") -> None:
    """Forward + backward of the block, as `model.transformer` computes it (minus RoPE)."""
    B, T, C = x.shape
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        h = F.rms_norm(x, (C,))
        q, k, v = F.linear(h, w["qkv"]).view(B, T, 3, n_head, C // n_head).permute(2, 0, 3, 1, 4)
        a = ATTENTION_KERNELS[attention](q, k, v, is_causal=causal)  # (B, nh, T, hs)
        h = x + F.linear(a.transpose(1, 2).reshape(B, T, C), w["proj"])
        gate, up = F.linear(F.rms_norm(h, (C,)), w["gate_up"]).chunk(2, dim=-1)
        h = h + F.linear(F.silu(gate) * up, w["down"])
        logits = F.linear(h, w["head"])
    F.cross_entropy(logits.float().view(-1, logits.size(-1)), y).backward()
    for t in [*w.values(), x]:
        t.grad = None


@dataclass(frozen=True)
class ProbeTimes:
    """The probe's figures: fastest step of each precision (with its faster attention
    kernel), and how far that kernel's runner-up step was off."""

    fp32_ms: float
    bf16_ms: float
    spread: float  # max over both of (second-fastest / fastest - 1); inf with one timed rep
    fp32_attention: str = "sdpa"  # the kernel that gave fp32_ms
    bf16_attention: str = "sdpa"

    @property
    def steady(self) -> bool:
        """Repeated steps agree, so the figures can be trusted and cached (a busy neighbour can
        make one precision look slow for a while)."""
        return self.spread <= MAX_SPREAD


def time_probe(tokens: int = PROBE_TOKENS, width: int = 192, n_head: int = 4, context: int = 128,
               vocab: int = 72, causal: bool = False,
               attention: tuple[str, ...] = tuple(ATTENTION_KERNELS), warmup: int = 1,
               reps: int = 2, max_reps: int = 50, min_s: float = 0.3, budget_s: float = 3.0
               ) -> ProbeTimes:
    """Float32 vs bf16-autocast forward+backward steps, each with every kernel of `attention`,
    interleaved; the fastest of each precision.

    Interleaving (alternating the order) spreads a busy neighbour over all variants; the
    minimum discards the interruptions of a shared machine. After `reps` timed rounds it stops
    as soon as each precision's fastest variant is steady and `min_s` has passed (a small
    block's millisecond steps need more rounds than the demo's), else goes on (up to
    `max_reps`) until they are or `budget_s` is spent (then `spread` says unsteady; inf if not
    even one round was timed). Uses its own generator, so the global RNG (and with it a seeded
    run's initial weights) is the same whether or not the probe ran.
    """
    w, x, y = _probe_tensors(tokens, width, context, vocab, torch.Generator().manual_seed(0))
    variants = [(bf16, kernel) for bf16 in (False, True) for kernel in attention]
    times: dict[tuple[bool, str], list[float]] = {v: [] for v in variants}  # warm-up included
    started = time.perf_counter()
    with torch.inference_mode(False), torch.enable_grad():
        for rep in range(warmup + max(reps, max_reps)):
            for bf16, kernel in (variants if rep % 2 == 0 else variants[::-1]):
                t0 = time.perf_counter()
                _probe_step(w, x, y, bf16, n_head, causal, kernel)
                times[(bf16, kernel)].append(1000 * (time.perf_counter() - t0))
            timed = {k: v[warmup:] for k, v in times.items()}
            spread = max(_spread(timed[v]) for v in _fastest(timed).values())
            elapsed = time.perf_counter() - started
            if rep >= warmup + reps - 1 and spread <= MAX_SPREAD and elapsed >= min_s:
                break
            if elapsed > budget_s:  # a busy machine: give up, unsteady
                break
    timed = {k: v[warmup:] or v for k, v in times.items()}
    best = _fastest(timed)
    return ProbeTimes(min(timed[best[False]]), min(timed[best[True]]),
                      max(_spread(timed[v]) for v in best.values()),
                      best[False][1], best[True][1])


def _fastest(timed: dict[tuple[bool, str], list[float]]) -> dict[bool, tuple[bool, str]]:
    """Per precision (bf16 or not), the variant with the fastest step so far."""
    return {bf16: min((v for v in timed if v[0] == bf16),
                      key=lambda v: min(timed[v], default=float("inf")))
            for bf16 in (False, True)}


def _spread(times: list[float]) -> float:
    if len(times) < 2:
        return float("inf")
    fastest, runner_up = sorted(times)[:2]
    return runner_up / fastest - 1


def time_threads(counts: list[int], **probe) -> dict[int, ProbeTimes]:
    """`time_probe()` at each thread count: what `train.threads=0` decides by for a long run
    (runtime.threads) and benchmarks/cpu_precision.py reports. The thread setting is restored
    afterwards."""
    before, result = torch.get_num_threads(), {}
    try:
        for n in counts:
            torch.set_num_threads(n)
            result[n] = time_probe(**probe)
    finally:
        torch.set_num_threads(before)
    return result


# ----------------------------------------------------------------------------- the cache


def machine_key() -> str:
    """The machine's key (runtime.machine_cache) with this probe's version."""
    return f"{machine_cache.machine_key()} | probe v{PROBE_VERSION}"


def cache_path() -> Path:
    return machine_cache.cache_path("precision")


def read_cache() -> dict:
    """{machine key | shape: {"fp32_ms", "bf16_ms", "date"}}; {} when missing or unreadable."""
    return machine_cache.read_cache("precision")


# ----------------------------------------------------------------------------- the choice


def cpu_precision(shape: ProbeShape = DEMO_SHAPE) -> PrecisionChoice:
    """bf16 autocast or float32 for CPU training of a `shape` block on this machine:
    env > cache > measurement."""
    forced = os.environ.get(PRECISION_ENV, "").strip().lower()
    if forced in ("float32", "bfloat16"):
        return PrecisionChoice(forced, "env")
    if forced not in ("", "auto"):
        raise UserError(f"{PRECISION_ENV}={forced!r}: use float32, bfloat16 or auto")
    if not onednn_bf16_supported():
        return PrecisionChoice("float32", "unsupported")
    key = f"{machine_key()} | {shape.label()}"
    hit = machine_cache.lookup("precision", key, ("fp32_ms", "bf16_ms"))
    if hit is not None:
        fp32_ms, bf16_ms = hit["fp32_ms"], hit["bf16_ms"]
        return PrecisionChoice(decide(fp32_ms, bf16_ms), "cached", fp32_ms, bf16_ms, key,
                               shape=shape.label())
    probe = time_probe(**shape.probe_args())
    if not probe.steady:
        # Figures from a busy machine are noise. float32 risks at most bf16's gain (~1.3x),
        # not emulated bf16's loss (~3x); the next start measures again.
        return PrecisionChoice("float32", "measured", probe.fp32_ms, probe.bf16_ms, key, False,
                               shape.label())
    machine_cache.write_cache("precision", key,
                              {"fp32_ms": probe.fp32_ms, "bf16_ms": probe.bf16_ms})
    return PrecisionChoice(decide(probe.fp32_ms, probe.bf16_ms), "measured", probe.fp32_ms,
                           probe.bf16_ms, key, shape=shape.label())
