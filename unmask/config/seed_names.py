"""Seed-compatible training entry (seeds 000/001): nanoGPT-style flat config files and
`--key=value` overrides, translated to RunConfig dot paths and run by the one Trainer.

    python train_run.py config/shakespeare_diffusion/experiment1.py --max_iters=50
    unmask train config/shakespeare_diffusion/experiment1.py --max_iters=50

The rules:
- Config files are Python files of `name = literal` lines (read with `ast`, never executed).
  Several may be given, later ones win, then the `--key=value` overrides; override values are
  parsed as Python literals when they can be, else kept as strings (nanoGPT's configurator).
- Seed names map to RunConfig paths: SEED_NAMES, then any name that is the leaf of exactly one
  RunConfig field (`weight_unmask_task` -> self_correction.weight_unmask_task). Dot paths such
  as `--train.threads=1` pass through unchanged.
- `dataset = 'NAME'` selects the folder data/NAME (in the working directory, else in this
  repository). Unset, `block_size` and `model_mode` come from its meta.json, and a curriculum
  dataset (one prepared from a training_config.py) trains with `training_type = 'unmasking'`.
  All other unset names take the `shakespeare-char` preset's values (or those of the preset
  a file names with `preset = 'NAME'`).
- `out_dir` is the run directory; `init_from = 'resume'` continues the run in out_dir, or, with
  `pretrained_checkpoint_path`, starts transfer learning from that checkpoint.
- `decay_lr = False` means a constant learning rate (min_lr = learning_rate, no warmup), as in
  nanoGPT. `compile` True/False -> train.compile 'true'/'false'.
- Names that belong to the dataset now (`unmasking_stages`, ...) are errors that point to the
  dataset's training_config.py (seed 000). Names with no meaning here (NO_EFFECT) are accepted:
  silently when their value matches what unmask does, else with a one-line note. Any other
  name is a typo: an error naming the nearest valid name.
"""

from __future__ import annotations

import ast
import difflib
from pathlib import Path
from typing import Any

from unmask.config.io import ConfigError, read_config_file, valid_keys
from unmask.config.schema import RunConfig

REPO_ROOT = Path(__file__).resolve().parents[1]

BASE_PRESET = "shakespeare-char"

DEFAULT_DATASET = "shakespeare_char_diffusion"

# Seed name -> RunConfig path, where the names differ (or a leaf name is ambiguous).
SEED_NAMES = {
    "batch_size": "train.batch_size",
    "gradient_accumulation_steps": "train.grad_accum",
    "eval_iters": "train.eval_batches",
    "seed": "train.seed",
    "wandb_log": "train.wandb",
    "wandb_project": "train.wandb_project",
    "learning_rate": "optim.lr",
    "model_mode": "model.mode",
}

# Seed training_type values -> objective names (an objective name is accepted as is).
TRAINING_TYPES = {"unmasking": "unmasking", "remasking_binary": "remask_binary",
                  "remasking": "self_correction"}

# Handled here rather than mapped to one field (`preset`: the RunConfig preset to start from).
SPECIAL = ("dataset", "out_dir", "init_from", "decay_lr", "preset")

# Moved to the dataset by seed 000.
DATASET_SIDE = {"unmasking_stages": "UNMASKING_STAGES", "validation_stages": "VALIDATION_STAGES",
                "use_paragraph_boundaries": "USE_PARAGRAPH_BOUNDARIES",
                "use_all_stages_for_training": "USE_ALL_STAGES_FOR_TRAINING"}

_ANY = object()

# Accepted names with no effect: (values that match unmask's behaviour, what happens instead).
NO_EFFECT: dict[str, tuple[Any, str]] = {
    "bias": ((False,), "the model has no bias terms"),
    "attention_type": (("bidirectional",), "attention follows model_mode (bidirectional for "
                                           "token_classifier, causal for language_model)"),
    "use_rope": ((True,), "the model always uses rotary position embeddings"),
    "always_save_checkpoint": (_ANY, "every evaluation saves `latest`, and `best` when the "
                                     "validation loss improves"),
    "wandb_run_name": (_ANY, "wandb names the run"),
    "backend": (_ANY, "training is single-process"),
    "model_type": (("diffusion",), "the model follows model_mode"),
    "mask_token_id": ((None,), "special token ids come from the dataset's meta.json"),
    "wrong_token_id": ((None,), "special token ids come from the dataset's meta.json"),
    "meta_vocab_size": ((None,), "the vocabulary comes from the dataset's meta.json"),
    "extended_vocab_size": ((None,), "the vocabulary comes from the dataset's meta.json"),
}


def _leaf_paths() -> dict[str, str]:
    """Leaf name -> dot path for every RunConfig field whose leaf name is unique."""
    paths: dict[str, list[str]] = {}
    for key in valid_keys(RunConfig()):
        paths.setdefault(key.rpartition(".")[2], []).append(key)
    return {leaf: keys[0] for leaf, keys in paths.items() if len(keys) == 1}


def known_names() -> list[str]:
    return sorted({*SEED_NAMES, *_leaf_paths(), *SPECIAL, *DATASET_SIDE, *NO_EFFECT,
                   "eval_only", "training_type"})


def _literal(value: Any) -> Any:
    """nanoGPT's configurator: a command-line value is a Python literal if it parses as one."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} expects True or False, got {value!r}")


def is_seed_config(path: str | Path) -> bool:
    """A .py config file with at least one flat (seed-style) name."""
    path = Path(path)
    if path.suffix != ".py" or not path.is_file():
        return False
    try:
        keys = read_config_file(path)
    except ConfigError:
        return False  # the regular reader reports the problem
    return any("." not in key and key not in ("data", "preset") for key in keys)


def translate(values: dict[str, Any], origin: dict[str, str] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Split seed values into (RunConfig dot-path overrides, SPECIAL values, notes)."""
    origin = origin or {}
    leaves = _leaf_paths()
    paths = set(valid_keys(RunConfig()))
    dotted: dict[str, Any] = {}
    special: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in values.items():
        where = f" (in {origin[key]})" if key in origin else ""
        if key in paths:  # dot paths, and `data`
            dotted[key] = value
        elif key in SPECIAL:
            special[key] = value
        elif key in DATASET_SIDE:
            dataset = values.get("dataset", DEFAULT_DATASET)
            raise ConfigError(f"{key}{where} belongs to the dataset now (seed 000): set "
                              f"{DATASET_SIDE[key]} in data/{dataset}/training_config.py and "
                              f"run `python data/{dataset}/prepare.py`")
        elif key == "eval_only":
            if _as_bool(key, value):
                raise ConfigError(f"eval_only=True{where}: to evaluate a checkpoint, run "
                                  "`unmask eval OUT_DIR`")
        elif key in NO_EFFECT:
            accepted, what = NO_EFFECT[key]
            if accepted is not _ANY and value not in accepted:
                notes.append(f"{key}={value!r} has no effect: {what}")
        elif key == "training_type":
            name = TRAINING_TYPES.get(value, value)
            dotted["train.objective"] = name
        elif key in SEED_NAMES:
            dotted[SEED_NAMES[key]] = value
        elif key in leaves:
            dotted[leaves[key]] = value
        else:
            hint = difflib.get_close_matches(key, known_names() + sorted(paths), n=1, cutoff=0.6)
            raise ConfigError(f"unknown config key {key!r}{where}"
                              + (f"; did you mean '{hint[0]}'?" if hint else ""))
    if "train.compile" in dotted:
        compile_ = _as_bool("compile", dotted["train.compile"])
        dotted["train.compile"] = "true" if compile_ else "false"
    return dotted, special, notes
