"""model.sizing against the real thing: parameter counts against a built Transformer, FLOPs
against torch's FLOP counter, activation memory against autograd's saved tensors."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from unmask.config.presets import PRESETS
from unmask.config.schema import ModelConfig, apply_overrides
from unmask.errors import UserError
from unmask.model import sizing
from unmask.model.transformer import Transformer

TINY = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "vocab_size": 72}


def model_configs():
    for name, preset in PRESETS.items():
        yield pytest.param(apply_overrides(preset(), {"model.vocab_size": 72}).model, id=name)
    yield pytest.param(ModelConfig(**TINY, binary_head=True), id="binary-head")
    for pooling in ("mean", "cls", "layers"):
        yield pytest.param(ModelConfig(**TINY, mode="sequence_classifier", num_classes=3,
                                       pooling=pooling), id=f"sequence-classifier-{pooling}")
    yield pytest.param(ModelConfig(**TINY, mlp_hidden=100), id="explicit-mlp-hidden")
    yield pytest.param(ModelConfig(**TINY, ngram_max=4, ngram_buckets=50), id="ngram-embeddings")
    yield pytest.param(ModelConfig(n_layer=3, n_head=3, n_embd=96, block_size=16,
                                   vocab_size=1000, mode="language_model"), id="odd-widths")


@pytest.mark.parametrize("cfg", list(model_configs()))
def test_parameter_breakdown_matches_the_built_model(cfg):
    parts = sizing.parameter_breakdown(cfg)
    model = Transformer(cfg)
    assert parts["total"] == sum(p.numel() for p in model.parameters())
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")
    by_name = {n: p.numel() for n, p in model.named_parameters()}  # the tied head is listed once
    assert parts["attention"] == sum(v for n, v in by_name.items() if ".attn." in n)
    assert parts["mlp"] == sum(v for n, v in by_name.items() if ".mlp." in n)
    assert parts["norms"] == sum(v for n, v in by_name.items()
                                 if "norm" in n and ".attn." not in n)  # qk_norm: attention
    assert parts["embeddings"] == by_name["embed.weight"]
    assert parts["ngram_embeddings"] == by_name.get("ngrams.table.weight", 0)


def test_swiglu_hidden_width_rule():
    assert sizing.mlp_hidden(ModelConfig(n_embd=128)) == 384  # 8/3 * 128 = 341.3 -> 384
    assert sizing.mlp_hidden(ModelConfig(n_embd=768)) == 2048
    assert sizing.mlp_hidden(ModelConfig(n_embd=128, mlp_hidden=100)) == 100


def counted_flops_per_token(cfg: ModelConfig) -> float:
    """torch's FLOP counter over one forward + backward; the math attention backend runs
    attention as plain matmuls, which the counter sees."""
    model = Transformer(cfg)
    tokens = torch.randint(0, cfg.vocab_size, (3, cfg.block_size))
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        model(tokens).float().sum().backward()
    return counter.get_total_flops() / tokens.numel()


@pytest.mark.parametrize("mode", ["token_classifier", "language_model", "ngram_embeddings"])
def test_flops_per_token_matches_the_flop_counter(mode):
    cfg = (ModelConfig(**TINY, ngram_max=5) if mode == "ngram_embeddings"  # lookups: no FLOPs
           else ModelConfig(**TINY, mode=mode))
    # The counter counts matmuls only; the RMSNorm weights (in N, as in nanoGPT) are not one.
    norms = sizing.parameter_breakdown(cfg)["norms"]
    assert counted_flops_per_token(cfg) == sizing.flops_per_token(cfg) - 6 * norms


@pytest.mark.parametrize("extra", [{"binary_head": True},
                                   {"mode": "sequence_classifier", "num_classes": 3}])
def test_flops_without_the_vocabulary_head_leave_the_embedding_out(extra):
    cfg = ModelConfig(**TINY, **extra)
    assert counted_flops_per_token(cfg) == pytest.approx(sizing.flops_per_token(cfg), rel=0.01)


def test_flops_by_hand_and_the_causal_convention():
    cfg = ModelConfig(**TINY)  # h = 128: N = 8192 + 24576 + 160 + 2304 = 35232
    attention = 12 * 2 * 2 * 16 * 32
    assert sizing.flops_per_token(cfg) == 6 * 35232 + attention
    # Causal counts the full attention too (nanoGPT, PaLM), unless asked for the causal half.
    assert sizing.flops_per_token(cfg, causal=True) == sizing.flops_per_token(cfg)
    half = sizing.flops_per_token(cfg, causal=True, causal_discount=True)
    assert half == 6 * 35232 + attention * 33 / 64
    assert sizing.flops_per_token(cfg, causal=False, causal_discount=True) == 6 * 35232 + attention


def test_nanogpt_baby_gpt_figure():
    """MEASUREMENTS.md: nanoGPT's baby GPT costs about 71 MFLOP per token; ours has the same
    shape (SwiGLU instead of GELU, a few more MLP weights)."""
    cfg = apply_overrides(PRESETS["shakespeare-char"](), {"model.vocab_size": 67}).model
    assert sizing.flops_per_token(cfg) == pytest.approx(71e6, rel=0.05)


def test_mfu():
    cfg = ModelConfig(**TINY)
    per_token = sizing.flops_per_token(cfg)
    assert sizing.mfu(1000.0, cfg, 1000.0 * per_token) == pytest.approx(1.0)
    assert sizing.mfu(250.0, cfg, 1000.0 * per_token) == pytest.approx(0.25)


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12), ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA L4", 121e12),
    ("NVIDIA L40S", 362e12), ("NVIDIA GeForce RTX 4090", 165.2e12), ("Tesla T4", None),
])
def test_peak_flops_by_device_name(name, peak):
    assert sizing.peak_flops_for_name(name) == peak


def test_device_peak_flops_on_cpu_only_from_the_environment(monkeypatch):
    monkeypatch.delenv(sizing.PEAK_FLOPS_ENV, raising=False)
    assert sizing.device_peak_flops("cpu") is None
    monkeypatch.setenv(sizing.PEAK_FLOPS_ENV, "1.5e12")
    assert sizing.device_peak_flops("cpu") == 1.5e12
    monkeypatch.setenv(sizing.PEAK_FLOPS_ENV, "fast")
    with pytest.raises(UserError, match="UNMASK_PEAK_FLOPS"):
        sizing.device_peak_flops("cpu")


def saved_activation_bytes(cfg: ModelConfig, batch: int, amp: torch.dtype | None) -> int:
    """Bytes autograd keeps for backward (unique storages, parameters excluded) plus the
    logits the training step holds: the independent reference for `activations`."""
    model = Transformer(cfg).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    tokens = torch.randint(0, cfg.vocab_size - 2, (batch, cfg.block_size))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=amp or torch.bfloat16, enabled=amp is not None):
            logits = model(tokens)
        real = logits[..., :cfg.vocab_size - 2].float()  # as losses.likelihood.token_nll
        F.cross_entropy(real.flatten(0, 1), tokens.flatten(), reduction="none").sum()
    return sum(storages.values()) + logits.numel() * logits.element_size()


def with_model(cfg: ModelConfig, **changes) -> ModelConfig:
    return ModelConfig(**{**cfg.__dict__, **changes})


@pytest.mark.parametrize("amp", [None, torch.bfloat16], ids=["float32", "bf16-autocast"])
@pytest.mark.parametrize("extra", [{}, {"dropout": 0.1}, {"activation_checkpointing": True},
                                   {"mode": "language_model", "n_embd": 48, "n_head": 4}])
def test_activation_estimate_matches_autograds_saved_tensors(amp, extra):
    cfg = ModelConfig(**{**TINY, **extra})
    dtype = "float32" if amp is None else "bfloat16"

    def activations(c: ModelConfig) -> int:
        return sizing.training_memory_estimate(c, 4, dtype, device_type="cpu")["activations"]

    estimate, measured = activations(cfg), saved_activation_bytes(cfg, 4, amp)
    if cfg.activation_checkpointing:
        # The forward keeps block inputs only; the estimate adds the one block that the
        # backward pass recomputes at a time (what one more layer costs without checkpointing).
        plain = with_model(cfg, activation_checkpointing=False)
        one_block = activations(plain) - activations(with_model(plain, n_layer=1))
        assert estimate < activations(plain)
        estimate -= one_block
    assert estimate == pytest.approx(measured, rel=0.03)


def test_memory_parts_and_scaling():
    cfg = ModelConfig(**TINY)
    n = sizing.parameter_breakdown(cfg)["total"]
    one = sizing.training_memory_estimate(cfg, 1)
    eight = sizing.training_memory_estimate(cfg, 8)
    assert (one["weights"], one["grads"], one["optimizer"]) == (4 * n, 4 * n, 8 * n)
    assert eight["activations"] == pytest.approx(8 * one["activations"], rel=1e-6)
    assert eight["total"] == (eight["weights"] + eight["optimizer"]
                              + max(eight["activations"] + eight["transient"], eight["grads"]))
    bf16 = sizing.training_memory_estimate(ModelConfig(**{**TINY, "n_embd": 256}), 64,
                                           "bfloat16")
    fp32 = sizing.training_memory_estimate(ModelConfig(**{**TINY, "n_embd": 256}), 64)
    assert bf16["activations"] < fp32["activations"]
    inference = sizing.inference_memory_estimate(cfg, 8, kv_cache=True)
    assert inference["kv_cache"] == 2 * 2 * 8 * 32 * 32 * 4
    assert inference["total"] == sum(v for k, v in inference.items() if k != "total")


@pytest.mark.parametrize("name", ["adamw", "muon"])
@pytest.mark.parametrize("extra", [{}, {"qk_norm": True}, {"mode": "language_model"}])
def test_optimizer_state_estimate_equals_the_real_state(name, extra):
    """The estimate's optimizer term against the state tensors the real optimizer holds after
    one step (step counters aside), for AdamW and Muon (+ AdamW on the rest)."""
    from unmask.config.schema import OptimConfig
    from unmask.train.optim import OPTIMIZERS

    cfg = ModelConfig(**{**TINY, **extra})
    model = Transformer(cfg)
    optimizer = OPTIMIZERS[name](model, OptimConfig(name=name), torch.device("cpu"))
    model(torch.randint(0, 72, (2, 32))).float().square().mean().backward()
    optimizer.step()
    parts = getattr(optimizer, "parts", {name: optimizer})  # a ChainedOptimizer's parts
    assert (set(parts) == {"adamw", "muon"}) == (name == "muon")
    # the chained optimizer shows its parts' states as one, as torch's optimizers do
    assert len(optimizer.state) == sum(len(part.state) for part in parts.values())
    held = sum(t.numel() * t.element_size() for state in optimizer.state.values()
               for key, t in state.items() if torch.is_tensor(t) and key != "step")
    assert sizing.optimizer_state_bytes(cfg, name) == held
    assert sizing.training_memory_estimate(cfg, 4, optimizer=name)["optimizer"] == held


def test_max_batch_size_is_the_largest_that_fits():
    cfg = ModelConfig(**TINY)
    budget = 50 * 2**20
    b = sizing.max_batch_size(cfg, budget, fraction=1.0)
    assert b > 1
    assert sizing.training_memory_estimate(cfg, b)["total"] <= budget
    assert sizing.training_memory_estimate(cfg, b + 1)["total"] > budget
    assert sizing.max_batch_size(cfg, 1000) == 0


def test_free_memory_on_cpu():
    free = sizing.free_memory_bytes("cpu")
    assert free is None or (isinstance(free, int) and free > 0)
    assert sizing.dtype_bytes(torch.bfloat16) == 2 and sizing.dtype_bytes(None) == 4
    assert math.isclose(sizing.dtype_bytes("float16"), 2)
