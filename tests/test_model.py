import pytest
import torch

from unmask.config.io import ConfigError
from unmask.config.schema import ModelConfig
from unmask.model.transformer import Transformer


def test_logits_shape_and_parameter_count(tiny_model_config):
    model = Transformer(tiny_model_config)
    logits = model(torch.randint(0, 72, (3, 20)))
    assert logits.shape == (3, 20, 72)
    c = tiny_model_config
    hidden = 128  # 8/3 * 32 = 85.3, rounded up to a multiple of 64
    per_layer = 4 * c.n_embd**2 + 3 * c.n_embd * hidden + 2 * c.n_embd
    expected = c.vocab_size * c.n_embd + c.n_layer * per_layer + c.n_embd  # tied head
    assert model.num_parameters() == expected


def _changed_positions(cfg, j):
    model = Transformer(cfg).eval()
    x = torch.randint(0, 60, (1, 16))
    y = x.clone()
    y[0, j] = (x[0, j] + 1) % 60
    with torch.no_grad():
        diff = (model(x) - model(y)).abs().amax(-1)[0]
    return diff > 1e-6


def test_bidirectional_sees_the_future(tiny_model_config):
    changed = _changed_positions(tiny_model_config, j=10)
    assert changed[:10].all()  # earlier positions react to a later token


def test_causal_cannot_see_the_future(tiny_model_config):
    cfg = ModelConfig(**{**tiny_model_config.__dict__, "causal": True})
    changed = _changed_positions(cfg, j=10)
    assert not changed[:10].any() and changed[10:].all()


def test_too_long_input_rejected(tiny_model_config):
    model = Transformer(tiny_model_config)
    try:
        model(torch.zeros(1, 33, dtype=torch.long))
    except ValueError as err:
        assert "block_size" in str(err)
    else:
        raise AssertionError("expected a ValueError")


def test_heads_by_mode(tiny_model_config):
    base = tiny_model_config.__dict__
    seq = Transformer(ModelConfig(**{**base, "mode": "sequence_classifier", "num_classes": 3}))
    assert seq(torch.randint(0, 60, (2, 10))).shape == (2, 3)
    binary = Transformer(ModelConfig(**{**base, "binary_head": True}))
    assert binary(torch.randint(0, 60, (2, 10))).shape == (2, 10, 2)
    lm = ModelConfig(**{**base, "mode": "language_model"})
    assert lm.causal


def test_sequence_classifier_pooling(tiny_model_config):
    """cls reads position 0, mean every position, layers every position at every depth."""
    base = {**tiny_model_config.__dict__, "mode": "sequence_classifier", "num_classes": 3}
    tokens = torch.randint(0, 60, (4, 10))
    for pooling in ("cls", "mean", "layers"):
        torch.manual_seed(0)
        model = Transformer(ModelConfig(**{**base, "pooling": pooling})).eval()
        model.pool_norm.running_mean.normal_()  # non-trivial statistics, so they must be used
        model.pool_norm.running_var.uniform_(0.5, 2.0)
        h = model.embed(tokens)
        cos, sin = model.rope_cos[:10], model.rope_sin[:10]
        means = []
        for block in model.blocks:
            means.append(torch.nn.functional.rms_norm(h.mean(1), (h.size(-1),)))
            h = block(h, cos, sin)
        final = model.norm(h)
        expected = {"cls": final[:, 0], "mean": final.mean(1),
                    "layers": torch.cat(means[:] + [final.mean(1)], -1)}[pooling]
        norm = model.pool_norm
        standardised = (expected - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps)
        torch.testing.assert_close(model(tokens), model.classifier(standardised))
    with pytest.raises(ConfigError, match="pooling"):
        ModelConfig(**{**base, "pooling": "max"})


def test_sequence_classifier_without_classes_rejected(tiny_model_config):
    cfg = ModelConfig(**{**tiny_model_config.__dict__, "mode": "sequence_classifier"})
    try:
        Transformer(cfg)
    except ValueError as err:
        assert "num_classes" in str(err)
    else:
        raise AssertionError("expected a ValueError")
