"""Seed-compatible training entry (seeds 000/001): flat config files run by the one Trainer."""

from __future__ import annotations

import difflib
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unmask.config.io import ConfigError, read_config_file
from unmask.config.presets import PRESETS
from unmask.config.schema import RunConfig, apply_overrides
from unmask.config.seed_names import (
    BASE_PRESET,
    DEFAULT_DATASET,
    REPO_ROOT,
    TRAINING_TYPES,
    _as_bool,
    _literal,
    translate,
)


def dataset_dir(name: str) -> Path:
    """data/NAME in the working directory, else in this repository; or NAME as a path."""
    for root in (Path("data"), REPO_ROOT / "data"):
        if (root / name).is_dir():
            return root / name
    if "/" in name and Path(name).is_dir():
        return Path(name)
    folders = sorted(p.parent.name for p in (REPO_ROOT / "data").glob("*/prepare.py"))
    hint = difflib.get_close_matches(name, folders, n=1)
    raise ConfigError(f"dataset '{name}' not found: no folder data/{name}"
                      + (f"; did you mean '{hint[0]}'?" if hint else
                         f" (datasets: {', '.join(folders)})" if folders else ""))


def _prepare_hint(folder: Path) -> str:
    script = folder / "prepare.py"
    try:
        script = script.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    return f"python {script}"


def _dataset_meta(name: str, folder: Path) -> dict:
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        if (folder / "prepare.py").is_file():
            raise ConfigError(f"dataset '{name}' is not prepared; run `{_prepare_hint(folder)}` "
                              "first")
        raise ConfigError(f"{folder} is not a prepared dataset (no meta.json)")
    return json.loads(meta_path.read_text(encoding="utf-8"))


@dataclass
class SeedRun:
    """A translated seed configuration: what the Trainer needs, plus where and how to run."""

    cfg: RunConfig
    out_dir: Path
    resume: str | None
    notes: list[str] = field(default_factory=list)


def _read_sources(config_files: list[str], overrides: dict[str, Any]
                  ) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path in config_files:
        for key, value in read_config_file(Path(path)).items():
            values[key], origin[key] = value, str(path)
    for key, value in overrides.items():
        values[key] = value if "." in key else _literal(value)
        origin[key] = "the command line"
    return values, origin


def _check_objective(name: Any) -> None:
    from unmask.objectives.registry import OBJECTIVES

    if name != "auto" and name not in OBJECTIVES:
        raise ConfigError(f"unknown training_type '{name}'; choose one of "
                          f"{', '.join(sorted({*TRAINING_TYPES, *OBJECTIVES}))}")


def load_seed_run(config_files: list[str], overrides: dict[str, Any] | None = None,
                  out: str | None = None, resume: str | None = None) -> SeedRun:
    """Translate seed config files + overrides into a RunConfig and where to run it."""
    values, origin = _read_sources(config_files, dict(overrides or {}))
    dotted, special, notes = translate(values, origin)
    if "data" in dotted:  # an explicit dataset directory (unmask train --data)
        folder = Path(str(dotted["data"]))
    else:
        folder = dataset_dir(str(special.get("dataset", DEFAULT_DATASET)))
    meta = _dataset_meta(folder.name, folder)
    dotted["data"] = str(folder)
    dotted.setdefault("model.block_size", meta["block_size"])
    dotted.setdefault("model.mode", meta["supported_model_modes"][0])
    if "train.objective" not in dotted and "curriculum" in meta \
            and dotted["model.mode"] == "token_classifier":
        dotted["train.objective"] = "unmasking"
    _check_objective(dotted.get("train.objective", "auto"))

    init_from = str(special.get("init_from", "scratch"))
    if init_from not in ("scratch", "resume"):
        raise ConfigError(f"init_from='{init_from}' is not supported; use 'scratch' or 'resume' "
                          "(with pretrained_checkpoint_path for transfer learning)")
    transfer = bool(dotted.get("transfer.pretrained_checkpoint_path"))
    if init_from == "resume" and transfer:
        dotted["transfer.init_from"] = "resume"
    preset = str(special.get("preset", BASE_PRESET))
    if preset not in PRESETS:
        hint = difflib.get_close_matches(preset, list(PRESETS), n=1)
        raise ConfigError(f"unknown preset '{preset}'"
                          + (f"; did you mean '{hint[0]}'?" if hint else
                             f"; choose one of {', '.join(PRESETS)}"))
    cfg = apply_overrides(PRESETS[preset](), dotted)
    if "decay_lr" in special and not _as_bool("decay_lr", special["decay_lr"]):
        cfg = apply_overrides(cfg, {"optim.min_lr": cfg.optim.lr, "optim.warmup_iters": 0})
    if cfg.train.wandb and importlib.util.find_spec("wandb") is None:
        notes.append("wandb_log=True but wandb is not installed (pip install wandb); "
                     "metrics go to OUT_DIR/metrics.jsonl only")
        cfg = apply_overrides(cfg, {"train.wandb": False})
    out_dir = Path(out or str(special.get("out_dir", "out")))
    if resume is None and init_from == "resume" and not transfer:
        resume = "auto"
    return SeedRun(cfg, out_dir, resume, notes)


def train_seed_config(config_files: list[str], overrides: dict[str, Any] | None = None,
                      out: str | None = None, resume: str | None = None,
                      log=print, warn=None) -> dict:
    """Run a seed configuration with the Trainer; returns the trainer's summary."""
    from unmask.data.dataset import Dataset
    from unmask.train.trainer import Trainer

    run = load_seed_run(config_files, overrides, out=out, resume=resume)
    warn = warn or (lambda line: print(line, file=sys.stderr))
    for note in run.notes:
        warn(f"note: {note}")
    dataset = Dataset.load(run.cfg.data)
    return Trainer(run.cfg, dataset, run.out_dir, resume=run.resume, log=log).run()


USAGE = """usage: python train_run.py [CONFIG.py ...] [--key=value ...]

Train with seed-style (nanoGPT) config files, e.g.
  python data/shakespeare_char_diffusion/prepare.py
  python train_run.py config/shakespeare_diffusion/experiment1.py
  python train_run.py config/cpu_training.py --max_iters=50
Names: see unmask/config/seed_names.py; RunConfig dot paths (--train.threads=1) work too."""


def main(argv: list[str] | None = None, prog: str = "train_run.py") -> int:
    from unmask.cli.errors import parse_overrides, run_reporting_errors

    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    files = [a for a in argv if not a.startswith("--")]

    def command() -> int:
        overrides = parse_overrides([a for a in argv if a.startswith("--")], "--max_iters=50")
        result = train_seed_config(files, overrides,
                                   warn=lambda line: print(f"{prog}: {line}", file=sys.stderr))
        print(json.dumps(result))
        return 0

    return run_reporting_errors(prog, command)
