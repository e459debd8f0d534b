"""Device, precision and RNG plumbing shared by training, sampling and evaluation."""

from __future__ import annotations

import contextlib

import torch

from unmask.errors import UserError
from unmask.runtime.precision import DEMO_SHAPE, PrecisionChoice, ProbeShape, cpu_precision


def pick_device(name: str = "auto") -> torch.device:
    """cuda > mps > cpu when `auto`; an explicit name that is unavailable is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("train.device=cuda but no CUDA GPU is visible; use train.device=auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("train.device=mps but MPS is not available; use train.device=auto")
    return torch.device(name)


def choose_precision(device: torch.device, dtype: str,
                     shape: ProbeShape = DEMO_SHAPE) -> PrecisionChoice:
    """The precision for `train.dtype` on `device`, with the reason (and timings when measured).

    `auto`: bf16 on a CUDA GPU that supports it; on CPU the measured probe of a `shape` block
    (the model's; default the demo's) decides (bf16 only where it is faster, see
    `runtime.precision`), asked only when oneDNN claims bf16 at all; float32 elsewhere. An
    explicit dtype never probes.
    """
    if dtype != "auto":
        return PrecisionChoice(dtype, "explicit")
    if device.type == "cuda":
        return PrecisionChoice("bfloat16" if torch.cuda.is_bf16_supported() else "float32", "cuda")
    if device.type == "cpu":
        return cpu_precision(shape)
    return PrecisionChoice("float32", "default")  # MPS and the rest: float32, as before


def autocast_dtype(device: torch.device, dtype: str) -> torch.dtype | None:
    """The autocast dtype to use, or None for plain float32."""
    return choose_precision(device, dtype).autocast


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
