"""Resume is exact for every objective, and `best/` is the lowest validation loss seen.

For every objective: 2N steps straight, against N steps stopped the way a user stops a run
(SIGINT: finish the step, save `latest`, return) and `resume="auto"` for N more. Every line of
metrics.jsonl (losses, validation figures, curriculum stage, [MASK] bias) is identical, and
so are the final weights and the whole training state (optimizer moments and step counts,
loader and objective generators, curriculum state, bias controller, counters, global RNG),
compared with torch.equal: nothing in the loop is allowed to differ by a rounding.
"""

from __future__ import annotations

import copy
import json
import math
import signal
from pathlib import Path

import pytest
import torch

from tests.objective_runs import CASES, case_config, case_dataset, make_datasets, quiet
from tests.test_curriculum_task import TINY_CONFIG, make_tiny_dataset
from unmask.data.dataset import Dataset
from unmask.model.checkpoint import load_checkpoint
from unmask.train.trainer import Trainer

N = 4
VOLATILE = {"time", "tokens_per_sec", "peak_memory_mb"}  # wall-clock figures


@pytest.fixture(scope="module")
def objective_datasets(tmp_path_factory):
    return make_datasets(tmp_path_factory.mktemp("objective-data"))


def assert_same(a, b, where="state"):
    """Nested dicts / lists / tensors / numbers equal exactly (tensors: torch.equal, dtype)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), where
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def metrics_lines(run: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in VOLATILE} for line in lines]


def val_losses(run: Path) -> list[tuple[int, float]]:
    return [(line["step"], line["val_loss"]) for line in metrics_lines(run) if "val_loss" in line]


def stop_at(trainer: Trainer, step: int) -> None:
    """Send this process a SIGINT once `step` is done: the run's graceful stop finishes the
    step, saves `latest` and returns, as it does for a user's Ctrl-C."""
    after_step = trainer.objective.after_step

    def hook(s, diagnostics):
        out = after_step(s, diagnostics)
        if s == step:
            signal.raise_signal(signal.SIGINT)
        return out

    trainer.objective.after_step = hook


def snapshot(trainer: Trainer) -> tuple[dict, dict]:
    """(weights, training state) right after a run, detached from the live objects."""
    return (copy.deepcopy(trainer.model.state_dict()), copy.deepcopy(trainer.state_dict()))


def run_straight_and_resumed(cfg, data: Dataset, root: Path, stop: int = N):
    full = Trainer(cfg, data, root / "full", log=quiet)
    full.run()
    straight = snapshot(full)

    half = Trainer(cfg, data, root / "half", log=quiet)
    stop_at(half, stop)
    assert half.run().get("interrupted") and half.counters.step == stop
    resumed = Trainer(cfg, data, root / "half", resume="auto", log=quiet)
    assert resumed.counters.step == stop
    resumed.run()
    return full, resumed, straight, snapshot(resumed)


def check_best(run: Path, cfg, data: Dataset, tmp: Path) -> tuple[int, float]:
    """best/ is the checkpoint of the first validation with the lowest val_loss of the run;
    re-validating its weights and state gives that loss again."""
    vals = val_losses(run)
    lowest = min(v for _, v in vals)
    step = next(s for s, v in vals if v == lowest)
    state = load_checkpoint(run / "best")["train_state"]
    assert state["counters"]["step"] == step
    assert state["counters"]["best_val"] == lowest
    again = Trainer(cfg, data, tmp, resume=str(run / "best"), log=quiet).evaluate()
    assert again["val_loss"] == lowest
    return step, lowest


