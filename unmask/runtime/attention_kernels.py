"""softmax(Q Kᵀ / √d) V by one of two kernels, ATTENTION_KERNELS; a run picks one by name.

`sdpa` is torch's scaled_dot_product_attention: flash attention on CUDA, one fused kernel
everywhere, inside torch.compile's graph. `math` spells the same product out as two batched
matmuls and a softmax and runs eagerly (torch.compile leaves it out of the graph, which it
would otherwise lower to slower code). The fused CPU kernel's backward is slow under bf16
autocast at this project's sizes (AMD EPYC, 16 rows x 4 heads of 48, context 128: forward +
backward 15.4 ms fused against 4.8 ms as matmuls), so there the `cpu-demo` step is 1.48x
faster with `math`; in float32 the fused kernel wins (BENCHMARKS.md). Which one a CPU run uses
is measured at start-up (train.attention_probe); sampling keeps `sdpa`.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F


@torch.compiler.disable
def math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                   dropout_p: float = 0.0) -> torch.Tensor:
    """scaled_dot_product_attention's result (same arguments, (B, nh, T, hs) tensors) from
    explicit matmuls. A boolean `attn_mask` marks the keys a query may see; a float one is
    added to the scores."""
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))
    if is_causal:
        T, S = q.size(-2), k.size(-2)
        attn_mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
    if attn_mask is not None:
        scores = (scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                  else scores + attn_mask)
    probs = scores.softmax(-1)
    if dropout_p > 0.0:
        probs = F.dropout(probs, dropout_p)
    return probs.to(v.dtype) @ v


ATTENTION_KERNELS: dict[str, Callable[..., torch.Tensor]] = {
    "sdpa": F.scaled_dot_product_attention,
    "math": math_attention,
}
