"""What a model costs, from its config alone: parameters, FLOPs per token, MFU and memory.

Nothing here builds a model or touches a device's memory (`free_memory_bytes` asks the device
how much it has), so a run can be sized before it starts: `unmask train --dry-run`, an
automatic batch size, MFU and peak-memory columns in the training log. Every figure is checked
against the real thing in tests/test_sizing.py (parameters exactly) and benchmarks/memory.py
(measured peak memory).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os

import torch

from unmask.config.schema import ModelConfig
from unmask.errors import UserError
from unmask.model.ngram_embedding import ngram_sizes
from unmask.runtime.precision import ProbeShape

PEAK_FLOPS_ENV = "UNMASK_PEAK_FLOPS"

# Dense (no sparsity) bf16 tensor-core peaks in FLOP/s, from the vendors' data sheets (the same
# figures nanoGPT, nanochat and torchtitan use). Matched in order against the lower-cased CUDA
# device name, every word of a key present, so the specific variants come before the family
# ("H100 PCIe" before "H100", "L40S" before "L4"). Training in float32 on a GPU is still
# measured against the bf16 peak: MFU says how much of the machine the run uses.
PEAK_FLOPS: dict[str, float] = {
    "GB200": 2.5e15,
    "B200": 2.25e15,
    "H200 NVL": 836e12,
    "H200": 989e12,
    "H100 NVL": 835e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,  # SXM
    "H800": 989e12,
    "A100": 312e12,
    "A800": 312e12,
    "A40": 149.7e12,
    "A30": 165e12,
    "L40S": 362e12,
    "L40": 181e12,
    "L4": 121e12,
    "RTX 5090": 209.5e12,
    "RTX 4090": 165.2e12,
    "RTX 3090": 71e12,
    "MI300X": 1307.4e12,
    "MI250X": 383e12,
}

_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def dtype_bytes(dtype: str | torch.dtype | None) -> int:
    """Bytes per element of a compute dtype: a name, a torch.dtype, or None (= float32)."""
    if dtype is None:
        return 4
    if isinstance(dtype, torch.dtype):
        return torch.empty((), dtype=dtype).element_size()
    if dtype not in _DTYPE_BYTES:
        raise ValueError(f"unknown dtype '{dtype}'; expected one of {', '.join(_DTYPE_BYTES)}")
    return _DTYPE_BYTES[dtype]


# ----------------------------------------------------------------------------- parameters


def mlp_hidden(cfg: ModelConfig) -> int:
    """SwiGLU hidden width: `model.mlp_hidden`, else 8/3 * n_embd rounded up to a multiple of 64
    (the rule in model.transformer.SwiGLU)."""
    return cfg.mlp_hidden or 64 * math.ceil(8 * cfg.n_embd / 3 / 64)


def _pooled_width(cfg: ModelConfig) -> int:
    return cfg.n_embd * (cfg.n_layer + 1 if cfg.pooling == "layers" else 1)


def parameter_breakdown(cfg: ModelConfig) -> dict[str, int]:
    """Parameter counts by part, from the config alone (vocab_size must be set).

    attention: per layer qkv (C x 3C) + output projection (C x C), no biases (+ with qk_norm a
    query and a key RMSNorm of head width); mlp: per layer SwiGLU gate+up (C x 2h) + down
    (h x C); norms: two RMSNorm weights per layer + the final one;
    embeddings: the token table (V x C; RoPE has no parameters); ngram_embeddings: the hashed
    n-gram tables (model.ngram_max; looked up, never multiplied: no FLOPs);
    heads: 0 for the vocabulary head (tied to the embedding, counted once, under
    embeddings), 2C + 2 for the binary good/wrong head, pooled x classes + classes for a
    sequence classifier (its BatchNorm has no affine parameters).
    """
    if cfg.vocab_size <= 0:
        raise ValueError("model.vocab_size must be set before sizing a model")
    C, L, h = cfg.n_embd, cfg.n_layer, mlp_hidden(cfg)
    parts = {
        "attention": L * 4 * C * C + _qk_norm_weights(cfg),
        "mlp": L * 3 * C * h,
        "norms": (2 * L + 1) * C,
        "embeddings": cfg.vocab_size * C,
        "ngram_embeddings": ngram_rows(cfg) * C,
        "heads": 0,
    }
    if cfg.mode == "sequence_classifier":
        parts["heads"] = (_pooled_width(cfg) + 1) * cfg.num_classes
    elif cfg.binary_head:
        parts["heads"] = 2 * C + 2
    parts["total"] = sum(parts.values())
    return parts


def ngram_rows(cfg: ModelConfig) -> int:
    """Rows of the hashed n-gram tables: `ngram_buckets` per n = 3 .. ngram_max and side."""
    return 2 * len(ngram_sizes(cfg.ngram_max)) * cfg.ngram_buckets if cfg.ngram_max else 0


def _qk_norm_weights(cfg: ModelConfig) -> int:
    """The query and key RMSNorm weights (head width each, per layer) that qk_norm adds."""
    return cfg.n_layer * 2 * (cfg.n_embd // cfg.n_head) if cfg.qk_norm else 0


def uses_vocab_head(cfg: ModelConfig) -> bool:
    """Whether the forward ends in the (tied) V x C vocabulary projection."""
    return cfg.mode != "sequence_classifier" and not cfg.binary_head


# ----------------------------------------------------------------------------- FLOPs and MFU


def flops_per_token(cfg: ModelConfig, causal: bool | None = None, *,
                    causal_discount: bool = False) -> float:
    """Training FLOPs per token, forward + backward: 6N + 12 * L * H * Q * T.

    The PaLM appendix B estimate, as nanoGPT's `estimate_mfu` and nanochat use it. 6N: each
    parameter of a matmul costs 2 FLOPs per token forward and 4 backward. N is every
    parameter that multiplies each token: all parameters, the tied embedding counted once
    as the output head (its V x C matmul is real work; the lookup itself is free). That is
    nanoGPT's N (all parameters minus the learned position table, which we do not have:
    RoPE), so the figures compare with nanoGPT's. A binary or sequence-classifier head never
    runs the vocabulary matmul, so the embedding table is left out of N there.

    12 * L * H * Q * T: attention's QK^T and AV matmuls (2 * 2 * T * Q per head per token
    forward, twice that backward) at sequence length T = block_size. A bidirectional model
    runs exactly these matmuls. A causal model under SDPA's causal kernel skips about half of
    them, but nanoGPT and PaLM count the full figure, and so do we by default: the diffusion
    and the causal model then have the same FLOPs per token, so their MFU ratio is their
    throughput ratio. `causal_discount=True` counts only the causal half, (T + 1) / 2T of it.
    `causal` defaults to cfg.causal.
    """
    causal = cfg.causal if causal is None else causal
    parts = parameter_breakdown(cfg)
    n = (parts["total"] - parts["ngram_embeddings"]
         - (0 if uses_vocab_head(cfg) else parts["embeddings"]))
    L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.block_size
    attention = 12 * L * H * Q * T
    if causal and causal_discount:
        attention *= (T + 1) / (2 * T)
    return 6 * n + attention


def mfu(tokens_per_second: float, cfg: ModelConfig, peak_flops: float,
        causal: bool | None = None) -> float:
    """Model FLOPs utilisation as a fraction of `peak_flops` (FLOP/s of all devices used:
    multiply a per-device peak by the world size); see `flops_per_token` for what counts."""
    return tokens_per_second * flops_per_token(cfg, causal) / peak_flops


def peak_flops_for_name(name: str) -> float | None:
    """The bf16 dense peak for a device name (e.g. `torch.cuda.get_device_name()`), or None."""
    lowered = name.lower()
    for key, flops in PEAK_FLOPS.items():
        if all(word in lowered for word in key.lower().split()):
            return flops
    return None


def device_peak_flops(device: torch.device | str) -> float | None:
    """Peak FLOP/s of one `device`, or None when unknown (MFU is then not reported).

    `UNMASK_PEAK_FLOPS` (e.g. `1.2e12`) wins on any device: the only way to get an MFU on a
    CPU, whose peak depends on cores, clocks and vector units, and the way to name an
    unlisted GPU. Otherwise a CUDA device is looked up by name in PEAK_FLOPS.
    """
    override = os.environ.get(PEAK_FLOPS_ENV, "").strip()
    if override:
        try:
            value = float(override)
        except ValueError:
            value = -1.0
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"{PEAK_FLOPS_ENV}={override!r}: expected a positive number of "
                            "FLOP/s, e.g. 1.2e12")
        return value
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return peak_flops_for_name(torch.cuda.get_device_name(device))
    return None


# ----------------------------------------------------------------------------- memory


def _activation_bytes_per_token_per_layer(cfg: ModelConfig, s: int, cpu: bool) -> float:
    """Bytes a block keeps for backward, per token (the derivation is in
    `training_memory_estimate`)."""
    C, h, nh, T = cfg.n_embd, mlp_hidden(cfg), cfg.n_head, cfg.block_size
    r = 4  # the residual stream and RMSNorm run in float32 (parameters are float32)
    norms = 2 * (2 * r * C + s * C + r)
    if cfg.dropout > 0 and cpu:  # no fused CPU kernel with dropout: the float32 math path
        attention = 3 * r * C + s * C + 3 * nh * T * r  # keeps q, k, v and 3 T x T per head
    else:
        attention = 7 * s * C + 4 * nh
    mlp = 4 * s * h
    dropout = 2 * (s if cpu else 1) * C if cfg.dropout > 0 else 0
    return norms + attention + mlp + dropout


def optimizer_state_bytes(cfg: ModelConfig, optimizer: str = "adamw") -> int:
    """Bytes of float32 optimizer state: AdamW keeps two moments per parameter (8 bytes);
    `muon` keeps one momentum buffer (4 bytes) for the blocks' weight matrices, which it
    orthogonalises, and AdamW's two moments for the rest (train/optim.py, make_muon)."""
    parts = parameter_breakdown(cfg)
    if optimizer != "muon":
        return 8 * parts["total"]
    hidden = parts["attention"] - _qk_norm_weights(cfg) + parts["mlp"]  # the blocks' matrices
    return 4 * hidden + 8 * (parts["total"] - hidden)


