"""What happens when training goes wrong: a non-finite step (train.on_nan) and a stop signal."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from unmask.config.presets import resolve_config
from unmask.train.metrics import TrainingDiverged
from unmask.train.trainer import Trainer

TINY = {"model.n_layer": 1, "model.n_head": 2, "model.n_embd": 16, "model.block_size": 16,
        "train.batch_size": 4, "train.max_iters": 8, "train.eval_interval": 4,
        "train.log_interval": 1, "train.eval_batches": 1, "train.progress": False,
        "train.dtype": "float32", "optim.warmup_iters": 0}


def _poisoned_trainer(shakespeare, tmp_path, policy: str, nan_steps: set[int],
                      **extra) -> Trainer:
    """A trainer whose loss is NaN at the given (1-based) steps, the first time each is run."""
    cfg = resolve_config("debug", {**TINY, "train.on_nan": policy, **extra})
    trainer = Trainer(cfg, shakespeare, tmp_path, log=lambda *_: None)
    loss, pending = trainer.objective.loss, set(nan_steps)

    def poisoned(logits, batch):
        out = loss(logits, batch)
        if trainer.counters.step + 1 in pending:
            pending.discard(trainer.counters.step + 1)
            out.total = out.total * float("nan")
        return out

    trainer.objective.loss = poisoned
    return trainer


def _steps_logged(run) -> list[int]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [line["step"] for line in lines if "train_loss" in line]


def test_stop_names_the_step_and_the_last_checkpoint(shakespeare, tmp_path):
    trainer = _poisoned_trainer(shakespeare, tmp_path, "stop", {6})
    with pytest.raises(TrainingDiverged, match=r"non-finite at step 6; the last checkpoint is "
                                               r".*latest; lower optim.lr"):
        trainer.run()
    assert _steps_logged(tmp_path) == [1, 2, 3, 4, 5]


def test_skip_drops_the_update_of_a_non_finite_step(shakespeare, tmp_path):
    trainer = _poisoned_trainer(shakespeare, tmp_path, "skip", {3})
    before = {}

    step = trainer.train_step

    def watched():
        if trainer.counters.step == 2:  # the poisoned step is the third
            before.update({k: v.clone() for k, v in trainer.model.state_dict().items()})
        result = step()
        if trainer.counters.step == 2:
            after = trainer.model.state_dict()
            assert all(torch.equal(before[k], after[k]) for k in before)  # no update
        return result

    trainer.train_step = watched
    result = trainer.run()
    assert result["step"] == 8 and trainer.counters.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert 3 not in _steps_logged(tmp_path) and 4 in _steps_logged(tmp_path)


def test_rollback_reloads_the_checkpoint_with_the_learning_rate_halved(shakespeare, tmp_path):
    trainer = _poisoned_trainer(shakespeare, tmp_path, "rollback", {6})
    result = trainer.run()
    assert result["step"] == 8
    assert trainer.counters.rollbacks == 1 and trainer.counters.lr_scale == 0.5
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in logged if "train_loss" in line]
    # steps 5 and 6 after the rollback to step 4 are logged again, at half the learning rate
    assert [line["step"] for line in steps] == [1, 2, 3, 4, 5, 5, 6, 7, 8]
    first5, again5 = [line for line in steps if line["step"] == 5]
    assert again5["lr"] == pytest.approx(first5["lr"] / 2)
    # Step 5's loss is computed before its update: rolled back to the step-4 weights, loader
    # and noise streams, the re-run sees the same model on the same batch, bit for bit.
    assert again5["train_loss"] == first5["train_loss"]
    resumed = Trainer(trainer.cfg, shakespeare, tmp_path, resume="auto", log=lambda *_: None)
    assert resumed.counters.lr_scale == 0.5  # the halving survives a resume


def test_rollback_gives_up_after_max_rollbacks(shakespeare, tmp_path):
    # step 5 fails, rollback 1 to step 4; step 5 passes, step 6 fails: no rollback left
    trainer = _poisoned_trainer(shakespeare, tmp_path, "rollback", {5, 6},
                                **{"train.max_rollbacks": 1})
    with pytest.raises(TrainingDiverged, match=r"at step 6 after 1 rollbacks"):
        trainer.run()


def test_sigint_saves_and_exits_cleanly_then_resume_continues(shakespeare, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "unmask", "train", "debug", "--data", str(shakespeare.path),
            "--out", str(out), "--train.max_iters=100000", "--train.log_interval=1",
            "--train.eval_interval=100000", "--train.progress=false", "--train.dtype=float32",
            "--model.n_layer=1", "--model.n_embd=16", "--model.block_size=16"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 60
    while time.time() < deadline and not ((out / "metrics.jsonl").exists()
                                          and len(_steps_logged(out)) >= 3):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["interrupted"] is True and summary["step"] >= 3
    assert summary["step"] == _steps_logged(out)[-1]  # the step it finished, then saved
    assert "stopped at step" in stdout + stderr
    cfg = resolve_config("debug", {"data": str(shakespeare.path), "train.max_iters":
                                   summary["step"] + 2, "train.progress": False,
                                   "model.n_layer": 1, "model.n_embd": 16,
                                   "model.block_size": 16, "train.dtype": "float32"})
    resumed = Trainer(cfg, shakespeare, out, resume="auto", log=lambda *_: None)
    assert resumed.counters.step == summary["step"]
