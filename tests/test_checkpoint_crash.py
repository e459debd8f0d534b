"""A save that dies at any point leaves a complete checkpoint that `--resume auto` and sampling
find, never a mix of two saves; corrupt checkpoints are skipped with a message naming the file.

The fault tests count the disk operations of a clean save (writes, fsyncs, renames, removals),
then kill a save at each one in turn. "Complete" and "its step" are judged independently of the
module's own check: a dir is complete when `load_checkpoint` reads all of it.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from unmask.model import checkpoint as ckpt
from unmask.model.transformer import Transformer

REPO = Path(__file__).resolve().parents[1]


class Crash(Exception):
    """The simulated death of the process at one disk operation."""


def set_step(model: Transformer, step: int) -> dict[str, torch.Tensor]:
    """Give every weight values that depend on `step` (a mix of two saves cannot pass for one)."""
    gen = torch.Generator().manual_seed(step)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return {k: v.clone() for k, v in model.state_dict().items() if k != "head.weight"}


def train_state(step: int) -> dict:
    return {"counters": {"step": step, "best_val": 1.0 / step, "tokens_seen": 64 * step},
            "optimizer": {"state": {0: {"exp_avg": torch.full((4,), float(step))}},
                          "param_groups": [{"lr": 0.1, "params": [0]}]}}


def step_of(ckpt_dir: Path) -> int | None:
    """The training step of this very dir if it loads in full (no fallback), else None."""
    if not (ckpt_dir / "model.safetensors").is_file():
        return None
    try:
        loaded = ckpt.load_checkpoint(ckpt_dir)
    except ckpt.CheckpointError:
        return None
    return None if loaded["train_state"] is None else loaded["train_state"]["counters"]["step"]


def leftovers(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name != "latest")


class Faults:
    """Counts the disk operations of a save. Armed with `crash_at=k`, the k-th one fails:
    "after" does it and dies, "partial" does half of it (half a file, one file of a removal)
    and dies, "error" raises OSError instead (a full disk) and the save goes on to handle it.
    After a death every later operation raises too: nothing runs in a dead process.

    Every removal is checked: a complete checkpoint may go only once `latest` holds one at
    least as new, and a failed save may drop its own temp dir only with `latest` back."""

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        self.crash_at, self.how, self.dead, self.run, self.before = None, None, False, None, set()
        self.violations: list[str] = []
        monkeypatch.setattr(os, "fsync", lambda fd: None)  # speed; a dead process loses no cache
        for owner, name, partial in [(ckpt, "save_file", lambda t, f, **_: _halve(Path(f))),
                                     (ckpt, "_write_json", lambda f, *_, **__: _halve(f)),
                                     (ckpt, "_fsync", None), (os, "replace", None),
                                     (shutil, "rmtree", lambda d, **_: _remove_one(Path(d)))]:
            monkeypatch.setattr(owner, name, self._wrap(name, getattr(owner, name), partial))

    def arm(self, run: Path, crash_at: int | None = None, how: str = "after") -> None:
        self.calls, self.crash_at, self.how, self.dead = [], crash_at, how, False
        self.run, self.before = run, set(run.iterdir()) if run.exists() else set()

    def _wrap(self, name, real, partial):
        def operation(*args, **kwargs):
            if self.dead:
                raise Crash(f"{name} after death")
            self.calls.append(name)
            if name == "rmtree" and self.run is not None:
                self._check_removal(Path(args[0]))
            if len(self.calls) != self.crash_at:
                return real(*args, **kwargs)
            if self.how == "error":
                if kwargs.get("ignore_errors"):
                    return None
                raise OSError(f"injected failure of {name}")
            self.dead = True
            if self.how == "partial" and partial:
                partial(*args, **kwargs)
            else:
                real(*args, **kwargs)
            raise Crash(name)
        return operation

    def _check_removal(self, target: Path) -> None:
        latest = step_of(self.run / "latest")
        if target not in self.before and target.name.startswith("."):  # this save's temp dir,
            # dropped when the save fails: the checkpoint it was to replace must be back
            if self.run / "latest" in self.before and latest is None:
                self.violations.append(f"dropped {target.name} without putting latest back")
        elif (step := step_of(target)) is not None and (latest is None or latest < step):
            self.violations.append(f"removed {target.name} (step {step}) while latest held "
                                   f"{latest}; calls {self.calls}")


def _halve(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _remove_one(folder: Path) -> None:
    files = sorted(folder.iterdir())
    if files:
        files[0].unlink()


def check(run: Path, weights: dict[int, dict], steps: set[int]) -> int:
    """The checkpoint `--resume auto` picks is the newest that loads in full, its step is one of
    `steps`, and its weights and state are exactly those saved at that step."""
    found = ckpt.resumable_checkpoint(run, log=lambda _: None)
    assert found is not None, sorted(p.name for p in run.iterdir())
    candidates = [p for p in run.iterdir() if p.name.startswith((".latest.tmp-", "latest"))]
    assert step_of(found) == max(s for s in map(step_of, candidates) if s is not None)
    loaded = ckpt.load_checkpoint(found)
    step = loaded["train_state"]["counters"]["step"]
    assert step in steps, (step, found.name)
    assert loaded["weights"].keys() == weights[step].keys()
    for key, value in weights[step].items():
        assert torch.equal(loaded["weights"][key], value), key
    assert torch.equal(loaded["train_state"]["optimizer"]["state"][0]["exp_avg"],
                       torch.full((4,), float(step)))
    assert step_of(ckpt.find_checkpoint(run, log=lambda _: None)) == step  # what sampling reads
    return step


@pytest.mark.parametrize("keep_previous", [False, True], ids=["latest-only", "snapshots"])
def test_a_save_that_dies_at_any_point_leaves_a_complete_checkpoint(tiny_model_config,
                                                                   tmp_path, monkeypatch,
                                                                   keep_previous):
    """With `keep_previous` (train.keep_last_k > 1) the old `latest` becomes step_<N>."""
    model = Transformer(tiny_model_config)
    weights: dict[int, dict] = {}

    def save(run: Path, step: int) -> None:
        weights[step] = set_step(model, step)
        ckpt.save_checkpoint(run / "latest", model, {"model": {"n_layer": 2}}, {"chars": "ab"},
                             {"name": "t"}, train_state(step), keep_previous=keep_previous)

    faults = Faults(monkeypatch)
    save(tmp_path / "clean", 1)
    faults.arm(tmp_path / "clean")
    save(tmp_path / "clean", 2)
    sequence = faults.calls
    assert sequence.count("replace") == 2, sequence
    assert (sequence[-1] == "rmtree") != keep_previous, sequence  # the old one goes, or stays
    assert (step_of(tmp_path / "clean" / "step_00000001") == 1) == keep_previous
    in_place = len(sequence) - sequence[::-1].index("replace")  # the new one is `latest` from here

    for k in range(1, len(sequence) + 1):
        for how in ("after", "partial", "error"):
            run = tmp_path / f"{k}-{how}"
            faults.arm(run)
            save(run, 1)
            faults.arm(run, crash_at=k, how=how)
            try:
                save(run, 2)
            except (Crash, OSError) as err:
                assert isinstance(err, Crash) == (how != "error")
            else:  # a failed removal of a leftover is ignored
                assert how == "error" and sequence[k - 1] == "rmtree"
            assert not faults.violations, faults.violations
            found = check(run, weights, {2} if k >= in_place and how != "error" else {1, 2})
            named = ckpt.find_checkpoint(run / "latest", log=lambda _: None)  # `sample run/latest`
            assert named == (run / "latest" if (run / "latest").exists() else
                             ckpt.find_checkpoint(run, log=lambda _: None))
            if how == "error":  # handled: `latest` is in place (put back if moved), no temp
                assert step_of(run / "latest") == found
                assert not [p for p in leftovers(run) if p.startswith(".")]
                continue
            # Die again, at each point of the next save, starting from what this death left.
            snapshot = tmp_path / f"{k}-{how}-snapshot"
            shutil.copytree(run, snapshot)
            for j in range(1, 4 * len(sequence)):
                again = tmp_path / f"{k}-{how}-{j}"
                shutil.copytree(snapshot, again)
                faults.arm(again, crash_at=j)
                try:
                    save(again, 3)
                except Crash:
                    assert not faults.violations, faults.violations
                    check(again, weights, {found, 3})
                    continue
                # j is past the end: this save went through, and cleaned up every leftover
                assert not faults.violations, faults.violations
                assert check(again, weights, {3}) == 3
                assert [p for p in leftovers(again) if not p.startswith("step_")] == []
                if keep_previous:  # what `latest` held before this save is a snapshot now
                    assert {step_of(again / p) for p in leftovers(again)} >= {found}
                break
            else:
                pytest.fail("a save never finished")


# ------------------------------------------------------------------ corrupt checkpoints


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _zero(file: Path) -> None:
    file.write_bytes(bytes(file.stat().st_size))


@pytest.mark.parametrize("file, damage", [("model.safetensors", _truncate),
                                          ("model.safetensors", _zero),
                                          ("state.json", _truncate),
                                          ("state.safetensors", _truncate),
                                          ("config.json", Path.unlink)])
def test_a_corrupt_latest_is_skipped_for_the_older_complete_one(tiny_model_config, tmp_path,
                                                                file, damage):
    model = Transformer(tiny_model_config)
    weights = {1: set_step(model, 1)}
    ckpt.save_checkpoint(tmp_path / "older", model, {}, {}, {}, train_state(1))
    set_step(model, 2)
    ckpt.save_checkpoint(tmp_path / "latest", model, {}, {}, {}, train_state(2))
    (tmp_path / "older").rename(tmp_path / "latest.old")  # as a save that died leaves it
    damage(tmp_path / "latest" / file)

    messages: list[str] = []
    found = ckpt.resumable_checkpoint(tmp_path, log=messages.append)
    assert found == tmp_path / "latest.old"
    assert any(str(tmp_path / "latest") + ":" in m and file in m for m in messages), messages
    assert check(tmp_path, weights, {1}) == 1

    sampled: list[str] = []
    assert ckpt.find_checkpoint(tmp_path, log=sampled.append) == tmp_path / "latest.old"
    assert any(file in m for m in sampled), sampled


def test_no_complete_checkpoint_at_all(tiny_model_config, tmp_path):
    assert ckpt.resumable_checkpoint(tmp_path / "never-trained") is None
    assert ckpt.resumable_checkpoint(tmp_path) is None
    model = Transformer(tiny_model_config)
    ckpt.save_checkpoint(tmp_path / "latest", model, {}, {}, {}, train_state(5))
    _zero(tmp_path / "latest" / "model.safetensors")
    messages: list[str] = []
    assert ckpt.resumable_checkpoint(tmp_path, log=messages.append) is None
    assert len(messages) == 1 and "model.safetensors is truncated or corrupt" in messages[0]
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors is truncated or corrupt"):
        ckpt.find_checkpoint(tmp_path)


def test_resume_needs_training_state_and_sampling_prefers_best(tiny_model_config, tmp_path):
    model = Transformer(tiny_model_config)
    ckpt.save_checkpoint(tmp_path / "best", model, {}, {}, {}, train_state(3))
    ckpt.save_checkpoint(tmp_path / "latest", model, {}, {}, {}, train_state(4))
    assert ckpt.find_checkpoint(tmp_path) == tmp_path / "best"
    assert ckpt.resumable_checkpoint(tmp_path) == tmp_path / "latest"
    ckpt.save_checkpoint(tmp_path / "latest", model, {}, {}, {})  # weights only (an export)
    messages: list[str] = []
    assert ckpt.resumable_checkpoint(tmp_path, log=messages.append) == tmp_path / "best"
    assert any("latest: state.json is missing" in m for m in messages), messages


# ------------------------------------------------------------------ a real kill

# Imports torch once, then for each line on stdin forks a process that resumes the run and
# saves in a loop (printing each finished step) until the test kills it; then says "over".
SAVER = r"""
import os
import sys
import torch
from pathlib import Path
from unmask.config.schema import ModelConfig
from unmask.model import checkpoint as ckpt
from unmask.model.transformer import Transformer