def training_memory_estimate(cfg: ModelConfig, batch_size: int,
                             dtype: str | torch.dtype | None = "float32",
                             device_type: str = "cuda", optimizer: str = "adamw"
                             ) -> dict[str, int]:
    """Bytes one training step of `batch_size` sequences needs, by part, in eager mode.

    weights, grads: float32 (autocast keeps float32 master weights); optimizer: the state of
    `optimizer` (`optimizer_state_bytes`). `dtype` is the autocast compute dtype (float32 =
    no autocast).

    activations: what autograd keeps for the backward pass, for B * T tokens. With s the
    compute dtype's bytes, C the width, h the SwiGLU hidden width, per token and layer:
      2 RMSNorms   2 * (8C + sC): float32 input and normalised output, the matmul input at s
      attention    7sC: q, k after RoPE, the qkv output (v is a view of it), SDPA's output,
                   the projection input; plus a float32 logsumexp per head
      SwiGLU       4sh: the gate/up output (2h), silu(gate), their product (the down input)
      dropout > 0  2C masks (bool on CUDA, s bytes on CPU); on CPU SDPA has no fused kernel
                   with dropout: its math path runs in float32 and keeps q, k, v and 3 T x T
                   score tensors per head (12C + 12 H T) instead of the 7sC above
    plus, once: the final norm and head input (8C + sC), the logits (sV) and their log-softmax
    (4V), the token ids, and under autocast a low-precision copy of every weight matrix
    (autocast caches the casts for backward). Activation checkpointing keeps only each block's
    float32 input (4C) and recomputes one block (activations and weight copies) at a time.
    These terms were read off autograd's saved tensors (torch.autograd.graph.saved_tensors_hooks)
    on CPU and match them to within a few bytes per token (tests/test_sizing.py); CUDA's
    kernels keep the same tensors by design but were not measured yet; torch.compile fuses
    some of them away (less memory than estimated).

    transient: what the start of the backward pass adds: the gradient of the log-softmax and
    of the logits (8V + sV per token), of the float32 residual stream (8C) and the tied
    embedding's gradient.

    total = weights + optimizer + max(activations + transient, grads): gradients are set to
    None between steps, so they fill in while the backward pass frees activations, and the
    peak is either at its start or, for large models with small batches, at the optimizer
    step. Allocator overheads (CUDA context, caching-allocator fragmentation) are not included.
    Measured peaks of whole training steps on CPU (benchmarks/memory.py) are within 5 %.
    """
    parts = parameter_breakdown(cfg)
    s, cpu = dtype_bytes(dtype), device_type == "cpu"
    n, C, L, V = parts["total"], cfg.n_embd, cfg.n_layer, cfg.vocab_size
    tokens = batch_size * cfg.block_size
    per_layer = _activation_bytes_per_token_per_layer(cfg, s, cpu)
    vocab = uses_vocab_head(cfg)
    # autocast's low-precision weight copies, per block and for the tied head
    block_casts = s * (parts["attention"] + parts["mlp"]) // L if s < 4 else 0
    head_casts = s * parts["embeddings"] if s < 4 and vocab else 0
    if cfg.activation_checkpointing:  # block inputs kept; one block recomputed at a time
        blocks = tokens * (L * 4 * C + per_layer) + block_casts
    else:
        blocks = L * (tokens * per_layer + block_casts)
    width = V if vocab else 2 if cfg.binary_head else 0
    final = tokens * (8 * C + s * C + (s + 4) * width + 24)  # + ids, targets, masks
    if cfg.dropout > 0:
        final += tokens * (4 if cpu else 1) * C  # the embedding dropout's mask
    activations = int(blocks + final + head_casts)
    transient = int(tokens * ((8 + s) * width + 8 * C)
                    + (4 * parts["embeddings"] if vocab else 0))
    weights, grads, state = 4 * n, 4 * n, optimizer_state_bytes(cfg, optimizer)
    return {"weights": weights, "grads": grads, "optimizer": state,
            "activations": activations, "transient": transient,
            "total": weights + state + max(activations + transient, grads)}


