"""The two attention kernels compute the same thing, and a run picks one by measurement."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from unmask.config.presets import resolve_config
from unmask.config.schema import ConfigError
from unmask.errors import UserError
from unmask.runtime.attention_kernels import ATTENTION_KERNELS, math_attention
from unmask.model.transformer import KVCache, Transformer
from unmask.runtime import machine_cache
from unmask.train import attention_probe
from unmask.train.attention_probe import choose_attention, faster_kernel
from unmask.train.trainer import Trainer

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(machine_cache.CACHE_ENV, raising=False)


def naive_attention(q, k, v, allowed):
    """Attention one query at a time from its definition: weights exp(q·k/√d) over the keys it
    may see, normalised, times the values."""
    out = torch.zeros_like(q)
    for b in range(q.size(0)):
        for h in range(q.size(1)):
            for i in range(q.size(2)):
                keys = [j for j in range(k.size(2)) if allowed[i, j]]
                w = torch.stack([q[b, h, i] @ k[b, h, j] for j in keys]) / math.sqrt(q.size(-1))
                w = (w - w.max()).exp()
                out[b, h, i] = sum(wj * v[b, h, j] for wj, j in zip(w / w.sum(), keys))
    return out


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 2), heads=st.integers(1, 3), length=st.integers(1, 6),
       head_dim=st.sampled_from([2, 4, 8]), causal=st.booleans(), seed=st.integers(0, 99))
def test_math_attention_is_the_definition(batch, heads, length, head_dim, causal, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, length, head_dim, generator=g, dtype=torch.float64)
               for _ in range(3))
    allowed = torch.ones(length, length, dtype=torch.bool)
    if causal:
        allowed = allowed.tril()
    expected = naive_attention(q, k, v, allowed)
    torch.testing.assert_close(math_attention(q, k, v, is_causal=causal), expected)
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                               expected)


@pytest.mark.parametrize("causal", [False, True])
def test_kernels_agree_in_value_and_gradient(causal):
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(2, 3, 10, 8, generator=g) for _ in range(3)]
    results = {}
    for name, kernel in ATTENTION_KERNELS.items():
        q, k, v = (t.clone().requires_grad_() for t in inputs)
        out = kernel(q, k, v, is_causal=causal)
        (out * torch.arange(out.numel()).view_as(out).sin()).sum().backward()
        results[name] = (out, q.grad, k.grad, v.grad)
    for a, b in zip(results["sdpa"], results["math"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_boolean_and_additive_masks_follow_sdpa():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 4, 8, generator=g) for _ in range(3))
    keep = torch.ones(4, 6, dtype=torch.bool).tril(2)  # 2 cached positions, then causal
    k6, v6 = (torch.randn(1, 2, 6, 8, generator=g) for _ in range(2))
    torch.testing.assert_close(math_attention(q, k6, v6, attn_mask=keep),
                               F.scaled_dot_product_attention(q, k6, v6, attn_mask=keep))
    bias = torch.randn(4, 4, generator=g)
    torch.testing.assert_close(math_attention(q, k, v, attn_mask=bias),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=bias))


def test_the_model_computes_the_same_with_either_kernel(tiny_model_config):
    tokens = torch.randint(0, 60, (3, 32), generator=torch.Generator().manual_seed(2))
    for causal in (False, True):
        tiny_model_config.causal = causal
        model = Transformer(tiny_model_config)
        torch.nn.init.normal_(model.blocks[0].attn.proj.weight, std=0.02)  # zero-init aside
        fused = model(tokens)
        model.set_attention_kernel("math")
        assert all(b.attn.kernel == "math" for b in model.blocks)
        torch.testing.assert_close(model(tokens), fused, rtol=1e-5, atol=1e-5)


def test_decoding_with_a_cache_keeps_sdpa_and_matches_a_whole_pass(tiny_model_config):
    tiny_model_config.causal, tiny_model_config.mode = True, "language_model"
    model = Transformer(tiny_model_config).eval()
    model.set_attention_kernel("math")
    tokens = torch.randint(0, 60, (2, 12), generator=torch.Generator().manual_seed(3))
    cache = KVCache(tiny_model_config, 2, CPU)
    stepwise = torch.cat([model(tokens[:, :5], cache)] +
                         [model(tokens[:, i:i + 1], cache) for i in range(5, 12)], dim=1)
    torch.testing.assert_close(stepwise, model(tokens), rtol=1e-5, atol=1e-5)


def test_compiled_model_with_the_math_kernel_matches_eager(tiny_model_config):
    """torch.compile leaves the math kernel out of its graph (a graph break), and the compiled
    model computes what the eager one does."""
    model = Transformer(tiny_model_config)
    model.set_attention_kernel("math")
    tokens = torch.randint(0, 60, (2, 32), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(torch.compile(model)(tokens), model(tokens), rtol=1e-4,
                               atol=1e-5)


def test_an_unknown_kernel_is_refused(tiny_model_config):
    with pytest.raises(UserError, match="unknown attention kernel 'flash'.*sdpa, math"):
        Transformer(tiny_model_config).set_attention_kernel("flash")
    with pytest.raises(ConfigError, match="train.attention must be one of auto, sdpa, math"):
        resolve_config("debug", {"train.attention": "flash"})


# ----------------------------------------------------------------------------- the choice


@pytest.mark.parametrize("sdpa, math_ms, expected", [
    (10.0, 5.0, "math"), (10.0, 9.0, "math"),  # exactly the 10 % margin
    (10.0, 9.5, "sdpa"), (10.0, 12.0, "sdpa"),
])
def test_math_only_when_faster_by_the_margin(sdpa, math_ms, expected):
    assert faster_kernel({"sdpa_ms": sdpa, "math_ms": math_ms}) == expected


def _cfg(**overrides):
    tiny = {"model.n_layer": 1, "model.n_head": 2, "model.n_embd": 16, "model.block_size": 16,
            "train.batch_size": 4, "model.vocab_size": 72}
    return resolve_config("debug", {**tiny, **overrides})


def test_no_measurement_where_the_answer_is_known(monkeypatch):
    monkeypatch.setattr(attention_probe, "time_kernels", lambda *a: pytest.fail("measured"))
    auto = _cfg()
    assert choose_attention(_cfg(**{"train.attention": "math"}), CPU, None, True, False) == \
        attention_probe.AttentionChoice("math", "explicit")
    assert choose_attention(auto, torch.device("cuda"), None, True, False).kernel == "sdpa"
    assert choose_attention(auto, CPU, None, False, False).source == "short-run"
    assert choose_attention(auto, CPU, None, True, True).source == "distributed"


def test_measured_once_then_decided_from_the_cache(monkeypatch):
    calls = []

    def fake(*shape):
        calls.append(shape)
        return {"sdpa_ms": 20.0, "math_ms": 6.0}

    monkeypatch.setattr(attention_probe, "time_kernels", fake)
    cfg = _cfg()
    first = choose_attention(cfg, CPU, torch.bfloat16, True, False)
    second = choose_attention(cfg, CPU, torch.bfloat16, True, False)
    assert (first.kernel, first.source, second.kernel, second.source) == \
        ("math", "measured", "math", "cached")
    assert calls == [(4, 2, 16, 8, False, torch.bfloat16)]
    assert "attention math (measured: forward + backward sdpa 20.00 ms, math 6.00 ms)" == \
        first.describe()
    choose_attention(cfg, CPU, None, True, False)  # another precision: another key
    assert len(calls) == 2


def test_real_timing_leaves_the_global_random_stream_alone():
    torch.manual_seed(5)
    ms = attention_probe.time_kernels(2, 2, 16, 8, False, None, reps=2)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(3))
    assert set(ms) == {"sdpa_ms", "math_ms"} and all(t > 0 for t in ms.values())


def test_a_trainer_sets_the_chosen_kernel_and_logs_it(shakespeare, tmp_path):
    lines = []
    tiny = {"model.n_layer": 1, "model.n_head": 2, "model.n_embd": 16, "model.block_size": 16,
            "train.batch_size": 4, "train.max_iters": 3, "train.progress": False,
            "train.dtype": "float32", "train.attention": "math"}
    trainer = Trainer(resolve_config("debug", tiny), shakespeare, tmp_path / "a",
                      log=lines.append)
    assert trainer.model.blocks[0].attn.kernel == "math"
    assert "attention math (explicit)" in lines
    trainer.run()
    short = Trainer(resolve_config("debug", {**tiny, "train.attention": "auto"}), shakespeare,
                    tmp_path / "b", log=lines.append)
    assert short.model.blocks[0].attn.kernel == "sdpa"  # a short run is not measured


def test_the_cpu_probes_time_the_kernels_the_run_may_use():
    from unmask.train.speed import cpu_probe_shape

    auto = _cfg()
    assert cpu_probe_shape(auto, CPU, long_run=False).attention == ("sdpa",)
    assert cpu_probe_shape(auto, CPU, long_run=True).attention == tuple(ATTENTION_KERNELS)
    assert cpu_probe_shape(_cfg(**{"train.attention": "math"}), CPU, True).attention == ("math",)
    shape = cpu_probe_shape(auto, CPU, long_run=True)
    assert (shape.width, shape.context, shape.tokens) == (16, 16, 4 * 16)
