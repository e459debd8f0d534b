"""Device, precision and RNG plumbing shared by training, sampling and evaluation."""

from __future__ import annotations

import contextlib

import torch

from unmask.errors import UserError


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


def autocast_dtype(device: torch.device, dtype: str) -> torch.dtype | None:
    """The autocast dtype to use, or None for plain float32."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and cpu_has_fast_bf16():
            return torch.bfloat16  # ~1.3x faster training on AVX512-BF16 / AMX CPUs
        return None
    return {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def cpu_has_fast_bf16() -> bool:
    """True when oneDNN has native bf16 kernels on this CPU (otherwise bf16 is emulated, slower)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
