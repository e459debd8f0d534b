import pytest
import torch

from unmask.model.transformer import Transformer
from unmask.sampling.draw import filter_logits
from unmask.sampling.unmasking import POLICIES, generate, sample

V, MASK = 65, 65


@pytest.fixture
def model(tiny_model_config):
    return Transformer(tiny_model_config).eval()


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("steps", [1, 5, 30, 100])
def test_fills_every_mask_and_emits_no_special(model, policy, steps):
    out = sample(model, vocab_size=V, mask_id=MASK, length=30, num_samples=3, steps=steps,
                 policy=policy, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 30)
    assert (out < V).all()


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_same_seed_same_text(model, policy):
    kw = dict(vocab_size=V, mask_id=MASK, length=24, num_samples=2, steps=8, policy=policy,
              temperature=1.0, top_k=10, top_p=0.9)
    a = sample(model, generator=torch.Generator().manual_seed(7), **kw)
    b = sample(model, generator=torch.Generator().manual_seed(7), **kw)
    c = sample(model, generator=torch.Generator().manual_seed(8), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_stream_reveals_monotonically_and_keeps_prompt(model):
    prompt = [1, 2, 3, 4]
    states = list(generate(model, vocab_size=V, mask_id=MASK, length=20, prompt_ids=prompt,
                           num_samples=2, steps=5, generator=torch.Generator().manual_seed(0)))
    assert len(states) == 5 and states[-1].remaining == 0
    remaining = [s.remaining for s in states]
    assert remaining == sorted(remaining, reverse=True)
    assert [int(s.revealed.sum()) for s in states] == [8, 8, 8, 8, 8]  # 4 per sample per step
    for s in states:
        assert s.tokens[:, :4].tolist() == [prompt, prompt]
        assert not s.revealed[:, :4].any()


def test_prompt_plus_length_beyond_context_rejected(model):
    with pytest.raises(ValueError, match="context"):
        sample(model, vocab_size=V, mask_id=MASK, length=30, prompt_ids=[1, 2, 3])


def test_unknown_policy_rejected(model):
    with pytest.raises(ValueError, match="confidence"):
        sample(model, vocab_size=V, mask_id=MASK, length=4, policy="nope")


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = filter_logits(logits, top_k=2).isfinite()
    assert kept.tolist() == [[True, True, False, False]]
    kept = filter_logits(logits, top_p=0.7).isfinite()  # 0.5 < 0.7, 0.5 + 0.3 >= 0.7
    assert kept.tolist() == [[True, True, False, False]]
    kept = filter_logits(logits, top_p=0.5).isfinite()
    assert kept.tolist() == [[True, False, False, False]]


def test_greedy_is_argmax(model):
    out = sample(model, vocab_size=V, mask_id=MASK, length=10, steps=1, temperature=0.0)
    x = torch.full((1, 10), MASK)
    assert torch.equal(out, model(x)[..., :V].argmax(-1))


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_blocks_fill_left_to_right(model, policy):
    states = list(generate(model, vocab_size=V, mask_id=MASK, length=24, num_samples=2,
                           steps=12, policy=policy, block_length=8,
                           generator=torch.Generator().manual_seed(0)))
    assert states[-1].remaining == 0 and len(states) <= 12
    blocks = []
    for s in states:
        revealed_blocks = set((s.revealed.nonzero()[:, 1] // 8).tolist())
        assert len(revealed_blocks) == 1  # one block at a time
        block = revealed_blocks.pop()
        assert not (s.tokens[:, : 8 * block] == MASK).any()  # earlier blocks are complete
        blocks.append(block)
    assert blocks == sorted(blocks) and blocks[-1] == 2


@pytest.mark.parametrize("length", [10, 40])  # 40 runs past the 32-token context
def test_kv_cache_generation_equals_no_cache(tiny_model_config, length):
    from unmask.config.schema import ModelConfig
    from unmask.sampling.causal import generate_causal

    cfg = ModelConfig(**{**tiny_model_config.__dict__, "mode": "language_model"})
    model = Transformer(cfg).eval()
    kw = dict(vocab_size=V, mask_id=MASK, length=length, prompt_ids=[1, 2, 3], num_samples=2,
              temperature=1.0, top_k=20)
    runs = [list(generate_causal(model, use_cache=c, generator=torch.Generator().manual_seed(5),
                                 **kw))[-1].tokens for c in (True, False)]
    assert torch.equal(runs[0], runs[1])
    assert runs[0].shape == (2, 3 + length) and (runs[0] < V).all()


def test_cached_logits_match_full_forward(tiny_model_config):
    from unmask.config.schema import ModelConfig
    from unmask.model.transformer import KVCache

    cfg = ModelConfig(**{**tiny_model_config.__dict__, "mode": "language_model"})
    model = Transformer(cfg).eval()
    x = torch.randint(0, V, (2, 20))
    with torch.no_grad():
        full = model(x)
        cache = KVCache(cfg, 2, "cpu")
        parts = [model(x[:, :7], cache), model(x[:, 7:8], cache), model(x[:, 8:20], cache)]
    assert torch.allclose(full, torch.cat(parts, 1), atol=1e-5)
