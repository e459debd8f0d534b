"""`train.keep_last_k` (exactly K checkpoints plus `best`, each loadable at its own step), and a
full disk or an unwritable output folder: one clear line, exit 2, every saved checkpoint intact."""

import errno
import os
import pathlib
import shutil
from pathlib import Path

import pytest
import torch

from unmask.cli.main import main
from unmask.model import checkpoint as ckpt

QUICK = ["--train.eval_interval=2", "--train.eval_batches=1", "--train.progress=false",
         "--train.dtype=float32", "--train.batch_size=4", "--train.log_interval=1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("snap") / "ts"
    assert main(["prepare", "tinyshakespeare", "--out", str(out)]) == 0
    return out


def train(data: Path, out: Path, *extra: str) -> int:
    return main(["train", "debug", "--data", str(data), "--out", str(out), *QUICK, *extra])


def step_of(folder: Path) -> int:
    return ckpt.load_checkpoint(folder)["train_state"]["counters"]["step"]


def checkpoints(run: Path) -> dict[str, int]:
    return {p.name: step_of(p) for p in run.iterdir() if (p / "config.json").is_file()}


def test_keep_last_k_keeps_exactly_k_plus_best_across_a_resume(data, tmp_path):
    run = tmp_path / "run"
    assert train(data, run, "--train.max_iters=10", "--train.keep_last_k=3") == 0
    found = checkpoints(run)
    assert {k: v for k, v in found.items() if k != "best"} == {
        "latest": 10, "step_00000008": 8, "step_00000006": 6}
    assert "best" in found and not [p for p in run.iterdir() if p.name.startswith(".")]
    # A snapshot is a checkpoint like any other: sampling reads it by its path.
    assert main(["sample", str(run / "step_00000006"), "--length", "8", "--num-samples", "1",
                 "--steps", "4"]) == 0

    assert train(data, run, "--train.max_iters=14", "--train.keep_last_k=3",
                 "--resume", "auto") == 0
    found = checkpoints(run)
    assert {k: v for k, v in found.items() if k != "best"} == {
        "latest": 14, "step_00000012": 12, "step_00000010": 10}


def test_default_keeps_latest_alone(data, tmp_path):
    run = tmp_path / "run"
    assert train(data, run, "--train.max_iters=6") == 0
    assert set(checkpoints(run)) == {"latest", "best"}


def test_a_corrupt_latest_falls_back_to_the_newest_snapshot(data, tmp_path):
    run = tmp_path / "run"
    assert train(data, run, "--train.max_iters=6", "--train.keep_last_k=2") == 0
    weights = run / "latest" / "model.safetensors"
    weights.write_bytes(bytes(weights.stat().st_size))  # zeroed
    messages: list[str] = []
    assert ckpt.resumable_checkpoint(run, log=messages.append) == run / "step_00000004"
    assert any("latest" in m and "model.safetensors" in m for m in messages), messages
    assert any("step_00000004" in m for m in messages), messages


def test_a_save_that_dies_between_its_renames_keeps_both(data, tmp_path, monkeypatch):
    """With snapshots the rename that moves `latest` aside names it step_<N>: a death right
    after it leaves that snapshot and the complete new temp dir, and resume takes the newer."""
    run = tmp_path / "run"
    assert train(data, run, "--train.max_iters=4", "--train.keep_last_k=2") == 0
    real_replace, real_rmtree, dead = os.replace, shutil.rmtree, []

    def dies_after_first_rename(src, dst):
        if dead:
            raise KeyboardInterrupt
        real_replace(src, dst)
        if Path(dst).name.startswith("step_"):
            dead.append(dst)  # the process is gone: nothing after this runs
            raise KeyboardInterrupt

    def rmtree(*args, **kwargs):
        if dead:
            raise KeyboardInterrupt
        return real_rmtree(*args, **kwargs)

    monkeypatch.setattr(os, "replace", dies_after_first_rename)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    assert train(data, run, "--train.max_iters=6", "--train.keep_last_k=2",
                 "--resume", "auto") == 130
    monkeypatch.undo()
    assert not (run / "latest").exists() and step_of(run / "step_00000004") == 4
    chosen = ckpt.resumable_checkpoint(run, log=lambda _: None)
    assert chosen.name.startswith(".latest.tmp-") and step_of(chosen) == 6
    assert train(data, run, "--train.max_iters=8", "--train.keep_last_k=2",
                 "--resume", "auto") == 0
    assert {k: v for k, v in checkpoints(run).items() if k != "best"} == {
        "latest": 8, "step_00000006": 6}


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch,
                                                                  capsys):
    run = tmp_path / "run"
    assert train(data, run, "--train.max_iters=2") == 0
    before = ckpt.load_checkpoint(run / "latest")["weights"]

    def full(*_, **__):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt, "save_file", full)
    capsys.readouterr()
    assert train(data, run, "--train.max_iters=4", "--resume", "auto") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "No space left on device" in err and str(run / "latest") in err, err
    assert "intact" in err
    monkeypatch.undo()
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == ["best", "latest"]
    after = ckpt.load_checkpoint(run / "latest")
    assert after["train_state"]["counters"]["step"] == 2
    assert all(torch.equal(before[k], after["weights"][k]) for k in before)


def test_an_unwritable_output_folder_is_one_line_and_writes_nothing(data, tmp_path, monkeypatch,
                                                                     capsys):
    real = pathlib.Path.mkdir

    def read_only(self, *args, **kwargs):
        if tmp_path in self.parents or self == tmp_path / "run":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    capsys.readouterr()
    assert train(data, tmp_path / "run", "--train.max_iters=2") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Permission denied" in err, err
    assert str(tmp_path / "run") in err and "writable --out" in err
    assert list(tmp_path.iterdir()) == []
    shutil.rmtree(tmp_path, ignore_errors=True)
