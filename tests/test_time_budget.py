"""train.max_minutes: the loop stops when its training time reaches the budget, the cosine
schedule decays over the steps the budget holds, and the time spent survives a resume. The
clock is replaced by one that reads the step counter, so the tests do not depend on speed."""

import json

import pytest

from unmask.config.io import ConfigError
from unmask.config.presets import resolve_config
from unmask.model import checkpoint as ckpt
from unmask.train import time_budget
from unmask.train.optim import cosine_lr
from unmask.train.time_budget import TimeBudget
from unmask.train.trainer import Trainer


class StepClock:
    """A clock that reads `seconds_per_step` x the trainer's step, plus a one-off `stall`
    (what a first step's compilation adds) once the step passes `stall_after`."""

    def __init__(self, seconds_per_step=1.0, stall=0.0, stall_after=0):
        self.trainer, self.per_step = None, seconds_per_step
        self.stall, self.stall_after = stall, stall_after
        self.step = 0  # used when no trainer is attached

    def __call__(self) -> float:
        step = self.trainer.counters.step if self.trainer else self.step
        return step * self.per_step + (self.stall if step > self.stall_after else 0.0)


def test_the_horizon_is_the_steps_the_remaining_time_holds(monkeypatch):
    clock = StepClock(seconds_per_step=2.0, stall=50.0, stall_after=0)
    monkeypatch.setattr(time_budget, "clock", clock)
    budget = TimeBudget(minutes=5, max_iters=10_000)  # 300 s
    assert budget.horizon == 10_000 and not budget.exhausted
    clock.step = 10
    budget.update(10)  # the first update sets the origin of the rate: 70 s spent
    assert budget.horizon == 10_000
    clock.step = 20
    budget.update(20)  # 2 s/step since then (the 50 s stall is not a rate); 90 s spent
    assert budget.horizon == 20 + (300 - 90) // 2 == 125
    clock.step = 125
    budget.update(125)
    assert budget.exhausted and budget.horizon == 125


def test_the_horizon_never_passes_max_iters_and_no_budget_counts_only(monkeypatch):
    clock = StepClock()
    monkeypatch.setattr(time_budget, "clock", clock)
    capped = TimeBudget(minutes=60, max_iters=50)
    unlimited = TimeBudget(minutes=0, max_iters=50, spent_before=7.0)
    for step in (5, 10):
        clock.step = step
        capped.update(step)
        unlimited.update(step)
    assert capped.horizon == 50 and not capped.exhausted
    assert not unlimited.enabled and unlimited.horizon == 50 and not unlimited.exhausted
    assert unlimited.spent() == 7.0 + 10


def test_a_negative_budget_is_refused():
    with pytest.raises(ConfigError, match="train.max_minutes must be >= 0"):
        resolve_config("debug", {"train.max_minutes": -1})


def _budgeted(shakespeare, out, minutes, resume=None):
    cfg = resolve_config("debug", {"train.progress": False, "train.max_iters": 500,
                                   "train.max_minutes": minutes, "train.eval_interval": 1000,
                                   "train.log_interval": 5, "train.eval_batches": 1,
                                   "optim.warmup_iters": 0, "optim.min_lr": 1e-5})
    trainer = Trainer(cfg, shakespeare, out, resume=resume, log=lambda *_: None)
    return trainer


def _logged(out, key):
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(line["step"], line[key]) for line in lines if key in line]


def test_a_budgeted_run_stops_validates_saves_and_ends_its_schedule(shakespeare, tmp_path,
                                                                   monkeypatch):
    """1 s per step, a 30 s budget, log every 5 steps: it stops after step 30 of 500 with a
    validation and a checkpoint there, and its learning rate ends near min_lr (the schedule
    decayed over the 30 steps the time held, not the 500 of max_iters)."""
    clock = StepClock()
    monkeypatch.setattr(time_budget, "clock", clock)
    trainer = _budgeted(shakespeare, tmp_path, minutes=0.5)
    clock.trainer = trainer
    result = trainer.run()
    assert result["step"] == 30 and "val_loss" in result
    assert [step for step, _ in _logged(tmp_path, "val_loss")] == [30]
    state = ckpt.load_checkpoint(tmp_path / "latest")["train_state"]["counters"]
    assert state["step"] == 30 and state["train_seconds"] == pytest.approx(30.0)
    lr = dict(_logged(tmp_path, "lr"))
    o = trainer.cfg.optim
    assert lr[30] == pytest.approx(cosine_lr(29, o.lr, o.min_lr, 0, 30))
    assert lr[30] < o.min_lr + 0.01 * (o.lr - o.min_lr)
    # from step 10 on, the horizon is the 30 steps the budget holds
    assert lr[20] == pytest.approx(cosine_lr(19, o.lr, o.min_lr, 0, 30))


def _run_half_a_minute(shakespeare, out, monkeypatch) -> tuple[StepClock, Trainer]:
    """A 30 s budget at 1 s a step: the run stops after step 30 (the test above)."""
    clock = StepClock()
    monkeypatch.setattr(time_budget, "clock", clock)
    first = _budgeted(shakespeare, out, minutes=0.5)
    clock.trainer = first
    first.run()
    return clock, first


def test_a_resumed_budgeted_run_counts_the_time_already_spent(shakespeare, tmp_path,
                                                            monkeypatch):
    clock, _ = _run_half_a_minute(shakespeare, tmp_path, monkeypatch)
    second = _budgeted(shakespeare, tmp_path, minutes=1.0, resume="auto")
    clock.trainer = second
    # the clock reads the step, so this session's origin is step 30: 30 s before + 30 s now
    assert second.run()["step"] == 60
    counters = ckpt.load_checkpoint(tmp_path / "latest")["train_state"]["counters"]
    assert counters["train_seconds"] == pytest.approx(60.0)


def test_a_resumed_run_whose_budget_is_spent_trains_no_further(shakespeare, tmp_path,
                                                                monkeypatch):
    clock, first = _run_half_a_minute(shakespeare, tmp_path, monkeypatch)
    saved = (tmp_path / "latest" / "model.safetensors").read_bytes()
    said = []
    second = Trainer(first.cfg, first.dataset, tmp_path, resume="auto", log=said.append)
    clock.trainer = second
    assert second.run()["step"] == 30
    assert any("already spent by step 30" in line for line in said)
    assert (tmp_path / "latest" / "model.safetensors").read_bytes() == saved


def test_dry_run_estimates_a_budgeted_run_by_its_budget(shakespeare, tmp_path):
    from unmask.train.dry_run import dry_run

    cfg = resolve_config("debug", {"train.progress": False, "train.max_iters": 10**6,
                                   "train.max_minutes": 0.5, "train.eval_interval": 100,
                                   "train.dtype": "float32"})
    report = dry_run(Trainer(cfg, shakespeare, tmp_path, log=lambda *_: None), steps=2)
    step, val = report["seconds_per_step"], report["seconds_per_validation"]
    assert report["estimated_run_seconds"] == 30.0
    # (the report rounds the step's seconds to 0.1 ms, a few % of a tiny model's step)
    assert report["steps_remaining"] == pytest.approx(30 / (step + val / 100), rel=0.05)
    assert report["steps_remaining"] < 10**5