def inference_memory_estimate(cfg: ModelConfig, batch_size: int,
                              dtype: str | torch.dtype | None = "float32",
                              kv_cache: bool = False, weight_dtype: str = "float32"
                              ) -> dict[str, int]:
    """Bytes one no-grad forward over `batch_size` full-length sequences needs, by part.

    weights: every parameter at `weight_dtype` (sampling keeps float32 weights today);
    kv_cache: a causal model's cache, 2 * L * B * T * C at the compute dtype (model.KVCache);
    activations: the largest set alive at once, per token: the float32 residual and its
    normalised copy (8C) plus the bigger of attention's buffers (qkv, rotated q and k and
    their float32 copies, SDPA's output: 6sC + 8C) and SwiGLU's (4sh), plus the logits (sV)
    and the sampler's float32 copy and probabilities (8V). A rough bound, not measured.
    """
    parts = parameter_breakdown(cfg)
    s, C, V, h = dtype_bytes(dtype), cfg.n_embd, cfg.vocab_size, mlp_hidden(cfg)
    tokens = batch_size * cfg.block_size
    width = V if uses_vocab_head(cfg) else 2
    weights = dtype_bytes(weight_dtype) * parts["total"]
    cache = 2 * cfg.n_layer * tokens * C * s if kv_cache else 0
    activations = tokens * (8 * C + max(6 * s * C + 8 * C, 4 * s * h) + (s + 8) * width)
    return {"weights": weights, "kv_cache": cache, "activations": activations,
            "total": weights + cache + activations}