@pytest.mark.parametrize("name", list(CASES))
def test_resume_is_bit_identical_for_every_objective(name, objective_datasets, tmp_path):
    data = case_dataset(name, objective_datasets)
    cfg = case_config(name, data, **{"train.max_iters": 2 * N, "train.eval_interval": 2})
    _, _, (w_full, s_full), (w_res, s_res) = run_straight_and_resumed(cfg, data, tmp_path)
    assert metrics_lines(tmp_path / "full") == metrics_lines(tmp_path / "half")
    assert len([l for l in metrics_lines(tmp_path / "full") if "train_loss" in l]) == 2 * N
    assert_same(w_full, w_res, "weights")
    assert_same(s_full, s_res, "train_state")
    optimizer = s_res["optimizer"]
    parts = optimizer if "state" not in optimizer else {"adamw": optimizer}
    moments = parts["adamw"]["state"]
    assert moments and all({"exp_avg", "exp_avg_sq", "step"} <= set(m) for m in moments.values())
    assert all(float(m["step"]) == 2 * N for m in moments.values())
    if "muon" in parts:  # optim.name=muon: Muon's momentum on the blocks' matrices
        assert all("momentum_buffer" in m for m in parts["muon"]["state"].values())

    check_best(tmp_path / "full", cfg, data, tmp_path / "check")
    for file in ("model.safetensors", "state.safetensors", "state.json"):
        assert (tmp_path / "full" / "best" / file).read_bytes() == \
            (tmp_path / "half" / "best" / file).read_bytes(), file


STAGED_FAST = TINY_CONFIG.replace("'val_loss_stale_count': 2},\n    {'type': 'random'",
                                  "'val_loss_stale_count': 1},\n    {'type': 'random'")


@pytest.fixture(scope="module")
def fast_curriculum(tmp_path_factory) -> Dataset:
    """The tiny curriculum dataset with stage 0 left after one stale evaluation."""
    assert STAGED_FAST != TINY_CONFIG
    return Dataset.load(make_tiny_dataset(tmp_path_factory.mktemp("fast") / "tiny", STAGED_FAST))


def test_resume_mid_curriculum_continues_in_the_advanced_stage(fast_curriculum, tmp_path):
    """The stage moves on before the stop; the resumed run trains and logs the same stages
    (its loader draws from the new stage's masks) as the straight run."""
    stop = 7
    cfg = case_config("unmasking", fast_curriculum,
                      **{"train.max_iters": 12, "train.eval_interval": 1, "optim.lr": 5e-2})
    full, _, (w_full, s_full), (w_res, s_res) = run_straight_and_resumed(
        cfg, fast_curriculum, tmp_path, stop)
    stages = [l["val_curriculum_stage"] for l in metrics_lines(tmp_path / "full")
              if "val_curriculum_stage" in l]
    advanced = [l["step"] for l in metrics_lines(tmp_path / "full")
                if l.get("val_curriculum_advanced") == 1.0]
    assert advanced and advanced[0] < stop, stages  # the stop falls in a later stage
    assert max(stages) >= 1
    assert metrics_lines(tmp_path / "full") == metrics_lines(tmp_path / "half")
    assert_same(w_full, w_res, "weights")
    assert_same(s_full, s_res, "train_state")
    assert s_res["task"]["curriculum"]["stage"] == full.objective.state.stage >= 1


def test_best_survives_a_resume_that_does_not_improve(objective_datasets, tmp_path):
    """N good steps, then resumed with a learning rate that wrecks the model: every later
    validation is worse, so best/ must stay the checkpoint saved before the stop, byte for
    byte, and the run still reports the old best."""
    data = case_dataset("mdlm", objective_datasets)
    cfg = case_config("mdlm", data, **{"train.max_iters": 2 * N, "train.eval_interval": 1})
    half = Trainer(cfg, data, tmp_path, log=quiet)
    stop_at(half, N)
    half.run()
    before = {f.name: f.read_bytes() for f in (tmp_path / "best").iterdir()}
    best_step, best_val = check_best(tmp_path, cfg, data, tmp_path / "check1")

    wreck = case_config("mdlm", data, **{"train.max_iters": 2 * N, "train.eval_interval": 1,
                                         "optim.lr": 3.0, "optim.min_lr": 3.0})
    result = Trainer(wreck, data, tmp_path, resume="auto", log=quiet).run()
    later = [v for s, v in val_losses(tmp_path) if s > N]
    assert len(later) == N and min(later) > best_val  # the premise: no improvement
    assert result["best_val_loss"] == best_val
    assert {f.name: f.read_bytes() for f in (tmp_path / "best").iterdir()} == before
    assert load_checkpoint(tmp_path / "latest")["train_state"]["counters"]["best_val"] == best_val
    assert check_best(tmp_path, wreck, data, tmp_path / "check2") == (best_step, best_val)
