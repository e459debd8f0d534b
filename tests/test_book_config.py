"""`unmask book` configuration: presets, dot-path overrides with list indices, files."""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unmask.config.book import (
    BOOK_PRESETS,
    BookConfig,
    apply_book_overrides,
    parse_path,
    read_override_file,
    resolve_book_config,
    to_run_config,
)
from unmask.config.io import ConfigError
from unmask.config.paths import parse_override_args
from unmask.model.sizing import parameter_breakdown
from unmask.model.transformer import Transformer


def test_list_index_override_reaches_the_right_field():
    cfg = resolve_book_config("default", overrides={"curriculum.stages[0].epochs": "3"})
    assert [s.epochs for s in cfg.curriculum.stages] == [3, 150, 300]
    assert BookConfig().curriculum.stages[0].epochs == 75  # the preset is not mutated
    cfg = cfg.override({"curriculum.stages[2].mask_max": 1, "training.label_smoothing": "0.15",
                        "model.d_model": "512", "model.n_heads": 8})
    assert cfg.curriculum.stages[2].mask_max == 1.0 and isinstance(
        cfg.curriculum.stages[2].mask_max, float)
    assert cfg.training.label_smoothing == 0.15 and cfg.model.d_model == 512


@pytest.mark.parametrize("key, nearest", [
    ("curriculum.stage[0].epochs", "curriculum.stages[0].epochs"),
    ("curriculum.stages[3].epochs", "curriculum.stages[2].epochs"),
    ("training.labelsmoothing", "training.label_smoothing"),
    ("model.dmodel", "model.d_model"),
])
def test_a_bad_path_names_the_nearest_key(key, nearest):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'.*did you mean "
                                          f"'{nearest}'".replace("[", r"\[").replace("]", r"\]")):
        resolve_book_config("debug", overrides={key: "3"})


@pytest.mark.parametrize("overrides, message", [
    ({"curriculum.stages[0].epochs": "many"}, "expects a int"),
    ({"curriculum.stages[1].mask_min": "0.9"}, "mask_min <= mask_max"),
    ({"curriculum.stages[0].format": "chapters"}, "format must be one of"),
    ({"model.n_heads": "5"}, "must be an even whole number"),
    ({"curriculum.transition": "vibes"}, "curriculum.transition must be one of"),
    ({"curriculum..x": "1"}, "malformed config key"),
    ({"training.optimizer": "sgd"}, "training.optimizer must be one of adamw, muon"),
    ({"training.ema_decay": "1.0"}, r"training.ema_decay must be in \[0, 1\)"),
])
def test_bad_values_are_rejected_with_a_reason(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_book_config("default", overrides=overrides)


def test_recipe_levers_reach_the_run_config():
    cfg = resolve_book_config("debug", overrides={
        "training.optimizer": "muon", "training.ema_decay": "0.99", "model.qk_norm": "true",
        "model.zero_init_proj": "true"})
    run = to_run_config(cfg, max_iters=10)
    assert (run.optim.name, run.train.ema_decay) == ("muon", 0.99)
    assert run.model.qk_norm and run.model.zero_init_proj


def test_parse_path():
    assert parse_path("curriculum.stages[10].epochs") == ["curriculum", "stages", 10, "epochs"]
    with pytest.raises(ConfigError):
        parse_path("curriculum.[0]")


def test_override_files(tmp_path):
    nested = tmp_path / "o.json"
    nested.write_text(json.dumps({"preset": "debug", "training": {"batch_size": 4},
                                  "curriculum": {"stages": [{"epochs": 7}]}}))
    flat = tmp_path / "o.py"
    flat.write_text('"""an experiment"""\ntraining = {"learning_rate": 5e-5}\n'
                    'model = {"d_model": 256, "n_heads": 4}\n')
    lines = tmp_path / "o.txt"
    lines.write_text("# comment\ncurriculum.stages[2].epochs = 9  # trailing\n"
                     "generation.top_k=5\n")
    assert read_override_file(nested) == {"preset": "debug", "training.batch_size": 4,
                                          "curriculum.stages[0].epochs": 7}
    cfg = resolve_book_config(None, [str(nested), str(flat), str(lines)],
                              {"training.batch_size": "2"})
    assert cfg.preset == "debug" and cfg.training.batch_size == 2
    assert cfg.training.learning_rate == 5e-5 and cfg.model.d_model == 256
    assert [s.epochs for s in cfg.curriculum.stages] == [7, 10, 9]
    assert cfg.generation.top_k == 5
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    with pytest.raises(ConfigError, match="only `name = literal`"):
        read_override_file(bad)


def test_config_round_trips_through_json():
    for make in BOOK_PRESETS.values():
        cfg = make()
        assert BookConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_unknown_preset_names_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'debug'"):
        resolve_book_config("debgu")


@pytest.mark.parametrize("preset", list(BOOK_PRESETS))
def test_parameter_count_equals_the_model_for_every_preset(preset):
    """model.sizing's breakdown (what --dry-run prints) is the real model's numel."""
    run = to_run_config(BOOK_PRESETS[preset](), max_iters=10)
    run.model.vocab_size = 2347 + 7
    with torch.device("meta"):  # no memory for the 12 x 768 default
        model = Transformer(run.model)
    parts = parameter_breakdown(run.model)
    assert parts["total"] == sum(p.numel() for p in model.parameters())
    assert parts["embeddings"] == model.embed.weight.numel()


def test_run_config_carries_the_book_settings():
    cfg = BOOK_PRESETS["debug"]()
    run = to_run_config(cfg, max_iters=123, data="somewhere")
    assert run.train.objective == "book_curriculum" and run.train.max_iters == 123
    assert (run.model.n_layer, run.model.n_embd, run.model.block_size) == (2, 128, 128)
    assert run.sample.steps == cfg.generation.steps and run.data == "somewhere"
    cfg = apply_book_overrides(cfg, {"generation.length": "0"})
    assert to_run_config(cfg, 1).sample.length == cfg.data.sequence_length


BOOK_KEYS = ["curriculum.stages[0].epochs", "curriculum.stages[1].mask_min", "model.n_heads",
             "training.label_smoothing", "data.target_coverage", "curriculum.transition",
             "curriculum.stages[9].epochs", "curriculum.stages", "model.d_model", "trainig.x"]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(BOOK_KEYS) | st.text(max_size=20),
                          st.text(max_size=12)), max_size=4))
def test_any_override_applies_or_is_one_line_config_error(pairs):
    try:
        cfg = resolve_book_config("debug", overrides=parse_override_args(
            [f"{k}={v}" for k, v in pairs]))
    except ConfigError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert isinstance(cfg, BookConfig) and cfg.model.d_model % cfg.model.n_heads == 0