def max_batch_size(cfg: ModelConfig, memory_bytes: int,
                   dtype: str | torch.dtype | None = "float32", device_type: str = "cuda",
                   fraction: float = 0.85, limit: int = 1 << 16,
                   optimizer: str = "adamw") -> int:
    """The largest batch whose `training_memory_estimate` fits in `fraction` of
    `memory_bytes` (0 when not even one sequence fits); for `train.batch_size=auto`."""
    budget = fraction * memory_bytes

    def fits(b: int) -> bool:
        return training_memory_estimate(cfg, b, dtype, device_type,
                                        optimizer)["total"] <= budget

    if not fits(1):
        return 0
    lo, hi = 1, limit
    while lo < hi:  # the estimate grows with the batch: bisect
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def free_memory_bytes(device: torch.device | str) -> int | None:
    """Memory free for tensors on `device`: CUDA's mem_get_info, MemAvailable from
    /proc/meminfo on a Linux CPU (psutil elsewhere, when installed), else None."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    try:
        import psutil  # optional; not a dependency
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def probe_shape(cfg: ModelConfig, batch_size: int) -> ProbeShape:
    """The block the CPU precision probe times for this model and batch (runtime.precision)."""
    return ProbeShape.of_model(cfg.n_embd, cfg.n_head, cfg.block_size, cfg.vocab_size or 72,
                               batch_size * cfg.block_size, cfg.causal)


def model_label(cfg: ModelConfig, batch_size: int, amp: torch.dtype | None) -> str:
    """A readable name of a model's training step for the CPU compile cache: its shape, batch
    and precision, plus a digest of the whole model config (QK-norm, dropout, checkpointing
    and the rest change the compiled graph too)."""
    digest = hashlib.sha1(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode())
    return (f"{cfg.mode}{' causal' if cfg.causal else ''} {cfg.n_layer}L {cfg.n_embd}w "
            f"{cfg.n_head}h ctx {cfg.block_size} vocab {cfg.vocab_size} x batch {batch_size} "
            f"{str(amp).removeprefix('torch.') if amp else 'float32'} "
            f"config {digest.hexdigest()[:8]}")