torch.set_num_threads(1)
run = Path(sys.argv[1])
model = Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=72))
while sys.stdin.readline():
    pid = os.fork()
    if pid == 0:
        try:
            found = ckpt.resumable_checkpoint(run, log=lambda _: None)
            step = ckpt.load_checkpoint(found)["train_state"]["counters"]["step"] if found else 0
            while True:
                step += 1
                with torch.no_grad():
                    for p in model.parameters():
                        p.fill_(step)
                ckpt.save_checkpoint(run / "latest", model, {}, {}, {},
                                     {"counters": {"step": step}, "x": torch.full((3,), step)})
                print(step, flush=True)
        finally:
            os._exit(1)
    print("pid", pid, flush=True)
    os.waitpid(pid, 0)
    print("over", flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_while_saving_leaves_a_complete_checkpoint(tmp_path, tiny_model_config):
    """Five processes in turn resume the run and save in a loop until SIGKILLed at a random
    moment; each kill leaves a complete checkpoint, at least as new as the last finished save
    and at most one newer, with the weights and state of one save."""
    rng = random.Random(0)
    saver = subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path)], text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)},
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    last, pid = 0, None
    try:
        for _ in range(5):
            saver.stdin.write("go\n")
            saver.stdin.flush()
            pid, saved = None, []
            while pid is None or not saved:  # wait for the first finished save
                line = saver.stdout.readline().split()
                assert line, "the saver died"
                if line[0] == "pid":
                    pid = int(line[1])
                else:
                    saved.append(int(line[0]))
            time.sleep(rng.uniform(0.0, 0.1))
            os.kill(pid, signal.SIGKILL)  # a zombie until the saver reaps it: the pid is ours
            while (line := saver.stdout.readline().strip()) != "over":
                assert line, "the saver died"
                saved.append(int(line))
            pid = None
            assert saved[0] == last + 1
            found = ckpt.resumable_checkpoint(tmp_path, log=lambda _: None)
            loaded = ckpt.load_checkpoint(found)
            step = loaded["train_state"]["counters"]["step"]
            assert saved[-1] <= step <= saved[-1] + 1, (saved, step, found.name)
            assert all(torch.equal(w, torch.full_like(w, step)) for w in loaded["weights"].values())
            assert torch.equal(loaded["train_state"]["x"], torch.full((3,), step))
            last = step
    finally:
        if pid is not None:  # a failed round: its saver is still running, and ours
            os.kill(pid, signal.SIGKILL)
        saver.stdin.close()
        try:
            saver.wait(timeout=10)
        except subprocess.TimeoutExpired:
            saver.kill()
            saver.wait()
    ckpt.save_checkpoint(tmp_path / "latest", Transformer(tiny_model_config), {}, {}, {},
                         train_state(last + 1))
    assert leftovers(tmp_path) == [] and step_of(tmp_path / "latest") == last + 1
