"""The book_curriculum objective and its trainer hooks (stages, lr, checkpoints, resume)."""

import json
import math
import shutil

import pytest
import torch

from tests.book_support import FAST, write_small_book
from unmask.config.book import resolve_book_config, to_run_config
from unmask.data.book.pipeline import prepare_book
from unmask.data.book.stages import run_steps
from unmask.data.dataset import Dataset
from unmask.model.checkpoint import load_checkpoint
from unmask.objectives.book_curriculum import BookLoader, mask_rows, stage_lr
from unmask.train.trainer import Trainer

pytest.importorskip("tokenizers")
pytest.importorskip("sklearn")


def quiet(*_):
    return None


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    cfg = resolve_book_config("test_integration", overrides=FAST)
    out = prepare_book(str(write_small_book(root)), root / "data", cfg, log=quiet)
    return cfg, out


def trainer_for(cfg, data_dir, out, **kw):
    _, budgets = run_steps(data_dir, cfg.training.batch_size, cfg.training.eval_interval)
    return Trainer(to_run_config(cfg, sum(budgets), str(data_dir)), Dataset.load(data_dir),
                   out, log=quiet, **kw)


def test_stage_lr_warms_up_then_decays_by_a_cosine():
    assert stage_lr(0, 1.0, 0.1, 4, 20) == pytest.approx(1 / 5)
    assert stage_lr(3, 1.0, 0.1, 4, 20) == pytest.approx(4 / 5)
    assert stage_lr(4, 1.0, 0.1, 4, 20) == pytest.approx(1.0)
    assert stage_lr(12, 1.0, 0.1, 4, 20) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 2)))
    assert stage_lr(25, 1.0, 0.1, 4, 20) == 0.1


def test_masks_stay_in_range_and_off_padding_and_separators():
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 50, (4000, 40), generator=gen)
    tokens[:, 20] = 99  # a [SEP]-like position
    lengths = torch.randint(1, 41, (4000,), generator=gen)
    valid = torch.arange(40)[None, :] < lengths[:, None]
    maskable = valid & (tokens != 99)
    masked = mask_rows(tokens, maskable, 0.4, 0.6, gen)
    assert not (masked & ~maskable).any()
    has = maskable.any(1)
    assert masked[has].any(1).all()  # at least one masked where anything is maskable
    rate = masked.sum() / maskable.sum()
    assert 0.47 < float(rate) < 0.53  # E[r] = 0.5 (plus the at-least-one rows)
    long = maskable.sum(1) >= 30
    per_row = masked[long].sum(1) / maskable[long].sum(1)
    low, high = torch.quantile(per_row, torch.tensor([0.05, 0.95]))
    assert 0.25 < float(low) < 0.4 and 0.6 < float(high) < 0.75
    one = mask_rows(tokens, maskable, 0.0, 0.0, gen)  # rate 0: exactly the one forced mask
    assert torch.equal(one.sum(1), has.long())
    assert torch.equal(mask_rows(tokens, maskable, 1.0, 1.0, gen), maskable)


def test_loader_serves_each_item_once_per_epoch_and_resumes_exactly(book):
    _, out = book
    from unmask.data.book.stages import load_stages
    stages = load_stages(out, 0)
    n = len(stages[0].train)
    loader = BookLoader(stages, 5, seed=1, current=lambda: 0)
    rows = torch.cat([loader.next_batch()[0] for _ in range(math.ceil(n / 5))])
    assert loader.epoch == 1 or (loader.epoch == 0 and n % 5 == 0) or n % 5
    first_epoch = rows[:n]
    key = lambda t: sorted(map(tuple, t.tolist()))  # noqa: E731
    assert key(first_epoch) == key(stages[0].train.tokens)
    state = loader.state_dict()
    ahead = [loader.next_batch()[0] for _ in range(3)]
    again = BookLoader(stages, 5, seed=1, current=lambda: 0)
    again.load_state_dict(json.loads(json.dumps(state)))
    assert all(torch.equal(a, again.next_batch()[0]) for a in ahead)


