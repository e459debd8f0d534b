"""Bidirectional transformer (RoPE, RMSNorm, SwiGLU, tied embeddings, SDPA) returning logits.

No loss and no sampling live here: objectives.py and sampling.py own those. `causal=True`
turns the same network into the autoregressive baseline.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from unmask.config.schema import ModelConfig
from unmask.errors import UserError
from unmask.model.ngram_embedding import NgramEmbedding
from unmask.runtime.attention_kernels import ATTENTION_KERNELS


def rope_tables(head_dim: int, length: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of shape (length, head_dim/2) for rotary embeddings (Su et al. 2021)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x1, x2) of each head by position-dependent angles. x: (B, nh, T, hs)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return rotated.type_as(x)


class KVCache:
    """Keys and values of past positions for causal decoding: (n_layer, B, nh, max_len, hs)."""

    def __init__(self, cfg: ModelConfig, batch_size: int, device, dtype=torch.float32):
        shape = (cfg.n_layer, batch_size, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0  # positions already stored

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store this call's keys/values; return all keys/values so far for attention."""
        start, end = self.length, self.length + k.size(2)
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.n_head, self.causal, self.dropout, self.layer = cfg.n_head, cfg.causal, cfg.dropout, layer
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        # QK-norm (Dehghani et al. 2023): bounded attention logits, so a higher lr stays stable.
        head_dim = cfg.n_embd // cfg.n_head
        self.qk_norm = cfg.qk_norm
        self.kernel = "sdpa"  # ATTENTION_KERNELS' name; Transformer.set_attention_kernel
        if cfg.qk_norm:
            self.q_norm, self.k_norm = nn.RMSNorm(head_dim), nn.RMSNorm(head_dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        if self.qk_norm:  # in float32, like the rotation (its weight is float32 under autocast)
            q, k = self.q_norm(q.float()).type_as(q), self.k_norm(k.float()).type_as(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # (B, nh, T, hs)
        mask, is_causal = None, self.causal
        if cache is not None:
            start = cache.length
            k, v = cache.update(self.layer, k, v)  # (B, nh, start + T, hs)
            if start > 0:  # query i (absolute start + i) may see keys 0 .. start + i
                is_causal = False
                if T > 1:
                    mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
        kernel = ATTENTION_KERNELS["sdpa" if cache is not None else self.kernel]
        y = kernel(q, k, v, attn_mask=mask, is_causal=is_causal,
                   dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    """Gated MLP (Shazeer 2020): down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = cfg.mlp_hidden or 64 * math.ceil(8 * cfg.n_embd / 3 / 64)
        self.gate_up = nn.Linear(cfg.n_embd, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, cfg.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(cfg.n_embd), nn.RMSNorm(cfg.n_embd)
        self.attn, self.mlp = Attention(cfg, layer), SwiGLU(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), cos, sin, cache))
        return x + self.drop(self.mlp(self.norm2(x)))


BACKBONE_PREFIXES = ("embed.", "ngrams.", "blocks.", "norm.")


class Transformer(nn.Module):
    """tokens (B, T) -> logits. Heads by mode:

    token_classifier / language_model: (B, T, vocab_size) over the extended vocabulary, the
    head tied to the embedding; with `binary_head`: (B, T, 2) good/wrong per token;
    sequence_classifier: (B, num_classes) from a pooled summary (see `pooled`), standardised
    by a BatchNorm without affine parameters, then one linear layer.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("model.vocab_size must be set (from the dataset) before building")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.ngrams = (NgramEmbedding(cfg.vocab_size, cfg.n_embd, cfg.ngram_max,
                                      cfg.ngram_buckets) if cfg.ngram_max else None)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = nn.RMSNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied embeddings
        if cfg.mode == "sequence_classifier":
            if cfg.num_classes < 2:
                raise UserError("a sequence_classifier needs model.num_classes >= 2")
            pooled_width = cfg.n_embd * (cfg.n_layer + 1 if cfg.pooling == "layers" else 1)
            # Mean-pooled states share a large common offset and differ by small amounts; the
            # parameter-free BatchNorm (as in MAE's linear probe) centres and scales them so a
            # linear head on frozen features trains in a few hundred steps.
            self.pool_norm = nn.BatchNorm1d(pooled_width, affine=False)
            self.classifier = nn.Linear(pooled_width, cfg.num_classes)
        elif cfg.binary_head:
            self.binary = nn.Linear(cfg.n_embd, 2)
        cos, sin = rope_tables(cfg.n_embd // cfg.n_head, cfg.block_size, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("proj.weight", "down.weight")):
                if cfg.zero_init_proj:  # every block starts as the identity (modded-nanogpt)
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        """Unique parameters (the tied head counts once)."""
        return sum(p.numel() for p in self.parameters())

    def set_attention_kernel(self, name: str) -> None:
        """Compute every block's attention with ATTENTION_KERNELS[name] (decoding with a KV
        cache always uses `sdpa`). Set it before torch.compile: the graph keeps the choice."""
        if name not in ATTENTION_KERNELS:
            raise UserError(f"unknown attention kernel {name!r}; choose one of "
                            f"{', '.join(ATTENTION_KERNELS)}")
        for block in self.blocks:
            block.attn.kernel = name

    @property
    def attention_kernel(self) -> str:
        return self.blocks[0].attn.kernel if len(self.blocks) else "sdpa"

    def backbone_parameters(self):
        return [p for n, p in self.named_parameters() if n.startswith(BACKBONE_PREFIXES)]

    def features(self, tokens: torch.Tensor, cache: KVCache | None = None,
                 layer_means: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Final normalised hidden states (B, T, C); `layer_means` collects the (B, C) mean over
        positions of the embeddings and of every block's output but the last."""
        T, start = tokens.size(1), cache.length if cache is not None else 0
        if start + T > self.cfg.block_size:
            raise UserError(f"sequence length {start + T} exceeds model.block_size "
                             f"{self.cfg.block_size}")
        cos, sin = self.rope_cos[start:start + T], self.rope_sin[start:start + T]
        x = self.embed(tokens)  # (B, T, C)
        if self.ngrams is not None:
            x = x + self.ngrams(tokens)
        x = self.drop(x)
        for block in self.blocks:
            if layer_means is not None:
                layer_means.append(x.mean(dim=1))
            if self.cfg.activation_checkpointing and self.training and cache is None:
                # Recompute the block in the backward pass instead of storing its activations:
                # ~1/3 more compute for memory that no longer grows with depth.
                x = torch.utils.checkpoint.checkpoint(block, x, cos, sin, use_reentrant=False)
            else:
                x = block(x, cos, sin, cache)
        if cache is not None:
            cache.length += T
        return self.norm(x)

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """The sequence summary a sequence_classifier reads, by `model.pooling`:

        cls: the final state at position 0 ([CLS]); mean: the mean final state; layers: the
        mean of every layer's states (embeddings, each block, RMS-normalised), concatenated.
        An unmasking backbone never learned to summarise into [CLS], and its last layer is
        trained only at masked positions, so frozen features are best read from every
        position and every depth (ELMo-style); "layers" is the feature-extraction choice.
        """
        inner = [] if self.cfg.pooling == "layers" else None
        h = self.features(tokens, layer_means=inner)
        if self.cfg.pooling == "cls":
            return h[:, 0]
        if self.cfg.pooling == "mean":
            return h.mean(dim=1)
        width = (self.cfg.n_embd,)
        return torch.cat([F.rms_norm(m, width) for m in inner] + [h.mean(dim=1)], dim=-1)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        if self.cfg.mode == "sequence_classifier":
            if cache is not None:
                raise ValueError("a sequence_classifier takes whole sequences, not a KV cache")
            return self.classifier(self.pool_norm(self.pooled(tokens)))  # (B, num_classes)
        h = self.features(tokens, cache)
        if self.cfg.binary_head:
            return self.binary(h)  # (B, T, 2)
        return self.head(h)  # (B, T, V)


def describe(model: Transformer) -> str:
    cfg = model.cfg
    kind = "causal" if cfg.causal else "bidirectional"
    return (f"{kind} transformer ({cfg.mode}): {cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} wide, "
            f"context {cfg.block_size}, {model.num_parameters() / 1e6:.2f}M parameters")
