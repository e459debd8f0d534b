import pytest

from unmask.config.io import ConfigError
from unmask.config.presets import PRESETS, resolve_config


def test_presets_build_and_validate():
    """Every preset resolves by name, survives the JSON round trip a checkpoint's config.json
    makes, and builds a model that runs (the dataclasses alone validate field by field)."""
    import json

    import torch

    from unmask.config.schema import RunConfig, apply_overrides
    from unmask.model.transformer import Transformer

    for name, make in PRESETS.items():
        cfg = make()
        assert resolve_config(name) == cfg, name
        assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg, name
        built = apply_overrides(cfg, {"model.vocab_size": 72, "model.num_classes": 3})
        model = Transformer(built.model)
        logits = model(torch.zeros(1, 8, dtype=torch.long))
        assert logits.shape == (1, 8, 72), name
        assert model.cfg.causal == (cfg.model.mode == "language_model"), name
    baby = resolve_config("shakespeare-char")
    assert (baby.model.n_layer, baby.model.n_head, baby.model.n_embd, baby.model.block_size,
            baby.train.batch_size, baby.model.dropout) == (6, 6, 384, 256, 64, 0.2)


def test_overrides_are_typed():
    cfg = resolve_config("debug", {"optim.lr": "3e-4", "model.n_layer": "3",
                                   "train.antithetic": "false"})
    assert cfg.optim.lr == 3e-4 and cfg.model.n_layer == 3 and cfg.train.antithetic is False


def test_typo_suggests_nearest_key():
    with pytest.raises(ConfigError, match="did you mean 'optim.lr'"):
        resolve_config("debug", {"optim.lrr": "1"})
    with pytest.raises(ConfigError, match="did you mean 'cpu-demo'"):
        resolve_config("cpu-dem")


def test_invalid_values_rejected():
    with pytest.raises(ConfigError, match="divisible"):
        resolve_config("debug", {"model.n_head": "3"})
    with pytest.raises(ConfigError, match="expects a int"):
        resolve_config("debug", {"model.n_layer": "four"})


def test_python_and_json_config_files(tmp_path):
    py = tmp_path / "exp.py"
    py.write_text('"""doc"""\npreset = "debug"\n# comment\n{}\n'.replace("{}", "optim = {'lr': 0.005}"))
    assert resolve_config(str(py)).optim.lr == 0.005
    js = tmp_path / "exp.json"
    js.write_text('{"preset": "debug", "model": {"n_layer": 3}}')
    assert resolve_config(str(js)).model.n_layer == 3


def test_config_file_code_is_never_executed(tmp_path):
    py = tmp_path / "evil.py"
    py.write_text("import os\nos.system('echo pwned')\n")
    with pytest.raises(ConfigError, match="name = literal"):
        resolve_config(str(py))