def test_a_run_walks_the_stages_with_their_lr_factors_and_checkpoints(book, tmp_path):
    cfg, out = book
    trainer = trainer_for(cfg, out, tmp_path / "run")
    obj = trainer.objective
    assert obj.budgets == [4, 4, 4] and trainer.cfg.train.max_iters == 12
    seen = []
    step = trainer.train_step

    def record():
        result = step()  # the loader moves to a new stage when it serves its first batch
        seen.append((trainer.counters.step, obj.stage, trainer.optimizer.param_groups[0]["lr"],
                     trainer.loader.stage))
        return result

    trainer.train_step = record
    trainer.run()
    assert [s for _, s, _, _ in seen] == [0] * 4 + [1] * 4 + [2] * 4
    assert all(stage == loader for _, stage, _, loader in seen)
    lr = cfg.training.learning_rate
    starts = {s: rate for step, s, rate, _ in seen if step in (0, 4, 8)}
    warm = cfg.curriculum.stages[0].warmup_steps
    for k, factor in enumerate((1.0, 0.8, 0.5)):  # the first step of a stage's warmup
        assert starts[k] == pytest.approx(lr * factor / (warm + 1))
    for name in ("latest", "best", "best_stage1", "best_stage2", "best_stage3"):
        assert (tmp_path / "run" / name / "model.safetensors").is_file(), name
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evals = [x for x in lines if "val_loss" in x]
    assert [x["val_book_stage"] for x in evals] == [1.0, 2.0, 3.0]
    assert [x["val_book_stage_advanced"] for x in evals] == [1.0, 1.0, 0.0]
    assert all("val_bits_per_byte" in x and "val_stage_1_loss" in x for x in evals)


def test_validation_transitions_follow_patience(book, tmp_path):
    cfg, out = book
    cfg = cfg.override({"curriculum.transition": "validation",
                        "curriculum.stages[0].max_steps": "40",
                        "curriculum.stages[0].patience": "1"})
    data = tmp_path / "data"
    shutil.copytree(out, data)
    stamps = {p.name: p.stat().st_mtime_ns for p in data.iterdir()}
    prepare_book(str(out.parent / "small_frankenstein.txt"), data, cfg, log=quiet)
    changed = {p.name for p in data.iterdir() if stamps[p.name] != p.stat().st_mtime_ns}
    assert changed == {"curriculum.json"}  # a schedule change re-prepares nothing else
    trainer = trainer_for(cfg, data, tmp_path / "run")
    obj = trainer.objective
    report = obj.after_validation(4, {"val_stage_1_loss": 5.0})
    assert report["book_stage_advanced"] == 0 and obj.checkpoints_to_save() == ["best_stage1"]
    assert obj.checkpoints_to_save() == []  # asked once
    report = obj.after_validation(8, {"val_stage_1_loss": 5.5})  # no new best: patience 1
    assert report["book_stage_advanced"] == 1 and obj.stage == 1
    assert obj.state.stage_start == 8 and math.isinf(obj.state.best)


def test_resume_mid_stage_continues_exactly(book, tmp_path):
    cfg, out = book
    full = trainer_for(cfg, out, tmp_path / "full")
    full.run()
    part = trainer_for(cfg, out, tmp_path / "part")
    part.cfg.train.max_iters = 6  # stop inside stage 2 (the lr schedule of stage 2 is fixed)
    part.run()
    resumed = trainer_for(cfg, out, tmp_path / "part", resume="auto")
    assert resumed.counters.step == 6 and resumed.objective.stage == 1
    assert resumed.loader.position > 0  # mid-stage, mid-epoch
    resumed.run()
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    saved = load_checkpoint(tmp_path / "part" / "latest")
    assert saved["train_state"]["task"]["book"]["position"] == 2


def test_learning_rate_hook_by_hand(book, tmp_path):
    """Each stage restarts warmup + cosine scaled by its lr_factor; a stage lasts its budget,
    the last one until the trainer's horizon (train.max_iters, or the steps train.max_minutes
    holds; a validation transition can move the stage's start)."""
    cfg, out = book
    obj = trainer_for(cfg, out, tmp_path / "run").objective
    settings = [obj.settings(k) for k in obj.active]
    lr, floor = 2.0, 0.2

    def expected(local: int, factor: float, warmup: int, length: int) -> float:
        if local < warmup:
            return lr * factor * (local + 1) / (warmup + 1)
        if local >= length:
            return floor * factor
        cosine = 0.5 * (1 + math.cos(math.pi * (local - warmup) / max(1, length - warmup)))
        return floor * factor + cosine * (lr - floor) * factor

    for position, start in ((0, 0), (1, 4), (2, 5)):  # the last stage starts early at 5
        obj.state.position, obj.state.stage_start = position, start
        st = settings[position]
        length = 12 - start if position == len(obj.active) - 1 else obj.budgets[position]
        assert length != obj.budgets[position] or position < 2
        for local in range(0, 9):
            got = obj.learning_rate(start + local, lr, floor, 12)
            want = expected(local, st["lr_factor"], st["warmup_steps"], length)
            assert got == pytest.approx(want), (position, local)
